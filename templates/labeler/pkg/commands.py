"""What every command of the package shares: where the package lives, which device to run
on, the rendered spec, and one-line errors with their exit codes.

The spec is loaded when a command runs, not when a module is imported, so every runtime
module imports without a rendered ``spec.py`` (the agent imports them from its templates).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from . import tabular
from .config import LabelerSpec
from .voters import VoterLoadError

PACKAGE_ROOT = Path(__file__).resolve().parent
"""The installed package's folder: bundled models and learned artifacts live under it."""


def load_spec() -> LabelerSpec:
    """The spec this package was rendered with (its ``spec.py``)."""
    return importlib.import_module(f"{__package__}.spec").SPEC


def resolve_device(requested: str) -> str:
    """``cpu`` or ``cuda`` for ``--device`` (``auto``: CUDA when there is one)."""
    try:
        import torch
    except ImportError:  # a labeler of lexicon voters only ships without torch
        if requested == "cuda":
            raise VoterLoadError("--device cuda was requested but torch is not installed") from None
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise VoterLoadError("--device cuda was requested but no CUDA device is available")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def guarded(command: Callable[[], int]) -> int:
    """Run ``command``; bad input exits 2, an unloadable voter 1, each with one line."""
    try:
        return command()
    except tabular.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except VoterLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
