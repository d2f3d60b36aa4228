"""The tally over a run's final labeling pass: counts, a histogram and the most disputed rows.

The labeler's output is streamed in chunks and joined to the verdicts sorted on disk, so a run of
any size needs only these counts, a confidence histogram and a heap of the most disputed rows in
memory. Each row's final label is merged from the vote and its verdict as ``emit_package`` merges
them, so the report counts what the labeled data says.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.dataset import cell_text
from agent.labeler_runtime import (
    AGREEMENT,
    CONFIDENCE,
    LABEL,
    NEEDS_REVIEW,
    iter_chunks,
    output_text_column,
    read_flag,
    voter_label_column,
)
from agent.reporting.records import DisputedRow
from agent.state import RunState
from agent.verification.store import VERDICTS_FILE, VERIFIED_SOURCES, resolve
from agent.verification.stream import latest_by_row, with_verdicts

SOURCES = ("consensus", "llm", "human", "vote", "unresolved")
NO_LABEL = "(no label)"
DISPUTED_ROWS = 20
TEXT_CHARS = 240
CHUNK_ROWS = 10_000
CONFIDENCE_BINS = 20


@dataclass
class RunTally:
    """Counts over the final labeling pass, accumulated one row at a time."""

    voters: tuple[str, ...]
    rows: int = 0
    labels_by_source: Counter = field(default_factory=Counter)
    """(label, source) -> rows."""
    sources: Counter = field(default_factory=Counter)
    pair_votes: Counter = field(default_factory=Counter)
    """(voter a, voter b) -> rows where both voted."""
    pair_agreed: Counter = field(default_factory=Counter)
    verified_votes: Counter = field(default_factory=Counter)
    """Voter -> verified rows where it voted."""
    verified_agreed: Counter = field(default_factory=Counter)
    verified_rows: int = 0
    confidence_consensus: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    confidence_escalated: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    disputed_heap: list[tuple[float, float, int, DisputedRow]] = field(default_factory=list)
    """Max-heap (negated keys) of the rows with the lowest agreement, then confidence."""

    def add(self, row_number: int, row: dict[str, Any], verdict: dict | None, text_column: str):
        needs_review = read_flag(row.get(NEEDS_REVIEW, False))  # no column: nothing flagged
        label, source, verdict = final_label(row, verdict, needs_review)
        votes = tuple(cell_text(row.get(voter_label_column(name))) for name in self.voters)
        self.rows += 1
        self.labels_by_source[(label or NO_LABEL, source)] += 1
        self.sources[source] += 1
        self._count_votes(votes, label if source in VERIFIED_SOURCES else "")
        agreement, confidence = _number(row.get(AGREEMENT)), _number(row.get(CONFIDENCE))
        histogram = self.confidence_escalated if needs_review else self.confidence_consensus
        histogram[min(max(int(confidence * CONFIDENCE_BINS), 0), CONFIDENCE_BINS - 1)] += 1
        key = (-agreement, -confidence, -row_number)
        if len(self.disputed_heap) == DISPUTED_ROWS and key <= self.disputed_heap[0][:3]:
            return  # no more disputed than any row kept so far
        disputed = DisputedRow(
            row=row_number,
            text=_truncate(cell_text(row.get(text_column))),
            label=label or NO_LABEL,
            source=source,
            agreement=f"{agreement:.2f}",
            confidence=f"{confidence:.2f}",
            votes=tuple(vote or "-" for vote in votes),
            reason=_truncate(cell_text(verdict.get("reason"))),
        )
        if len(self.disputed_heap) == DISPUTED_ROWS:
            heapq.heappop(self.disputed_heap)
        heapq.heappush(self.disputed_heap, (*key, disputed))

    def _count_votes(self, votes: tuple[str, ...], verified_label: str) -> None:
        """Pairwise agreement of the voters, and each one's with a verified label ("" if none)."""
        for i, first in enumerate(votes):
            for j in range(i, len(votes)):
                if first and votes[j]:
                    self.pair_votes[i, j] += 1
                    self.pair_agreed[i, j] += first == votes[j]
        if not verified_label:
            return
        self.verified_rows += 1
        for name, vote in zip(self.voters, votes, strict=True):
            if vote:
                self.verified_votes[name] += 1
                self.verified_agreed[name] += vote == verified_label

    def pair_agreement(self, i: int, j: int) -> float:
        i, j = min(i, j), max(i, j)
        votes = self.pair_votes[i, j]
        return self.pair_agreed[i, j] / votes if votes else math.nan

    def most_disputed(self) -> list[DisputedRow]:
        return [entry[3] for entry in sorted(self.disputed_heap, reverse=True)]


def final_label(row: dict[str, Any], verdict: dict | None, needs_review: bool):
    """A row's (label, source, verdict), merged as emit_package merges them.

    A verified label wins; a row under review takes its verdict, or stays unresolved without
    one; every other row keeps the vote as consensus.
    """
    label, source = resolve(row.get(LABEL), verdict, needs_review)
    return cell_text(label), source, verdict or {}


def tally_run(state: RunState) -> RunTally:
    """Stream the final labeling pass, merging the verdicts as the labeled data does."""
    tally = RunTally(voters=tuple(voter.name for voter in state.voters))
    if state.labeling is None:
        return tally
    verdicts = latest_by_row(Path(state.run_dir) / VERDICTS_FILE)
    text_column = output_text_column(state) if state.plan else ""
    rows = (row for chunk in iter_chunks(state.labeling.output_path, CHUNK_ROWS) for row in chunk)
    for row_number, row, verdict in with_verdicts(rows, verdicts):
        tally.add(row_number, row, verdict, text_column)
    return tally


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "\u2026"
