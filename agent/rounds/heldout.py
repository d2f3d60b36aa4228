"""The held-out rows: the rows the estimate of the labels rests on, and how they must be
treated so that they keep standing for the rows left unverified.

A held-out row is a uniform draw from the rows not yet verified (the pilot's verified
sample, then a slice of each round), verified only to measure the labels. The estimate
reads the accuracy of the unverified rows off them, which holds only while nothing but
chance tells a held-out row from an unverified one. So:

* a held-out row the gain rule would have picked in a later round is *marked*: the rows
  like it were verified, so it stands for those, not for the rows left unverified;
* its verified label is never trained on, and every step that learns from unverified rows
  treats the unmarked held-out rows the same way: self-training replays one, with the
  labeler's label, exactly when it would replay an unverified row as sure (a replayed row
  is memorised, so leaving the held-out rows out would keep the labeler's confident errors
  on the unverified rows while the held-out ones, never memorised, drift into the gain
  rule's picks and out of the estimate: an estimate too high);
* each round's slice is a uniform draw, every free row equally likely whatever its label
  (a slice split by label in proportion rounds a small label's share up: two rows of a
  75/25 pass would be one and one);
* rows chosen for verification that got no verdict (unresolved, or awaiting a person) are
  judged by the marked held-out rows, which the same rule picked, not by the unmarked ones.

Pure functions over the registry (held-out row -> marked) and streamed rows.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from agent.estimate import Estimate, estimate_final_labels
from agent.labeler_runtime import CONFIDENCE, LABEL


def open_round(heldout: MutableMapping[int, bool], drawn: Iterable[int], marked: Iterable[int]):
    """Register a round's choice: its held-out rows (unmarked) and the earlier held-out rows
    the gain rule would have picked (marked)."""
    for row in marked:
        heldout[row] = True
    for row in drawn:
        heldout.setdefault(row, False)


def replay_exclusions(spent: Iterable[int], heldout: Mapping[int, bool]) -> set[int]:
    """The rows self-training must not replay: those verified or chosen for verification,
    except the unmarked held-out rows (they stand for the unverified rows, so they are
    replayed, with the labeler's label, as those are)."""
    return {row for row in spent if heldout.get(row, True)}


def replay_rows(
    rows: Iterable[Mapping[str, Any]], exclude: set[int], count: int, min_confidence: float
) -> list[tuple[int, Mapping[str, Any]]]:
    """The ``count`` rows of a labeling pass (streamed, in row order) its vote is surest of,
    at least ``min_confidence``, none in ``exclude``: (row number, row), in row order. Ties
    go to the earlier row."""
    surest: list[tuple[float, int, Mapping[str, Any]]] = []
    if count <= 0:
        return []
    for number, row in enumerate(rows):
        confidence = float(row[CONFIDENCE])
        if number in exclude or confidence < min_confidence:
            continue
        entry = (confidence, -number, row)
        if len(surest) < count:
            heapq.heappush(surest, entry)
        elif entry[:2] > surest[0][:2]:
            heapq.heapreplace(surest, entry)
    return sorted(((-number, row) for _, number, row in surest), key=lambda pair: pair[0])


@dataclass
class Evidence:
    """What an estimate reads off a labeling pass."""

    unmarked: list[tuple[str, str]] = field(default_factory=list)
    """(verified, predicted) label of each unmarked held-out row."""
    marked: list[tuple[str, str]] = field(default_factory=list)
    """(verified, predicted) label of each marked held-out row."""
    unverified: int = 0
    """Rows left unverified and never chosen."""
    pending: int = 0
    """Rows chosen for verification without a verdict (unresolved, or awaiting one)."""
    verified: Counter = field(default_factory=Counter)
    """Verified rows per verified label."""


def gather(
    predicted: Iterable[str],
    verified: Mapping[int, str],
    spent: Iterable[int],
    heldout: Mapping[int, bool],
) -> Evidence:
    """The evidence of one pass: ``predicted``, its label per row (streamed, in row order);
    ``verified``: row -> verified label; ``spent``: rows verified or chosen for it."""
    spent = set(spent)
    evidence = Evidence(verified=Counter(verified.values()))
    for number, label in enumerate(predicted):
        if number in verified:
            if number in heldout:
                pair = (verified[number], label)
                (evidence.marked if heldout[number] else evidence.unmarked).append(pair)
        elif number in spent:
            evidence.pending += 1
        else:
            evidence.unverified += 1
    return evidence


def predicted_labels(rows: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    """The label column of a labeling pass's rows, streamed."""
    return (str(row[LABEL]) for row in rows)


def estimate(evidence: Evidence, labels: list[str], *, seed: int = 0) -> Estimate | None:
    """The estimate of the final labels this evidence supports (None: nothing to rest on)."""
    return estimate_final_labels(
        evidence.unmarked,
        evidence.verified,
        evidence.unverified,
        labels,
        marked=evidence.marked,
        pending=evidence.pending,
        seed=seed,
    )
