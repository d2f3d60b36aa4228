"""Versioned artifacts: what the package learned, one folder per version.

Learned voters (``learned/<voter>/``), LoRA adapters (``adapters/<voter>/``) and the
learned vote (``votes/``) all live the same way: ``<folder>/v<N>/`` holds a version,
``<folder>/CURRENT`` names the one in use, and installing a new one copies it in
and then moves the pointer, so a labeler never sees a half-installed version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

POINTER = "CURRENT"


def current(folder: Path) -> str | None:
    """The version in use under ``folder``, or None when nothing is installed."""
    pointer = folder / POINTER
    return pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None


def following(folder: Path) -> str:
    """The version after the one in use: ``v1`` first."""
    version = current(folder)
    return f"v{int(version[1:]) + 1}" if version else "v1"


def install(source: Path, folder: Path, version: str) -> None:
    """Copy ``source`` in as ``folder/version`` and make it the version in use."""
    shutil.copytree(source, folder / version, dirs_exist_ok=True)
    temporary = folder / f".{POINTER}.tmp"
    temporary.write_text(version + "\n", encoding="utf-8")
    os.replace(temporary, folder / POINTER)


def file_digests(folder: Path) -> dict[str, str]:
    """``{file name: sha256}`` of the files directly in a version folder, by name."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.is_file()
    }
