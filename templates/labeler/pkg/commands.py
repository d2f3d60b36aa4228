"""What every command of the package shares: one-line errors and their exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable

from . import tabular
from .voters import VoterLoadError


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
