"""How good the final labels are, said honestly: a point estimate with an interval, and
whether the labeler beats always answering the most common label.

The final output gives every verified row its verified label, so those rows are right by
definition; every other row keeps the labeler's prediction. How often those predictions
are right is read off the unmarked held-out rows: a uniform sample of the rows like the
unverified ones (:mod:`agent.rounds.heldout` says how they keep standing for them), each
with its true and its predicted label. Accuracy and macro-F1 come with intervals drawn from
one posterior over those rows' (true, predicted) cells. A pure service module: numpy and
the standard library, no scipy, nothing from the agent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

TARGET_MIN_HELDOUT = 30
"""Held-out rows an estimate needs before it can say a target accuracy is met (a few rows,
all right, are not evidence)."""

LLM_CAVEAT = "; agreement with the LLM verifier, not with the truth"
"""What a log line adds when the 'truth' the estimate rests on is an LLM's verdicts."""

_CONTINUED_FRACTION_STEPS = 20_000
"""Enough for the incomplete beta's continued fraction to converge for n up to ~10^7."""


@dataclass(frozen=True)
class Interval:
    """A point estimate and the interval around it (``low <= point <= high``)."""

    point: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {
            "point": round(float(self.point), 4),
            "low": round(float(self.low), 4),
            "high": round(float(self.high), 4),
        }


@dataclass(frozen=True)
class Estimate:
    """How good the final labels (verified rows' verified labels, the rest predicted) are."""

    accuracy: Interval
    macro_f1: Interval
    heldout_rows: int
    """Unmarked held-out rows the estimate rests on."""
    verified_rows: int
    unverified_rows: int
    level: float = 0.95
    """The intervals' credibility level."""

    def as_dict(self) -> dict:
        return {
            "accuracy": self.accuracy.as_dict(),
            "macro_f1": self.macro_f1.as_dict(),
            "heldout_rows": self.heldout_rows,
            "verified_rows": self.verified_rows,
            "unverified_rows": self.unverified_rows,
            "level": round(float(self.level), 4),
        }


