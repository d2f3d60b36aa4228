"""The report page's records: what ``report.html.jinja`` shows, all of it display strings.

The template only loops over these, so everything the page says is decided in Python and can be
checked without rendering. ``share`` and ``percent`` are the two number formats the tables and
the figures have in common.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict


class ReportRecord(BaseModel):
    model_config = ConfigDict(frozen=True)


class Plot(ReportRecord):
    title: str
    alt: str
    data_uri: str
    """``data:image/png;base64,...``: the page must load nothing from elsewhere."""


class DisputedRow(ReportRecord):
    row: int
    text: str
    label: str
    source: str
    agreement: str
    confidence: str
    votes: tuple[str, ...]
    """Each voter's own label, in voter order (``-`` where it abstained)."""
    reason: str


class ReportPage(ReportRecord):
    """Everything the template shows, as display strings; the template only loops over it."""

    run_id: str
    task: str
    data_path: str
    labels: tuple[str, ...]
    verifier: str
    summary: tuple[tuple[str, str], ...]
    voter_names: tuple[str, ...]
    voters: tuple[tuple[str, ...], ...]
    """Name, reference, kind, pilot consensus agreement, pilot verified accuracy, selected."""
    pilot_basis: str
    """How the candidates were scored and chosen ("" without a pilot)."""
    label_plot: Plot
    sources: tuple[tuple[str, str, str], ...]
    """Source, rows, share."""
    source_plot: Plot
    agreement_plot: Plot | None
    agreement_table: tuple[tuple[str, ...], ...]
    """One row per voter: its name, then its agreement with each voter."""
    verified_rows: int
    verified_plot: Plot | None
    verified_table: tuple[tuple[str, str, str], ...]
    """Voter, agreed / voted, share."""
    confidence_plot: Plot
    ledger: tuple[tuple[str, ...], ...]
    """Model, outcome, calls, rows, prompt tokens, completion tokens, cost, mean and max latency."""
    timings: tuple[tuple[str, str, str], ...]
    """Stage, seconds, detail."""
    finetune: tuple[tuple[str, ...], ...] = ()
    """Per stage and voter: stage, voter, rows, held-out accuracy, kept, disputes, agreement."""
    votes: tuple[tuple[str, ...], ...] = ()
    """Per learned vote: version, first pass, verified rows, weights, accuracy, outcome."""
    rounds_plot: Plot | None = None
    """The learning curve (None when no round has an estimate)."""
    rounds_note: str = ""
    """What the curve and the estimates measure, in a sentence or two."""
    rounds: tuple[tuple[str, ...], ...] = ()
    """Per assessment: round, pass, verified (share), held out, accuracy, macro-F1, chosen
    (held out), expected share wrong, LLM cost so far, seconds, stop reason."""
    learned: tuple[tuple[str, ...], ...] = ()
    """Latest version of each learned voter: voter, kind, version, rows, out-of-fold accuracy,
    first pass."""
    rejections: tuple[tuple[str, str], ...] = ()
    """Models refused: reference, reason."""
    disputed: tuple[DisputedRow, ...]


def share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"
