"""The rounds' services: which rows a round verifies, how big it is, and when rounds stop."""

from __future__ import annotations

from collections import Counter

from agent.rounds.schedule import (
    StopCheck,
    first_round_rows,
    round_rows,
    split_round,
    stop_after_choosing,
    stop_before_choosing,
)
from agent.rounds.selection import choose_rows, gain_score

VOTERS = ("one", "two")


def labeled(rows: int, confident: set[int] = frozenset(), label=lambda n: "a" if n % 4 else "b"):
    """Labeled rows: those in ``confident`` are sure and unanimous, the others split."""
    for number in range(rows):
        sure = number in confident
        yield {
            "text": f"row {number}",
            "label": label(number),
            "confidence": 0.99 if sure else 0.55 + (number % 7) / 100,
            "agreement": 1.0 if sure else 0.5,
            "label_one": label(number),
            "prob_one": 0.9,
            "label_two": label(number) if sure else "z",
            "prob_two": 0.6,
        }


def choose(rows, **values):
    arguments = {
        "spent": set(),
        "heldout": {},
        "gain_rows": 10,
        "heldout_rows": 4,
        "seed": "s",
        "text_column": "text",
        "voters": VOTERS,
    }
    return choose_rows(rows, **(arguments | values))


def test_the_least_certain_rows_are_chosen_for_their_gain():
    confident = set(range(0, 100, 2))
    choice = choose(labeled(100, confident))
    assert len(choice.gain) == 10
    assert all(record["row"] not in confident for record in choice.gain)
    scores = [gain_score(record) for record in choice.gain]
    assert scores == sorted(scores, reverse=True)
    assert choice.candidates == 100
    assert set(choice.gain[0]) >= {"row", "text", "vote", "votes", "probabilities"}


def test_verified_rows_and_held_out_rows_are_never_chosen_again():
    spent = set(range(1, 100, 2))
    heldout = {0: False, 2: False}
    choice = choose(labeled(100), spent=spent, heldout=heldout)
    chosen = {record["row"] for record in choice.records}
    assert not chosen & spent and not chosen & set(heldout)
    assert choice.candidates == 100 - len(spent) - len(heldout)


def test_an_uninformative_pass_picks_a_seeded_uniform_sample_not_the_first_rows():
    flat = [dict(row, confidence=0.5, agreement=1.0) for row in labeled(1000)]
    first = choose(iter(flat), gain_rows=50)
    again = choose(iter(flat), gain_rows=50)
    rows = [record["row"] for record in first.gain]
    assert rows == [record["row"] for record in again.gain]  # deterministic for a seed
    assert max(rows) > 500 and min(rows) < 500  # spread over the file
    other = choose(iter(flat), gain_rows=50, seed="other")
    assert rows != [record["row"] for record in other.gain]


def test_the_held_out_slice_is_uniform_whatever_the_label_and_apart_from_the_gain_rows():
    choice = choose(labeled(400), gain_rows=20, heldout_rows=40)
    assert len(choice.heldout) == 40
    assert not {r["row"] for r in choice.heldout} & {r["row"] for r in choice.gain}
    # Every free row is as likely to be held out, even in a slice of two: a quarter of the
    # rows are labeled "b", so a quarter of the held-out rows are (a slice split by label
    # in proportion would round one of two up to "b": half).
    rows = list(labeled(200))
    drawn = Counter(
        record["vote"]
        for seed in range(400)
        for record in choose(iter(rows), gain_rows=10, heldout_rows=2, seed=str(seed)).heldout
    )
    assert abs(drawn["b"] / 800 - 0.25) < 0.05


def test_held_out_rows_the_gain_rule_would_pick_are_marked():
    confident = set(range(0, 100, 2))
    heldout = {1: False, 2: False}  # row 1 is uncertain, row 2 sure
    choice = choose(labeled(100, confident), heldout=heldout, gain_rows=40)
    assert choice.marked == {1}


def test_the_expected_yield_is_the_votes_own_share_wrong():
    choice = choose(labeled(50), gain_rows=5)
    expected = sum(1 - record["confidence"] for record in choice.gain) / 5
    assert abs(choice.expected_yield - expected) < 1e-12


def test_rounds_double_within_the_budget():
    assert first_round_rows(2000, None) == 60
    assert first_round_rows(100, None) == 40 and first_round_rows(10**7, None) == 2000
    assert first_round_rows(2000, 30) == 30
    assert [round_rows(n, 2000, None, None) for n in (1, 2, 3)] == [60, 120, 240]
    assert round_rows(3, 2000, None, left=200) == 200
    assert round_rows(1, 2000, None, left=0) == 0
    assert split_round(100, 0.2) == (80, 20)
    assert split_round(3, 0.1) == (2, 1)  # at least one row held out
    assert split_round(100, 0.0) == (100, 0)


def check(**values) -> StopCheck:
    return StopCheck(**({"verifier": "column:gold", "estimate": 0.8, "target": 0.9,
                        "heldout_rows": 100, "left": 100, "unverified": 500} | values))  # fmt: skip


def test_the_rounds_stop_at_the_target_the_budget_or_with_no_verifier():
    assert stop_before_choosing(check()) is None
    assert stop_before_choosing(check(estimate=0.91))[0] == "target"
    assert stop_before_choosing(check(estimate=None)) is None  # nothing to measure yet
    assert stop_before_choosing(check(estimate=1.0, heldout_rows=4)) is None  # 4 rows: no proof
    assert stop_before_choosing(check(target=None, estimate=0.99)) is None
    assert stop_before_choosing(check(left=0))[0] == "budget"
    assert stop_before_choosing(check(left=None)) is None
    assert stop_before_choosing(check(unverified=0))[0] == "exhausted"
    assert stop_before_choosing(check(verifier="none"))[0] == "no-verifier"


def test_a_flat_learning_curve_stops_the_rounds_but_never_the_first():
    assert stop_after_choosing(1, 0.02, 100, 0.1) is None
    reason, note = stop_after_choosing(2, 0.02, 100, 0.1)
    assert reason == "flat" and "about 2 labels" in note
    assert stop_after_choosing(2, 0.3, 100, 0.1) is None
