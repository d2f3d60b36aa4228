"""The one seam between the agent and the labeler package's runtime modules.

The agent never labels rows itself: it runs the generated labeler and reads back what it
wrote. What it needs of the package's own code to do that (reading and writing tables,
the output columns and how their flags read, where learned artifacts are installed)
comes from the package's runtime modules (``templates/labeler/pkg``) through this module
only, so the contract between agent and package is spelled once, in the package. None of
these modules needs a rendered ``spec.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.state import RunState
from templates.labeler.pkg import tabular, versions
from templates.labeler.pkg.adapters import install_adapters
from templates.labeler.pkg.columns import (
    AGREEMENT,
    CONFIDENCE,
    LABEL,
    NEEDS_REVIEW,
    RESULT_COLUMNS,
    added_columns,
    flag_text,
    input_renames,
    read_flag,
    voter_label_column,
    voter_probability_column,
)
from templates.labeler.pkg.config import IGNORE
from templates.labeler.pkg.kinds import LEARNED_KINDS
from templates.labeler.pkg.learned import install_learned as _install_learned
from templates.labeler.pkg.learned import installed as installed_learned
from templates.labeler.pkg.tabular import (
    DataError,
    TableWriter,
    detect_format,
    iter_chunks,
    read_columns,
)
from templates.labeler.pkg.vote import RECORD as VOTE_RECORD
from templates.labeler.pkg.vote import VOTES, install_vote

__all__ = [
    "AGREEMENT",
    "CONFIDENCE",
    "IGNORE",
    "LEARNED_KINDS",
    "LABEL",
    "NEEDS_REVIEW",
    "RESULT_COLUMNS",
    "VOTES",
    "VOTE_RECORD",
    "DataError",
    "TableWriter",
    "added_columns",
    "detect_format",
    "flag_text",
    "input_renames",
    "install_adapters",
    "install_learned",
    "installed_learned",
    "install_vote",
    "iter_chunks",
    "read_columns",
    "read_flag",
    "tabular",
    "versions",
    "voter_label_column",
    "voter_probability_column",
]


def output_text_column(state: RunState) -> str:
    reserved = added_columns([voter.name for voter in state.voters])
    renames = input_renames(state.dataset.columns, reserved)
    return renames.get(state.plan.text_column, state.plan.text_column)


def install_learned(output: Path, module_dir: Path, vote: bool = True) -> dict:
    """Install what the package's ``learn`` command wrote to ``output`` into the package at
    ``module_dir``: every learned voter's new version, and the learned vote when ``vote``
    and it beat the plain vote. Returns the versions installed."""
    if not vote:
        shutil.rmtree(output / VOTES, ignore_errors=True)
    return _install_learned(output, module_dir)
