"""Labeler packages for tests: emitted once by the agent and copied per test, or bundled by hand.

An emitted package is expensive (a whole offline agent run), so a module fixture emits it once
with :func:`emit_package` and each test works on its own :func:`copy_package`; nothing a test
does to its copy reaches the next test. :func:`bundle_labeler` assembles a package like a
rendered one from the template's plain modules and a hand-written spec, without the agent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.datasets import read_csv

PACKAGE_SOURCE = Path(__file__).resolve().parents[2] / "templates" / "labeler" / "pkg"
"""The labeler's plain modules, copied into every package as they are."""


def emit_package(folder: Path, name: str, task: str, data: Path, *args: str) -> Path:
    """Run the agent offline on ``data``, its runs and output under ``folder``; the package
    ``name`` it emitted."""
    from agent.cli import main

    command = [task, "--data", str(data), "--offline", "--yes", *args]
    command += ["--out", str(folder / "out"), "--runs-dir", str(folder / "runs")]
    assert main(command) == 0
    return folder / "out" / name


def copy_package(emitted: Path, tmp_path: Path) -> Path:
    """A private copy of an emitted package for one test to change."""
    target = tmp_path / "package"
    shutil.copytree(emitted, target)
    return target


def module_of(package: Path) -> str:
    return package.name.replace("-", "_")


def relabel(package: Path, data: Path, target: Path) -> list[dict[str, str]]:
    """Label ``data`` with the package's own labeler in a fresh process, as a user would."""
    subprocess.run(
        [sys.executable, "-m", module_of(package), str(data), "--output", str(target),
         "--progress", "none"],
        check=True, env={**os.environ, "PYTHONPATH": str(package)}, capture_output=True,
    )  # fmt: skip
    return read_csv(target)


def bundle_labeler(
    root: Path,
    module: str,
    models: Path,
    voters: Sequence[tuple[str, str, Mapping[str, str]]],
    labels: Sequence[str],
    family: str = "toxicity",
) -> Path:
    """A package ``root/module`` like a rendered one: the template's modules, each model folder
    under ``models`` bundled, and a spec naming ``voters`` as (name, kind, label map)."""
    package = root / module
    package.mkdir(parents=True)
    for source in PACKAGE_SOURCE.glob("*.py"):
        shutil.copy(source, package / source.name)
    (package / "__init__.py").write_text("", encoding="utf-8")
    shutil.copytree(models, package / "models")
    configs = ",".join(
        f"VoterConfig({name!r}, {kind!r}, 'bundled:models/{name}', 'r', {label_map!r})"
        for name, kind, label_map in voters
    )
    title = module.replace("_", "-")
    spec = f"LabelerSpec({title!r}, {family!r}, {tuple(labels)!r}, 'text', 1.0, ({configs},))"
    (package / "spec.py").write_text(
        f"from .config import LabelerSpec, VoterConfig\nSPEC = {spec}\n", encoding="utf-8"
    )
    return package
