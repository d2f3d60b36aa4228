"""Settling label maps on the pilot: opaque labels, and named labels that are inverted.

A model whose labels are ``LABEL_0``/``LABEL_1`` says nothing about what they mean, and
a model whose names are swapped (its "toxic" fires on civil text) says the wrong thing;
the public AutoAnnotator code would use both silently. Here the pilot decides. Each
candidate's votes are traced back to its own labels, and every one-to-one assignment of
those labels to task labels is scored against a reference: the verified pilot rows when
at least :data:`MIN_ROWS` of them have a verified label (:mod:`agent.verification.pilot`),
else the majority vote of the voters whose names are trusted (ties left out).

An assignment is *convincing* when, on at least :data:`MIN_ROWS` reference rows, it agrees
beyond chance by Cohen's kappa of at least :data:`KAPPA_MIN` (chance computed from the
vote frequencies, so a model that always says the majority label is not rewarded), a
one-sided binomial test against that chance rate passes at :data:`ALPHA` divided by the
number of assignments tried, and it beats the runner-up assignment by :data:`MARGIN`
in agreement. Opaque candidates take the convincing assignment or are refused. A named
Hugging Face classifier (lexicons and embedding voters use the task's labels by
construction) is flipped only when its own mapping agrees *below* chance by the same kappa
while another assignment is convincing, and, without verified rows, only when at least two
other trusted voters form its reference (with one, two voters contradicting each other
cannot tell which is wrong). Flips go greedily, most rows gained first, recomputing after
each.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from agent.discovery.label_names import IGNORE, all_opaque
from agent.state import Candidate, Rejection

KAPPA_MIN = 0.4
"""Agreement beyond chance needed to trust an assignment (0.4: "moderate" by Landis & Koch)."""
MIN_ROWS = 20
"""Fewest reference rows (pilot rows where the reference voters have a majority)."""
ALPHA = 0.01
"""Family-wise false-acceptance rate of the binomial test, over all assignments tried."""
MARGIN = 0.1
"""Agreement the best assignment must have over the runner-up."""
MAX_ASSIGNMENTS = 720
"""Assignments tried at most (6 labels onto 6); more labels cannot be calibrated on a pilot."""
CONFIG_LABELED = "hf-sequence-classifier"
"""The voter kind whose label names come from a model's config.json."""


@dataclass(frozen=True)
class Fit:
    """How one assignment of a model's labels agrees with the reference."""

    mapping: dict[str, str]
    rows: int
    agreed: int
    kappa: float
    p_value: float

    @property
    def agreement(self) -> float:
        return self.agreed / self.rows if self.rows else 0.0


@dataclass
class Calibration:
    """The candidates with settled label maps, their remapped pilot votes, and what changed."""

    candidates: list[Candidate]
    votes: dict[str, list[str]]
    rejections: list[Rejection] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    """Voter name -> what the pilot decided about its labels (for the model card)."""
    warnings: list[str] = field(default_factory=list)


def calibrate_label_maps(
    candidates: Sequence[Candidate],
    votes: dict[str, list[str]],
    task_labels: Sequence[str],
    verified: Sequence[str | None] | None = None,
) -> Calibration:
    """Flip inverted named voters, then settle or refuse the opaque ones.

    ``verified`` holds a verified label per pilot row (None where there is none); with at
    least :data:`MIN_ROWS` of them it is the reference, else the named voters' majority is.
    """
    result = Calibration(list(candidates), {name: list(v) for name, v in votes.items()})
    truth = verified_reference(verified)
    trusted = [c for c in result.candidates if not all_opaque(c.model_labels)]
    _flip_inverted(result, trusted, truth)
    trusted_names = {c.name for c in trusted}
    reference = truth or consensus([result.votes[name] for name in trusted_names])
    for candidate in [c for c in result.candidates if all_opaque(c.model_labels)]:
        have_reference = truth is not None or bool(trusted_names)
        _settle_opaque(result, candidate, reference, task_labels, have_reference, truth is not None)
    return result


