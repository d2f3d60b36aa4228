"""Does the estimate's 95% interval hold the truth? A simulation with known truth.

Each simulated run goes through the agent's own round machinery, the parts that decide
which rows the estimate rests on: the round sizes (:mod:`agent.rounds.schedule`), the gain
rule with its uniform held-out slice and its marks (:mod:`agent.rounds.selection`), the
held-out registry and the rows an estimate reads (:mod:`agent.rounds.heldout`), the
self-training rows a learning pass replays (:func:`agent.rounds.heldout.replay_rows`) and
the estimator itself (:mod:`agent.estimate`). Only the labeler is simulated:

- rows fall in topics of about ten rows; a topic has a label drawn from the label shares,
  and a row takes its topic's label 85% of the time, else one drawn from the shares;
- each frozen voter is right on a row with its quality, less on hard rows (a row's
  difficulty is uniform), abstains on a fifth of the rows when it is weak (a lexicon), and
  its errors go to the other labels by their shares (the common label gets most of them);
- one learned voter predicts the most common training label of a row's topic (a neighbour
  model), and on a row it trained on, that row's own training label 70% of the time (it
  memorises), with the label's smoothed share of the topic (0.95 when it memorised) as
  its probability; it abstains before it has trained. Its training rows are the verified rows
  less the held-out ones, plus the self-training rows, labeled by the vote;
- the vote is the product of the voters' likelihoods (a frozen voter's quality, the
  learned voter's probability), and its confidence is the winning label's posterior.

A run verifies the pilot's uniform sample, then rounds until 30% of the rows are verified
(or the learning curve is flat), and compares the final labels' true accuracy with the
estimate. Coverage over 200 runs per setting:

    python benchmarks/estimate_coverage.py --runs 200
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.labeler_runtime import (  # noqa: E402
    AGREEMENT,
    CONFIDENCE,
    LABEL,
    voter_label_column,
    voter_probability_column,
)
from agent.rounds.heldout import (  # noqa: E402
    estimate,
    gather,
    open_round,
    predicted_labels,
    replay_exclusions,
    replay_rows,
)
from agent.rounds.schedule import round_rows, split_round, stop_after_choosing  # noqa: E402
from agent.rounds.selection import choose_rows  # noqa: E402

LEARNED = "learned"
TOPIC_ROWS = 10
TOPIC_FIDELITY = 0.85
MEMORISE = 0.7
MEMORISED_PROBABILITY = 0.95
REPLAY_RATIO, REPLAY_MIN_CONFIDENCE = 1.0, 0.9
"""The agent's defaults (``Settings.replay_ratio``, ``Settings.replay_min_confidence``)."""
HELDOUT_SHARE, MIN_ROUND_YIELD = 0.05, 0.1
"""The agent's defaults (``Settings.heldout_share``, ``Settings.min_round_yield``)."""


@dataclass(frozen=True)
class Setting:
    name: str
    shares: tuple[float, ...]
    """The labels' shares in the data."""
    voters: tuple[float, ...]
    """The frozen voters' qualities (a quality under 0.7 abstains on a fifth of the rows)."""
    rows: int = 2000
    budget: float = 0.3
    pilot: int = 100


SETTINGS = [
    Setting(name, shares, voters)
    for name_shares, shares in [
        ("balanced-2", (0.5, 0.5)),
        ("skewed-2", (0.75, 0.25)),
        ("skewed-2-90", (0.9, 0.1)),
        ("skewed-3", (0.5, 0.3, 0.2)),
        ("skewed-5", (0.4, 0.25, 0.15, 0.1, 0.1)),
    ]
    for voters_name, voters in [("varied", (0.85, 0.7, 0.6)), ("weak", (0.6,)), ("none", ())]
    for name in [f"{name_shares}/{voters_name}"]
]


