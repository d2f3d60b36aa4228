"""Which voters carry signal about the task's labels, on skewed data too.

A voter is kept when its votes on the verified pilot rows agree with the labels more often
than votes given as often but independently of the labels would (Cohen's expected agreement),
by a one-sided test; not when it beats the majority rate, which on skewed data drops a voter
that tells the labels apart (a lexicon right 60% of the time on data that is 75% one label).
"""

from __future__ import annotations

import pytest

from agent.discovery.pilot_scoring import carried_signal, chance_level
from agent.estimate import chance_agreement, cohen_kappa
from tests.support.run_states import hub_voter

TRUTH = ["negative"] * 75 + ["positive"] * 25
"""100 verified rows, 75% negative."""


def candidate(name: str):
    return hub_voter(name, {"negative": "negative", "positive": "positive"})


def lexicon_votes() -> list[str]:
    """Right on 60 of 100 rows, below the 75% majority rate, but it tells the labels apart:
    20 of the 25 positives are called positive, and 40 of the 75 negatives negative."""
    votes = ["negative"] * 40 + ["positive"] * 35 + ["positive"] * 20 + ["negative"] * 5
    assert sum(v == t for v, t in zip(votes, TRUTH, strict=True)) == 60
    return votes


def test_a_voter_below_the_majority_rate_that_carries_signal_is_kept():
    votes = {"lexicon": lexicon_votes()}
    assert chance_level([candidate("lexicon")], votes, TRUTH) == {}
    signal = carried_signal(list(zip(votes["lexicon"], TRUTH, strict=True)))
    assert signal.carried and signal.p_value < 0.05
    assert signal.expected == pytest.approx(0.55 * 0.25 + 0.45 * 0.75) and signal.kappa > 0.2


def test_a_voter_at_chance_and_one_that_always_answers_one_label_are_dropped():
    votes = {
        "coin": ["negative", "positive"] * 50,  # half and half whatever the row: 51 right
        "always_negative": ["negative"] * len(TRUTH),  # right 75%: the majority rate, no signal
    }
    dropped = chance_level([candidate(name) for name in votes], votes, TRUTH)
    assert set(dropped) == {"coin", "always_negative"}
    assert "carry no signal" in dropped["always_negative"]
    assert "right on 75 of the 100" in dropped["always_negative"]
    assert "kappa 0.00" in dropped["always_negative"]


def test_abstentions_are_not_errors():
    # Abstains on every negative it would have got wrong: right on 45 of the 65 it voted on.
    votes = [
        vote if vote == truth or truth == "positive" else ""
        for vote, truth in zip(lexicon_votes(), TRUTH, strict=True)
    ]
    assert chance_level([candidate("careful")], {"careful": votes}, TRUTH) == {}


def test_three_classes_on_skewed_data():
    truth = ["neutral"] * 60 + ["negative"] * 25 + ["positive"] * 15
    # Rarely says neutral but tells negative from positive: right on 44 of 100 (majority 60%).
    votes = ["negative"] * 30 + ["positive"] * 20 + ["neutral"] * 10
    votes += ["negative"] * 22 + ["positive"] * 3 + ["positive"] * 12 + ["negative"] * 3
    assert sum(v == t for v, t in zip(votes, truth, strict=True)) == 44
    assert chance_level([candidate("polar")], {"polar": votes}, truth) == {}


def test_chance_agreement_and_kappa():
    pairs = [("a", "a"), ("a", "b"), ("b", "b"), ("b", "b")]
    assert chance_agreement(pairs) == (2 * 1 + 2 * 3) / 16
    assert cohen_kappa(3, 4, 0.5) == 0.5
    assert cohen_kappa(0, 0, 0.5) == 0.0