def verified_reference(verified: Sequence[str | None] | None) -> list[str | None] | None:
    """The verified labels when there are enough of them to judge a mapping by, else None."""
    if verified is None or sum(label is not None for label in verified) < MIN_ROWS:
        return None
    return list(verified)


def _flip_inverted(
    result: Calibration, trusted: list[Candidate], truth: list[str | None] | None
) -> None:
    # Only names read from a model's config can be wrong that way; a lexicon's or an
    # embedding voter's labels are the task's by construction (a weak one is just weak).
    flippable = [c.name for c in trusted if c.kind == CONFIG_LABELED and _one_to_one(c.label_map)]
    against = "the verified pilot rows" if truth is not None else "the other voters"
    for _ in range(len(flippable)):
        best: tuple[int, Candidate, Fit, Fit] | None = None
        for candidate in [c for c in result.candidates if c.name in flippable]:
            others = [result.votes[c.name] for c in trusted if c.name != candidate.name]
            if truth is None and len(others) < 2:
                continue
            reference = truth if truth is not None else consensus(others)
            own = _model_votes(candidate, result.votes[candidate.name])
            current = fit(own, reference, candidate.label_map)
            targets = [candidate.label_map[label] for label in candidate.model_labels]
            ranked = ranked_fits(own, reference, candidate.model_labels, targets)
            if current.kappa > -KAPPA_MIN or not ranked or not convincing(ranked):
                continue
            gain = ranked[0].agreed - current.agreed
            if best is None or gain > best[0]:
                best = (gain, candidate, current, ranked[0])
        if best is None:
            return
        _, candidate, current, chosen = best
        flippable.remove(candidate.name)
        _apply(result, candidate, chosen.mapping)
        result.notes[candidate.name] = (
            f"its label names are inverted: as named they agreed with {against} on "
            f"{current.agreement:.0%} of {current.rows} pilot rows, remapped on "
            f"{chosen.agreement:.0%}; label map {chosen.mapping}"
        )
        result.warnings.append(f"{candidate.ref}: {result.notes[candidate.name]}")


def _settle_opaque(
    result: Calibration,
    candidate: Candidate,
    reference: list[str | None],
    task_labels: Sequence[str],
    have_reference: bool,
    verified: bool = False,
) -> None:
    against = "the verified pilot rows" if verified else "the named voters"
    own = _model_votes(candidate, result.votes[candidate.name])
    ranked = (
        ranked_fits(own, reference, candidate.model_labels, task_labels) if have_reference else []
    )
    labels = ", ".join(candidate.model_labels)
    if have_reference and ranked and convincing(ranked):
        chosen = ranked[0]
        _apply(result, candidate, chosen.mapping)
        result.notes[candidate.name] = (
            f"its opaque labels were mapped by pilot agreement: {chosen.mapping} agreed with "
            f"{against} on {chosen.agreement:.0%} of {chosen.rows} rows "
            f"(kappa {chosen.kappa:.2f})"
        )
        return
    if not have_reference:
        why = "no voter with named labels to compare with"
    elif not ranked:
        why = "too many labels to try every assignment"
    else:
        top = ranked[0]
        why = (
            f"the best assignment agreed with {against} on {top.agreement:.0%} of "
            f"{top.rows} pilot rows (kappa {top.kappa:.2f}), not clearly better than chance"
        )
    reason = f"its labels ({labels}) are opaque and {why}"
    result.rejections.append(Rejection(ref=candidate.ref, reason=reason))
    result.candidates = [c for c in result.candidates if c.name != candidate.name]
    del result.votes[candidate.name]


def _apply(result: Calibration, candidate: Candidate, mapping: dict[str, str]) -> None:
    """Replace the candidate's label map and re-express its pilot votes through it."""
    own = _model_votes(candidate, result.votes[candidate.name])
    result.votes[candidate.name] = [mapping[label] if label else "" for label in own]
    updated = candidate.model_copy(update={"label_map": dict(mapping)})
    result.candidates = [updated if c.name == candidate.name else c for c in result.candidates]