class World:
    """One simulated data set: its rows' truth, topics, difficulty and frozen votes."""

    def __init__(self, setting: Setting, seed: int) -> None:
        self.setting = setting
        rng = np.random.default_rng(seed)
        self.rng = rng
        k, n = len(setting.shares), setting.rows
        self.labels = [f"l{index}" for index in range(k)]
        shares = np.array(setting.shares)
        topics = -(-n // TOPIC_ROWS)
        topic_label = rng.choice(k, size=topics, p=shares)
        self.topic = rng.integers(0, topics, size=n)
        drawn = rng.choice(k, size=n, p=shares)
        faithful = rng.random(n) < TOPIC_FIDELITY
        self.truth = np.where(faithful, topic_label[self.topic], drawn)
        difficulty = rng.random(n)
        self.frozen = []  # per voter: label index per row, -1 = abstain
        for quality in setting.voters:
            right = rng.random(n) < np.clip(quality + 0.3 * (0.5 - difficulty), 0.0, 1.0)
            wrong = self._wrong_labels(shares)
            votes = np.where(right, self.truth, wrong)
            if quality < 0.7:
                votes = np.where(rng.random(n) < 0.2, -1, votes)
            self.frozen.append(votes)

    def _wrong_labels(self, shares: np.ndarray) -> np.ndarray:
        """A label other than the truth per row, drawn by the shares of the other labels."""
        k = len(shares)
        out = np.empty(len(self.truth), dtype=int)
        for label in range(k):
            where = np.flatnonzero(self.truth == label)
            others = np.array([other for other in range(k) if other != label])
            weights = shares[others] / shares[others].sum()
            out[where] = self.rng.choice(others, size=len(where), p=weights)
        return out

    def learned_votes(self, training: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The learned voter's label index per row (-1: abstains) and its probability: the
        smoothed share of that label among the topic's training rows, or, on a row it
        memorised, :data:`MEMORISED_PROBABILITY`."""
        k, n = len(self.labels), len(self.truth)
        counts = np.zeros((self.topic.max() + 1, k))
        for row, label in training.items():
            counts[self.topic[row], label] += 1
        votes, probabilities = np.full(n, -1), np.zeros(n)
        memorise = self.rng.random(n) < MEMORISE
        for row in range(n):
            own = training.get(row)
            if own is not None and memorise[row]:
                votes[row], probabilities[row] = own, MEMORISED_PROBABILITY
                continue
            topic_counts = counts[self.topic[row]].copy()
            if own is not None:
                topic_counts[own] -= 1
            if topic_counts.sum() > 0:
                votes[row] = int(np.argmax(topic_counts))
                probabilities[row] = (topic_counts.max() + 1) / (topic_counts.sum() + k)
        return votes, probabilities

    def voter_names(self, learned: bool) -> tuple[str, ...]:
        return tuple(f"v{index}" for index in range(len(self.frozen))) + (
            (LEARNED,) if learned else ()
        )

    def labeling_pass(self, training: dict[int, int]) -> list[dict]:
        """Every row's output record, as the labeler writes it."""
        k = len(self.labels)
        n = len(self.truth)
        qualities = [np.full(n, quality) for quality in self.setting.voters]
        votes = list(self.frozen)
        names = list(self.voter_names(bool(training)))
        if training:
            learned, probabilities = self.learned_votes(training)
            votes.append(learned)
            qualities.append(np.clip(probabilities, 1.0 / k + 1e-6, 0.99))
        log_posterior = np.zeros((n, k))
        for vote, quality in zip(votes, qualities, strict=True):
            voted = np.flatnonzero(vote >= 0)
            hit = np.log(quality[voted])
            miss = np.log((1 - quality[voted]) / (k - 1))
            log_posterior[voted] += miss[:, None]
            log_posterior[voted, vote[voted]] += hit - miss
        posterior = np.exp(log_posterior - log_posterior.max(axis=1, keepdims=True))
        posterior /= posterior.sum(axis=1, keepdims=True)
        winner = posterior.argmax(axis=1)
        confidence = posterior.max(axis=1)
        rows = []
        for row in range(n):
            record = {"text": f"row {row}", LABEL: self.labels[winner[row]]}
            record[CONFIDENCE] = float(confidence[row])
            cast = [vote[row] for vote in votes if vote[row] >= 0]
            record[AGREEMENT] = sum(v == winner[row] for v in cast) / len(cast) if cast else 0.0
            for name, vote, quality in zip(names, votes, qualities, strict=True):
                record[voter_label_column(name)] = self.labels[vote[row]] if vote[row] >= 0 else ""
                record[voter_probability_column(name)] = (
                    float(quality[row]) if vote[row] >= 0 else 0.0
                )
            rows.append(record)
        return rows


@dataclass(frozen=True)
class Outcome:
    truth: float
    """The true accuracy of the final labels."""
    point: float
    low: float
    high: float
    verified: int
    heldout: int
    """Unmarked held-out rows the estimate rested on."""

    @property
    def covered(self) -> bool:
        return self.low <= self.truth <= self.high


def simulate(setting: Setting, seed: int) -> Outcome:
    """One run: the pilot's held-out sample, rounds to the budget (or a flat learning
    curve), then the final estimate against the truth."""
    world = World(setting, seed)
    labels, n = world.labels, setting.rows
    index = {label: position for position, label in enumerate(labels)}
    limit = int(setting.budget * n)
    pilot = world.rng.choice(n, size=min(setting.pilot, limit // 3), replace=False)
    heldout = {int(row): False for row in pilot}
    verified = {row: labels[world.truth[row]] for row in heldout}
    training: dict[int, int] = {}
    rows = world.labeling_pass(training)
    for number in itertools.count(1):
        left = limit - len(verified)
        if left <= 0:
            break
        gain_rows, held = split_round(round_rows(number, n, None, left), HELDOUT_SHARE)
        choice = choose_rows(
            rows,
            spent=set(verified),
            heldout=heldout,
            gain_rows=gain_rows,
            heldout_rows=held,
            seed=f"{seed}:round-{number}",
            text_column="text",
            voters=world.voter_names(bool(training)),
            learned=(LEARNED,) if training else (),
        )
        if choice.candidates == 0 or stop_after_choosing(
            number, choice.expected_yield, len(choice.gain), MIN_ROUND_YIELD
        ):
            break
        open_round(heldout, [record["row"] for record in choice.heldout], choice.marked)
        for record in choice.records:
            verified[record["row"]] = labels[world.truth[record["row"]]]
        training = {row: index[label] for row, label in verified.items() if row not in heldout}
        surest = replay_rows(
            rows,
            replay_exclusions(verified, heldout),
            int(REPLAY_RATIO * len(training)),
            REPLAY_MIN_CONFIDENCE,
        )
        training.update({row: index[record[LABEL]] for row, record in surest})
        rows = world.labeling_pass(training)
    evidence = gather(predicted_labels(rows), verified, verified, heldout)
    final = [verified.get(row, record[LABEL]) for row, record in enumerate(rows)]
    truth = float(np.mean([final[row] == labels[world.truth[row]] for row in range(n)]))
    accuracy = estimate(evidence, labels, seed=seed).accuracy
    return Outcome(
        truth, accuracy.point, accuracy.low, accuracy.high, len(verified), len(evidence.unmarked)
    )


def coverage(setting: Setting, runs: int, first_seed: int = 0) -> list[Outcome]:
    return [simulate(setting, seed) for seed in range(first_seed, first_seed + runs)]


def summary_line(setting: Setting, outcomes: list[Outcome]) -> str:
    count = len(outcomes)
    covered = sum(outcome.covered for outcome in outcomes)
    bias = sum(outcome.point - outcome.truth for outcome in outcomes) / count
    mae = sum(abs(outcome.point - outcome.truth) for outcome in outcomes) / count
    width = sum(outcome.high - outcome.low for outcome in outcomes) / count
    truth = sum(outcome.truth for outcome in outcomes) / count
    heldout = sum(outcome.heldout for outcome in outcomes) / count
    verified = sum(outcome.verified for outcome in outcomes) / count / setting.rows
    return (
        f"| {setting.name} | {truth:.3f} | {verified:.1%} | {covered / count:.1%} | "
        f"{bias * 100:+.2f} | {mae * 100:.2f} | {width * 100:.1f} | {heldout:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="simulated runs per setting")
    parser.add_argument("--setting", action="append", default=[], help="only these settings")
    args = parser.parse_args()
    chosen = [s for s in SETTINGS if not args.setting or s.name in args.setting]
    if not chosen:
        parser.error(f"no such setting; choose from {', '.join(s.name for s in SETTINGS)}")
    print(f"{args.runs} simulated runs per setting, 2,000 rows, 30% verified; {platform.machine()}")
    print()
    print(
        "| setting | true accuracy | interval holds the truth | bias (points) | MAE (points) "
        "| interval width (points) | unmarked held-out rows |"
    )
    print("|---|---|---|---|---|---|---|")
    for setting in chosen:
        started = time.monotonic()
        outcomes = coverage(setting, args.runs)
        print(summary_line(setting, outcomes), flush=True)
        print(f"{setting.name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
