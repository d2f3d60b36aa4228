"""The vote: how the voters' probabilities become one label per row.

Two rules share one result shape. :func:`vote` is the plain weighted majority.
:func:`pooled_vote` is the learned vote: a weighted log-linear pool, label
scores ``bias[k] + sum_j weight[j] * log p_j[k]`` through a softmax, whose
weights and biases :mod:`.learned_vote` fits on verified rows (a voter that is
often wrong gets a small weight, one that is never right gets none).

The learned vote in use is ``votes/<version>/vote.json`` under the package, with
``votes/CURRENT`` naming the version (:func:`current_vote`); without one the
labeler takes the plain vote.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import versions
from .config import LabelerSpec
from .voters import VoterLoadError

VOTES = "votes"
"""The learned votes' folder under the package."""
RECORD = "vote.json"
"""A learned vote's record in its version folder."""

AGREEMENT_DECIMALS = 6
"""Agreement is rounded so that, e.g., three equal weights give exactly 1.0 when unanimous."""


ABSTAIN_SPREAD = 1e-9
"""A voter whose probabilities are this close to uniform has no opinion and abstains."""
LOG_FLOOR = 1e-6
"""Probabilities are floored here before the pool takes logs (a sure voter is not infinite)."""


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


def log_probabilities(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """(voters, rows, labels) floored log-probabilities: the pool's features."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    return np.log(np.maximum(stacked, LOG_FLOOR))


def pool_scores(log_probs: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(rows, labels) label scores of the log-linear pool."""
    return np.einsum("j,jnk->nk", weights, log_probs) + bias


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def pooled_vote(
    probabilities: Sequence[np.ndarray], weights: Sequence[float], bias: Sequence[float]
) -> VoteResult:
    """The learned vote: the pool's most probable label, its probability as the confidence,
    and as agreement the weight share of the voters whose own label it is.

    An abstaining voter (uniform probabilities) adds the same score to every label, so it
    changes nothing, and it does not count towards agreement; nor does a voter of weight 0.
    """
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probabilities])
    voters, rows, _ = stacked.shape
    weight = np.asarray(weights, dtype=np.float64)
    if voters == 0 or weight.shape != (voters,) or np.any(weight < 0):
        raise ValueError("a learned vote needs one non-negative weight per voter")
    posterior = softmax(pool_scores(log_probabilities(stacked), weight, np.asarray(bias)))
    winner = posterior.argmax(axis=1)
    voter_label = stacked.argmax(axis=2)
    abstained = (stacked.max(axis=2) - stacked.min(axis=2)) <= ABSTAIN_SPREAD
    active = np.where(abstained, 0.0, weight[:, None])
    voting_weight = active.sum(axis=0)
    for_winner = (active * (voter_label == winner[None, :])).sum(axis=0)
    share = np.divide(for_winner, voting_weight, out=np.zeros(rows), where=voting_weight > 0)
    return VoteResult(
        label_index=winner,
        confidence=posterior[np.arange(rows), winner],
        agreement=np.round(share, AGREEMENT_DECIMALS),
        voter_label_index=voter_label,
        voter_confidence=np.take_along_axis(stacked, voter_label[:, :, None], axis=2)[:, :, 0],
        abstained=abstained,
    )


@dataclass(frozen=True)
class LearnedVote:
    version: str
    weights: tuple[float, ...]
    """One per voter, in the spec's voter order."""
    bias: tuple[float, ...]
    """One per label, in the spec's label order."""


def votes_folder(package_root: Path) -> Path:
    return package_root / VOTES


def current_vote(package_root: Path, spec: LabelerSpec) -> LearnedVote | None:
    """The learned vote in use, or None (the plain vote); checked against the spec."""
    version = versions.current(votes_folder(package_root))
    if version is None:
        return None
    path = votes_folder(package_root) / version / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        weights = {entry["voter"]: float(entry["weight"]) for entry in record["voters"]}
        bias = {label: float(value) for label, value in record["bias"].items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VoterLoadError(
            f"learned vote {path} named by votes/CURRENT is unreadable: {error}"
        ) from None
    names = [voter.name for voter in spec.voters]
    if sorted(weights) != sorted(names) or sorted(bias) != sorted(spec.labels):
        raise VoterLoadError(
            f"learned vote {path} is for voters {sorted(weights)} and labels {sorted(bias)}, "
            f"not this package's {sorted(names)} and {sorted(spec.labels)}"
        )
    if any(not np.isfinite(w) or w < 0 for w in weights.values()):
        raise VoterLoadError(f"learned vote {path} holds a negative or non-finite weight")
    return LearnedVote(
        version=version,
        weights=tuple(weights[name] for name in names),
        bias=tuple(bias[label] for label in spec.labels),
    )


def install_vote(output: Path, version: str, package_root: Path) -> None:
    """Copy ``output/<version>`` into the package and make it the vote in use."""
    versions.install(output / version, votes_folder(package_root), version)
