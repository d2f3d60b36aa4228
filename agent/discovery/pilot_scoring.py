"""Scoring the candidates on the pilot, and choosing the voters: pure functions of the votes.

Each candidate is scored by its accuracy on the verified pilot rows when there are enough
of them, else by how often it agrees with the majority of the *other* candidates
(leave-one-out consensus, which cannot tell a right majority from a wrong one). The best
are chosen, skipping near-duplicates (:data:`REDUNDANT_AGREEMENT`); the review rule is
applied to the chosen voters' pilot votes to expect the share of rows that will be disputed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from agent.discovery.calibration import MIN_ROWS
from agent.estimate import better_than_chance, chance_agreement, cohen_kappa
from agent.state import Candidate

REDUNDANT_AGREEMENT = 0.99
"""Two voters agreeing this often add nothing to each other."""


def consensus_agreement(name: str, votes: dict[str, list[str]]) -> float:
    """Share of rows where ``name`` agrees with the strict majority of the other voters."""
    others = [labels for other, labels in votes.items() if other != name]
    if not others:
        return 1.0
    agreed = counted = 0
    for row, own in enumerate(votes[name]):
        tally = Counter(labels[row] for labels in others).most_common(2)
        if len(tally) > 1 and tally[0][1] == tally[1][1]:
            continue  # the others are split: no consensus to compare with
        counted += 1
        agreed += own == tally[0][0]
    return agreed / counted if counted else 0.0


def verified_accuracy(own: Sequence[str], verified: Sequence[str | None]) -> float:
    """Share of the verified rows where ``own`` gave the verified label (no vote is wrong)."""
    pairs = [(vote, label) for vote, label in zip(own, verified, strict=True) if label is not None]
    return sum(vote == label for vote, label in pairs) / len(pairs) if pairs else 0.0


def rank_voters(
    candidates: Sequence[Candidate],
    scores: dict[str, float],
    votes: dict[str, list[str]],
    k: int,
    tiebreak: dict[str, float] | None = None,
) -> tuple[list[Candidate], dict[str, str]]:
    """Best-scoring candidates first, skipping one that duplicates a voter already chosen.

    Returns the voters and, for each candidate skipped as a duplicate, why.
    """
    tiebreak = tiebreak or {}
    ranked = sorted(
        candidates,
        key=lambda c: (-scores[c.name], -tiebreak.get(c.name, 0.0), -(c.downloads or 0), c.name),
    )
    chosen: list[Candidate] = []
    skipped: dict[str, str] = {}
    for candidate in ranked:
        if len(chosen) == k:
            break
        own = votes[candidate.name]
        twin = next(
            (c for c in chosen if _agreement(own, votes[c.name]) >= REDUNDANT_AGREEMENT), None
        )
        if twin is not None:
            share = _agreement(own, votes[twin.name])
            skipped[candidate.name] = (
                f"not selected: it duplicates {twin.name} (the same vote on {share:.0%} of "
                "pilot rows)"
            )
            continue
        chosen.append(candidate)
    if not chosen:
        return list(ranked[:k]), {}
    return chosen, skipped


def _agreement(first: list[str], second: list[str]) -> float:
    return sum(a == b for a, b in zip(first, second, strict=True)) / max(len(first), 1)


def expected_flag_rate(
    votes: Sequence[list[str | None]],
    probabilities: Sequence[list[float]],
    labels: int,
    min_agreement: float,
    min_confidence: float = 0.0,
) -> float:
    """Share of rows the review rule would flag under the plain vote: the winning label's vote
    share below ``min_agreement`` or the voters' mean probability for it below
    ``min_confidence``. Abstaining voters (no label) do not count. An estimate for more than
    two labels: a voter's probability for a label it did not choose is taken as an even share
    of what its own label left."""
    rows = len(votes[0]) if votes else 0
    if rows == 0:
        return 0.0
    flagged = 0
    for row in range(rows):
        ballots = [
            (own[row], chance[row])
            for own, chance in zip(votes, probabilities, strict=True)
            if own[row] not in (None, "")
        ]
        if not ballots:
            flagged += 1
            continue
        counts = Counter(label for label, _ in ballots)
        top = max(counts.values())

        def support(label: str, ballots=ballots) -> float:
            rest = max(labels - 1, 1)
            return sum(p if own == label else (1 - p) / rest for own, p in ballots)

        winner = max((label for label in counts if counts[label] == top), key=support)
        agreement = round(top / len(ballots), 6)
        flagged += agreement < min_agreement or support(winner) / len(ballots) < min_confidence
    return flagged / rows


def voter_note(
    candidate: Candidate,
    agreement: float,
    accuracy: float | None,
    rows: tuple[int, int],
    verdict: str,
    calibrated: str,
) -> str:
    """One line on a candidate: its scores (``rows``: pilot rows, verified rows), whether it
    was selected, and how its label map was decided when its names did not say."""
    pilot_rows, verified_rows = rows
    consensus = (
        f"agreed with the other voters' majority on {agreement:.0%} of {pilot_rows} pilot rows"
    )
    if accuracy is None:
        note = f"{candidate.name} ({candidate.ref}): {consensus}; {verdict}"
    else:
        note = (
            f"{candidate.name} ({candidate.ref}): right on {accuracy:.0%} of {verified_rows} "
            f"verified pilot rows ({consensus}); {verdict}"
        )
    return "".join(
        [note, *(f"; {more}" for more in (candidate.label_map_note, calibrated) if more)]
    )


def basis_note(
    rows: int,
    verifier: str,
    verified: int | None,
    scored_on_verified: bool,
    why_unverified: str,
    voters_named: bool,
) -> str:
    """How the candidates were scored and chosen, and why on that basis (``verified``: the
    pilot rows verified by ``verifier``, None when none were put to a verifier)."""
    if scored_on_verified:
        llm = verifier.startswith("llm:")
        who = f"the LLM ({verifier[4:]})" if llm else verifier.replace(":", " ", 1)
        scored = (
            f"scored on a pilot of {rows} rows by accuracy against the {verified} of "
            f"them verified by {who}"
        )
    else:
        if verified is not None:
            why = f"only {verified} could be verified, fewer than {MIN_ROWS}"
        else:
            why = why_unverified
        scored = (
            f"scored on a pilot of {rows} rows by leave-one-out consensus (agreement with the "
            f"other candidates' majority), not by verified rows: {why}"
        )
    if voters_named:
        return f"Voters named with --model, all kept; {scored}."
    return f"Candidates {scored}; the best are kept, skipping near-duplicates."


CHANCE_ALPHA = 0.2
"""The chance-level test's level. Dropping a useful voter costs more than keeping a useless
one (the learned vote weighs a useless voter down), and on ~100 verified pilot rows a
voter right 69% of the time can show only 60% by chance; at 0.2 such a voter is kept, and a
coin is still dropped four times in five."""


def chance_level(
    candidates: Sequence[Candidate],
    votes: dict[str, list[str]],
    verified: Sequence[str | None],
    alpha: float = CHANCE_ALPHA,
) -> dict[str, str]:
    """Candidate -> why it is dropped: on the verified (held-out) pilot rows it voted on, its
    votes carry no signal about the labels: it is not right more often than a voter giving
    each label as often as it does, independently of the truth, would be (Cohen's expected
    agreement), by a one-sided exact binomial test at ``alpha``.

    Not the majority rate: on skewed data a voter can be right less often than always
    answering the most common label and still tell the labels apart (its errors are not the
    majority label's), and the learned vote weighs what it adds. A voter that always answers
    one label carries no signal and is dropped. Abstentions are not errors."""
    return without_signal(voter_signals(candidates, votes, verified, alpha))


def without_signal(signals: dict[str, Signal]) -> dict[str, str]:
    """Voter -> why it is dropped, for the voters whose ``signals`` carry none."""
    return {
        name: f"its votes carry no signal: {signal.describe()}"
        for name, signal in signals.items()
        if not signal.carried
    }


def voter_signals(
    candidates: Sequence[Candidate],
    votes: dict[str, list[str]],
    verified: Sequence[str | None],
    alpha: float = CHANCE_ALPHA,
) -> dict[str, Signal]:
    """Candidate -> what its votes on the verified pilot rows say beyond chance (candidates
    that voted on none of them are left out)."""
    signals = {}
    for candidate in candidates:
        pairs = [
            (vote, label)
            for vote, label in zip(votes[candidate.name], verified, strict=True)
            if label is not None and vote not in (None, "")
        ]
        if pairs:
            signals[candidate.name] = carried_signal(pairs, alpha)
    return signals


class Signal:
    """What a voter's votes say about the verified labels beyond chance."""

    def __init__(self, correct: int, voted: int, expected: float, p_value: float, alpha: float):
        self.correct, self.voted, self.expected = correct, voted, expected
        self.p_value, self.carried = p_value, p_value < alpha
        self.kappa = cohen_kappa(correct, voted, expected)

    def brief(self) -> str:
        """Why a kept voter is kept, in a few words."""
        return f"carries signal: Cohen's kappa {self.kappa:.2f}, p = {self.p_value:.3f}"

    def describe(self) -> str:
        return (
            f"right on {self.correct} of the {self.voted} verified pilot rows it voted on "
            f"({self.correct / self.voted:.0%}, against {self.expected:.0%} for votes given "
            f"as often but independently of the labels; Cohen's kappa {self.kappa:.2f}, "
            f"one-sided binomial test, p = {self.p_value:.2f})"
        )


def carried_signal(pairs: Sequence[tuple[str, str]], alpha: float = CHANCE_ALPHA) -> Signal:
    """Whether ``pairs`` ((vote, verified label)) agree beyond chance (see
    :func:`chance_level`)."""
    correct = sum(vote == label for vote, label in pairs)
    expected = chance_agreement(pairs)
    _, p_value = better_than_chance(correct, len(pairs), expected, alpha)
    return Signal(correct, len(pairs), expected, p_value, alpha)