def consensus(vote_lists: Sequence[Sequence[str]]) -> list[str | None]:
    """Per row, the label most of the voters gave; None when tied or there are no voters."""
    if not vote_lists:
        return []
    reference: list[str | None] = []
    for row in zip(*vote_lists, strict=True):
        tally = Counter(row).most_common(2)
        tied = len(tally) > 1 and tally[0][1] == tally[1][1]
        reference.append(None if tied else tally[0][0])
    return reference


def assignments(model_labels: Sequence[str], targets: Sequence[str]) -> Iterator[dict[str, str]]:
    """Every one-to-one assignment of ``model_labels`` to distinct ``targets``."""
    for chosen in itertools.permutations(targets, len(model_labels)):
        yield dict(zip(model_labels, chosen, strict=True))


def ranked_fits(
    own: Sequence[str | None],
    reference: Sequence[str | None],
    model_labels: Sequence[str],
    targets: Sequence[str],
) -> list[Fit]:
    """Every assignment's fit, best first; empty when there are too many to try."""
    count = math.perm(len(targets), len(model_labels)) if len(targets) >= len(model_labels) else 0
    if count == 0 or count > MAX_ASSIGNMENTS:
        return []
    fits = [fit(own, reference, mapping) for mapping in assignments(model_labels, targets)]
    # Bonferroni: the best of ``count`` tries must pass the test as a family.
    fits = [dataclasses.replace(f, p_value=min(1.0, f.p_value * count)) for f in fits]
    return sorted(fits, key=lambda f: (-f.agreed, -f.kappa))


def convincing(ranked: Sequence[Fit]) -> bool:
    best = ranked[0]
    runner_up = ranked[1].agreement if len(ranked) > 1 else 0.0
    return (
        best.rows >= MIN_ROWS
        and best.kappa >= KAPPA_MIN
        and best.p_value <= ALPHA
        and best.agreement - runner_up >= MARGIN
    )


def fit(own: Sequence[str | None], reference: Sequence[str | None], mapping: dict[str, str]) -> Fit:
    """Agreement, Cohen's kappa and a binomial p-value of ``mapping`` against ``reference``."""
    pairs = [
        (mapping[label], wanted)
        for label, wanted in zip(own, reference, strict=True)
        if label and wanted is not None and mapping.get(label, IGNORE) != IGNORE
    ]
    rows = len(pairs)
    if rows == 0:
        return Fit(mapping, 0, 0, 0.0, 1.0)
    agreed = sum(given == wanted for given, wanted in pairs)
    given_counts = Counter(given for given, _ in pairs)
    wanted_counts = Counter(wanted for _, wanted in pairs)
    chance = sum(given_counts[label] * wanted_counts[label] for label in given_counts) / rows**2
    observed = agreed / rows
    kappa = 0.0 if chance >= 1.0 else (observed - chance) / (1.0 - chance)
    return Fit(mapping, rows, agreed, kappa, binomial_tail(agreed, rows, chance))


def binomial_tail(successes: int, trials: int, rate: float) -> float:
    """P(X >= successes) for X ~ Binomial(trials, rate), computed in log space."""
    if successes <= 0 or rate >= 1.0:
        return 1.0
    if rate <= 0.0:
        return 0.0
    terms = [
        math.lgamma(trials + 1)
        - math.lgamma(k + 1)
        - math.lgamma(trials - k + 1)
        + k * math.log(rate)
        + (trials - k) * math.log1p(-rate)
        for k in range(successes, trials + 1)
    ]
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(term - peak) for term in terms))


def _one_to_one(label_map: dict[str, str]) -> bool:
    targets = list(label_map.values())
    return IGNORE not in targets and len(set(targets)) == len(targets) and len(targets) > 1


def _model_votes(candidate: Candidate, task_votes: Sequence[str]) -> list[str | None]:
    """The model's own label behind each pilot vote (its map is one-to-one, so invertible)."""
    inverse = {target: label for label, target in candidate.label_map.items() if target != IGNORE}
    return [inverse.get(vote) for vote in task_votes]