def estimate_final_labels(
    heldout: Sequence[tuple[str, str]],
    verified_labels: Mapping[str, int],
    unverified: int,
    labels: Sequence[str],
    *,
    marked: Sequence[tuple[str, str]] = (),
    pending: int = 0,
    draws: int = 4000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate | None:
    """Accuracy and macro-F1 of the final labels, each with a ``level`` interval.

    ``heldout``: (true label, predicted label) of the unmarked held-out rows;
    ``verified_labels``: verified rows per true label, all of them; ``unverified``: rows
    that keep their prediction; ``marked``: the same pairs for the marked held-out rows, by
    which the ``pending`` rows (chosen for verification, no verdict: the gain rule picked
    them, as it would have the marked ones) are judged, or by every held-out row while none
    is marked. None when nothing can be said: unverified rows but no held-out row to judge
    them by, or no rows at all. Deterministic for a ``seed``.

    Each group's share of each (true, predicted) cell has a Dirichlet posterior: the
    reference rows' counts plus Jeffreys' prior on right against wrong (half a row each, so
    its accuracy is Beta(right + 1/2, wrong + 1/2), the Jeffreys interval). Accuracy and
    macro-F1 intervals are that posterior's quantiles, drawn; the points are the observed
    shares."""
    verified = sum(verified_labels.values())
    left = unverified + pending
    if (left > 0 and not heldout) or verified + left == 0:
        return None
    order = _label_order(labels, [*heldout, *marked], verified_labels)
    diagonal = np.diag([float(verified_labels.get(label, 0)) for label in order])
    if left == 0:
        exact = Interval(1.0, 1.0, 1.0)
        f1 = _macro_f1(diagonal[None], len(labels))[0]
        return Estimate(exact, Interval(f1, f1, f1), len(heldout), verified, 0, level)
    point = diagonal.copy()
    sampled = np.repeat(diagonal[None], draws, axis=0)
    rng = np.random.default_rng(seed)
    for reference, rows in ((heldout, unverified), (marked or heldout, pending)):
        if rows > 0:
            observed, drawn = _cells(order, reference, draws, rng)
            point += rows * observed
            sampled += rows * drawn
    total = verified + left
    accuracy = np.trace(sampled, axis1=1, axis2=2) / total
    f1 = _macro_f1(sampled, len(labels))
    return Estimate(
        accuracy=_interval(float(np.trace(point)) / total, accuracy, level),
        macro_f1=_interval(float(_macro_f1(point[None], len(labels))[0]), f1, level),
        heldout_rows=len(heldout),
        verified_rows=verified,
        unverified_rows=left,
        level=level,
    )


def _cells(
    order: list[str], reference: Sequence[tuple[str, str]], draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(the observed share of each (true, predicted) cell among ``reference``, ``draws``
    draws of those shares from their posterior). The posterior is Dirichlet(cell counts
    plus Jeffreys' prior): half a row spread over the right cells the reference rows use,
    half a row over the wrong ones (over every wrong cell while none is used), so the
    accuracy a draw implies is Beta(right + 1/2, wrong + 1/2) distributed."""
    size = len(order)
    index = {label: position for position, label in enumerate(order)}
    counts = np.zeros((size, size))
    for true, predicted in reference:
        counts[index[true], index[predicted]] += 1
    right = np.eye(size, dtype=bool)
    prior = np.zeros((size, size))
    for mask in (right, ~right):
        used = mask & (counts > 0)
        target = used if used.any() else mask
        prior[target] = 0.5 / target.sum()
    parameters = (counts + prior).reshape(-1)
    live = parameters > 0
    gammas = np.zeros((draws, size * size))
    gammas[:, live] = rng.standard_gamma(parameters[live], size=(draws, int(live.sum())))
    drawn = gammas / gammas.sum(axis=1, keepdims=True)
    return counts / counts.sum(), drawn.reshape(draws, size, size)


def _interval(point: float, sampled: np.ndarray, level: float) -> Interval:
    low, high = np.quantile(sampled, [(1 - level) / 2, (1 + level) / 2])
    return Interval(point, min(float(low), point), max(float(high), point))


def _label_order(
    labels: Sequence[str], pairs: Sequence[tuple[str, str]], verified: Mapping[str, int]
) -> list[str]:
    """``labels`` first (the ones macro-F1 averages over), then any other label seen, so a
    prediction outside the label set still counts against its row's true label."""
    known = set(labels)
    seen = {label for pair in pairs for label in pair} | set(verified)
    return list(labels) + sorted(seen - known)


def _macro_f1(confusions: np.ndarray, averaged: int) -> np.ndarray:
    """Macro-F1 of each (true x predicted) confusion over its first ``averaged`` labels; a
    label with less than half a row of true and predicted mass (none, or a prior's
    fraction) is left out of the mean, and none left gives 0."""
    true_pos = np.diagonal(confusions, axis1=1, axis2=2)[:, :averaged]
    mass = (confusions.sum(axis=2) + confusions.sum(axis=1))[:, :averaged]
    present = mass >= 0.5
    f1 = np.divide(2 * true_pos, mass, out=np.zeros_like(mass), where=present)
    counted = present.sum(axis=1)
    return np.divide(f1.sum(axis=1), counted, out=np.zeros(len(f1)), where=counted > 0)


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the Beta(a, b) distribution function at ``x``, in log space (Numerical
    Recipes' continued fraction), so it holds for a and b in the millions."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    """The incomplete beta's continued fraction by the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, _CONTINUED_FRACTION_STEPS):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def better_than_chance(
    correct: int, voted: int, majority_rate: float, alpha: float = 0.05
) -> tuple[bool, float]:
    """(whether the labeler beats always answering the most common label, the p-value) by
    an exact one-sided binomial test: P(X >= correct) for X ~ Binomial(voted,
    majority_rate), which is I_p(correct, voted - correct + 1), so any n is exact."""
    if voted <= 0 or correct <= 0:
        return False, 1.0
    if correct > voted:
        raise ValueError(f"{correct} right of {voted} voted is impossible")
    p_value = min(1.0, max(0.0, regularized_beta(majority_rate, correct, voted - correct + 1)))
    return p_value < alpha, p_value


def chance_agreement(pairs: Sequence[tuple[str, str]]) -> float:
    """How often a voter that gives each label as often as it does, but independently of the
    truth, would be right on ``pairs`` ((vote, true label)): the sum over labels of the
    voter's share of that label times the truth's (Cohen's expected agreement)."""
    if not pairs:
        return 0.0
    votes = Counter(vote for vote, _ in pairs)
    truth = Counter(label for _, label in pairs)
    return sum(votes[label] * truth[label] for label in votes) / len(pairs) ** 2


def cohen_kappa(correct: int, voted: int, expected: float) -> float:
    """Agreement beyond chance: (observed - expected) / (1 - expected), 0 where undefined."""
    if voted <= 0 or expected >= 1.0:
        return 0.0
    return (correct / voted - expected) / (1.0 - expected)


def majority_rate(true_labels: Sequence[str]) -> float:
    """Share of the most common label: the accuracy of always answering it (0 for none)."""
    if not true_labels:
        return 0.0
    return Counter(true_labels).most_common(1)[0][1] / len(true_labels)


def describe(estimate: Estimate, basis: str) -> str:
    """One log line; ``basis`` says what the held-out labels are ("column:label", "human",
    "llm:<model>"), and an LLM basis is said to be agreement, not truth."""
    accuracy, f1 = estimate.accuracy, estimate.macro_f1
    line = (
        f"estimated accuracy {accuracy.point:.3f} ({estimate.level:.0%} interval "
        f"{accuracy.low:.3f}-{accuracy.high:.3f}), macro-F1 {f1.point:.3f} "
        f"({f1.low:.3f}-{f1.high:.3f}), "
    )
    if estimate.unverified_rows == 0:
        line += f"every one of the {estimate.verified_rows} rows verified"
    else:
        line += f"on {estimate.heldout_rows} held-out rows"
    return line + (LLM_CAVEAT if basis.startswith("llm") else "")
