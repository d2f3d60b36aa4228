"""Which rows a round verifies: the most valuable ones, plus a uniform held-out slice.

One pass over a labeling pass's output (rows in file order, never all held) scores every
row not yet verified by its expected gain: the vote's uncertainty (one minus its
confidence: the chance its label is wrong, once the learned vote calibrates it) plus, at a
quarter of the weight, the learned voters' disagreement with the vote (the share of them
that voted another label: where the models that learn from these rows are still unsure).
The round verifies the highest-scoring rows, ties broken by a
seeded hash of the row number (never by position, so an uninformative first pass picks a
uniform sample), and a slice drawn uniformly from the rest (every row equally likely, so
it stands for the rows left unverified whatever their labels: the estimate stratifies by
label afterwards, :mod:`agent.rounds.heldout`), that is held out: it measures the labels.

The held-out rows that the gain rule would have picked (a score at least the round's
threshold) are *marked*: they resemble the rows verified for their gain, not the rows left
unverified, so the estimate of the unverified rows' accuracy rests on the unmarked ones.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.dataset import cell_text
from agent.labeler_runtime import (
    AGREEMENT,
    CONFIDENCE,
    LABEL,
    voter_label_column,
    voter_probability_column,
)

GAIN = "gain"
HELDOUT = "heldout"


def tiebreak(seed: str, row: int) -> float:
    """A seeded, uniform number in [0, 1) per row: the order among equal scores."""
    digest = hashlib.sha256(f"{seed}:{row}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


LEARNED_DISAGREEMENT_WEIGHT = 0.25


def gain_score(row: Mapping[str, Any], learned: tuple[str, ...] = ()) -> float:
    """The vote's uncertainty plus the learned voters' disagreement with it, on a labeled row
    (a learned voter that abstains, untrained, does not disagree)."""
    votes = [row.get(voter_label_column(name)) for name in learned]
    votes = [vote for vote in votes if vote not in (None, "")]
    disagreement = sum(vote != row[LABEL] for vote in votes) / len(votes) if votes else 0.0
    return (1.0 - float(row[CONFIDENCE])) + LEARNED_DISAGREEMENT_WEIGHT * disagreement


@dataclass
class RoundChoice:
    """The rows a round verifies, and what choosing them showed."""

    gain: list[dict] = field(default_factory=list)
    """Records of the rows chosen for their gain, highest first."""
    heldout: list[dict] = field(default_factory=list)
    """Records of the uniform held-out rows, in row order."""
    threshold: tuple[float, float] | None = None
    """(score, tiebreak) of the last row chosen for its gain; None when none was."""
    marked: set[int] = field(default_factory=set)
    """Held-out rows, unmarked so far, the gain rule would have picked this round."""
    candidates: int = 0
    """Rows that could still be verified."""

    @property
    def expected_yield(self) -> float | None:
        """The share of the gain rows whose label the vote expects to be wrong: the labels
        a round fixes per verified row, if the vote's confidence is calibrated."""
        if not self.gain:
            return None
        return sum(1.0 - record["confidence"] for record in self.gain) / len(self.gain)

    @property
    def records(self) -> list[dict]:
        return sorted(self.gain + self.heldout, key=_row)


def row_record(number: int, row: Mapping[str, Any], text_column: str, voters) -> dict:
    """The record a verifier is given (the disagreement records' shape)."""
    text = row.get(text_column)
    return {
        "row": number,
        "text": cell_text(text),
        "vote": row[LABEL],
        "agreement": float(row[AGREEMENT]),
        "confidence": float(row[CONFIDENCE]),
        "votes": {name: row[voter_label_column(name)] for name in voters},
        "probabilities": {name: float(row[voter_probability_column(name)]) for name in voters},
    }


def choose_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    spent: set[int],
    heldout: Mapping[int, bool],
    gain_rows: int,
    heldout_rows: int,
    seed: str,
    text_column: str,
    voters: tuple[str, ...],
    learned: tuple[str, ...] = (),
) -> RoundChoice:
    """Choose ``gain_rows`` rows by expected gain and ``heldout_rows`` uniform held-out rows
    among the rows not in ``spent`` (verified, or awaiting a verdict); mark the unmarked
    rows of ``heldout`` (row -> marked) that the gain rule would have picked. ``learned``:
    the learned voters among ``voters``."""
    best: list[tuple[float, float, int, dict]] = []  # a min-heap of the top gain_rows
    uniform: list[tuple[float, int, dict]] = []  # the smallest keys (a max-heap)
    candidates = 0
    keep = gain_rows + heldout_rows
    scored: dict[int, tuple[float, float]] = {}
    for number, row in enumerate(rows):
        key = tiebreak(seed, number)
        if number in heldout:
            if not heldout[number]:
                scored[number] = (gain_score(row, learned), key)
            continue
        if number in spent:
            continue
        candidates += 1
        score = gain_score(row, learned)
        if gain_rows and (len(best) < gain_rows or (score, key) > best[0][:2]):
            entry = (score, key, number, row_record(number, row, text_column, voters))
            (heapq.heappush if len(best) < gain_rows else heapq.heapreplace)(best, entry)
        if heldout_rows and (len(uniform) < keep or -key > uniform[0][0]):
            entry = (-key, number, row_record(number, row, text_column, voters))
            (heapq.heappush if len(uniform) < keep else heapq.heapreplace)(uniform, entry)
    choice = RoundChoice(candidates=candidates)
    best.sort(reverse=True)
    choice.gain = [entry[3] for entry in best]
    if best:
        choice.threshold = best[-1][:2]
        choice.marked = {row for row, key in scored.items() if key >= choice.threshold}
    taken = {record["row"] for record in choice.gain}
    drawn = [entry for entry in sorted(uniform, key=lambda e: -e[0]) if entry[1] not in taken]
    choice.heldout = sorted((record for _, _, record in drawn[:heldout_rows]), key=_row)
    return choice


def _row(record: dict) -> int:
    return record["row"]
