"""The vote: how the voters' probabilities become one label per row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

AGREEMENT_DECIMALS = 6
"""Agreement is rounded so that, e.g., three equal weights give exactly 1.0 when unanimous."""


ABSTAIN_SPREAD = 1e-9
"""A voter whose probabilities are this close to uniform has no opinion and abstains."""


@dataclass(frozen=True)
class VoteResult:
    """Per-row outcome of a vote over ``n`` rows and ``k`` voters."""

    label_index: np.ndarray
    """(n,) index of the winning label."""
    confidence: np.ndarray
    """(n,) weighted mean probability the voters gave the winning label."""
    agreement: np.ndarray
    """(n,) weighted share of voters whose own label is the winner."""
    voter_label_index: np.ndarray
    """(k, n) each voter's own label."""
    voter_confidence: np.ndarray
    """(k, n) the probability each voter gave its own label."""
    abstained: np.ndarray
    """(k, n) True where a voter had no opinion (uniform probabilities)."""


def vote(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> VoteResult:
    """Weighted majority vote; ties go to the larger summed probability, then to label order.

    ``probabilities`` holds one (n, labels) array per voter, each row summing to 1. A voter
    with uniform probabilities on a row (a lexicon that found no sentiment word) abstains:
    it casts no ballot and does not count towards agreement or confidence.
    """
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    voters, rows, labels = stacked.shape
    weight = np.asarray(weights, dtype=np.float64).reshape(voters, 1)
    if voters == 0 or np.any(weight <= 0):
        raise ValueError("a vote needs at least one voter, each with a positive weight")
    voter_label = stacked.argmax(axis=2)
    abstained = (stacked.max(axis=2) - stacked.min(axis=2)) <= ABSTAIN_SPREAD
    active = np.where(abstained, 0.0, weight)  # (voters, rows)
    ballots = np.zeros((rows, labels))
    for voter in range(voters):
        np.add.at(ballots, (np.arange(rows), voter_label[voter]), active[voter])
    summed = (stacked * active[:, :, None]).sum(axis=0)
    # Lexicographic winner: most ballots, then most summed probability, then first label.
    top = ballots == ballots.max(axis=1, keepdims=True)
    winner = np.where(top, summed, -np.inf).argmax(axis=1)
    voting_weight = active.sum(axis=0)
    rows_index = np.arange(rows)
    share = np.divide(
        ballots[rows_index, winner], voting_weight, out=np.zeros(rows), where=voting_weight > 0
    )
    confidence = np.divide(
        summed[rows_index, winner],
        voting_weight,
        out=np.full(rows, 1.0 / labels),
        where=voting_weight > 0,
    )
    return VoteResult(
        label_index=winner,
        confidence=confidence,
        agreement=np.round(share, AGREEMENT_DECIMALS),
        voter_label_index=voter_label,
        voter_confidence=np.take_along_axis(stacked, voter_label[:, :, None], axis=2)[:, :, 0],
        abstained=abstained,
    )
