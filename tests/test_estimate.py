"""The honest estimate of the final labels and the chance-level test: exact values on cases
worked by hand, intervals that cover the truth as often as they claim on simulated runs,
and binomial tails that hold for a million votes."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from agent.estimate import (
    Estimate,
    Interval,
    better_than_chance,
    describe,
    estimate_final_labels,
    majority_rate,
)

# 8 verified rows (6 "a", 2 "b"), 4 unverified, 4 held-out rows of which 3 are right:
# the final confusion is [[6 + 2, 1], [0, 2 + 1]] (held-out confusion scaled by 4 / 4).
HELDOUT = [("a", "a"), ("a", "b"), ("b", "b"), ("a", "a")]
VERIFIED = {"a": 6, "b": 2}


def test_point_estimates_match_the_hand_computed_confusion() -> None:
    estimate = estimate_final_labels(HELDOUT, VERIFIED, 4, ["a", "b"])

    assert estimate is not None
    assert estimate.accuracy.point == pytest.approx(float(Fraction(11, 12)))
    f1_a, f1_b = Fraction(16, 17), Fraction(6, 7)
    assert estimate.macro_f1.point == pytest.approx(float((f1_a + f1_b) / 2))
    assert (estimate.heldout_rows, estimate.verified_rows, estimate.unverified_rows) == (4, 8, 4)


def test_accuracy_interval_is_the_jeffreys_interval_carried_to_the_output() -> None:
    estimate = estimate_final_labels(HELDOUT, VERIFIED, 4, ["a", "b"], draws=40_000)
    # Beta(3.5, 1.5) quantiles at 2.5% and 97.5%, from scipy.stats.beta.ppf.
    low, high = 0.2837517, 0.9715291

    assert estimate is not None
    assert estimate.accuracy.low == pytest.approx((8 + 4 * low) / 12, abs=0.004)
    assert estimate.accuracy.high == pytest.approx((8 + 4 * high) / 12, abs=0.004)


def test_rows_chosen_without_a_verdict_are_judged_by_the_marked_rows() -> None:
    unmarked = [("a", "a")] * 50
    marked = [("b", "a")] * 20

    judged = estimate_final_labels(
        unmarked, {"a": 100}, 100, ["a", "b"], marked=marked, pending=100
    )
    unmarked_only = estimate_final_labels(unmarked, {"a": 100}, 100, ["a", "b"], pending=100)

    assert judged is not None and unmarked_only is not None
    # 100 verified, 100 unverified (all right, as the unmarked rows), 100 pending (all
    # wrong, as the marked rows).
    assert judged.accuracy.point == pytest.approx(2 / 3)
    assert judged.accuracy.high < 0.72
    assert judged.unverified_rows == 200
    # No marked row yet: every held-out row judges them.
    assert unmarked_only.accuracy.point == pytest.approx(1.0)


def test_macro_f1_skips_labels_without_mass_and_a_stray_prediction_counts_as_wrong() -> None:
    # Held-out scale 2 / 1: confusion a->a 2 (verified), a->"other" 2; "b" and "c" never occur.
    estimate = estimate_final_labels([("a", "other")], {"a": 2}, 2, ["a", "b", "c"])

    assert estimate is not None
    assert estimate.accuracy.point == pytest.approx(0.5)
    assert estimate.macro_f1.point == pytest.approx(2 / 3)


def test_a_label_never_predicted_right_scores_zero_in_the_mean() -> None:
    # Final confusion: a->a 1, b->a 2 (unverified "b" rows all predicted "a").
    estimate = estimate_final_labels([("b", "a")], {"a": 1}, 2, ["a", "b"])

    assert estimate is not None
    assert estimate.macro_f1.point == pytest.approx((2 * 1 / (1 + 3) + 0.0) / 2)


def test_every_point_lies_inside_its_interval() -> None:
    for heldout in (HELDOUT, [("a", "a")] * 5, [("a", "b")] * 5, [("b", "b"), ("a", "b")]):
        estimate = estimate_final_labels(heldout, VERIFIED, 40, ["a", "b"], draws=500)
        assert estimate is not None
        for interval in (estimate.accuracy, estimate.macro_f1):
            assert 0.0 <= interval.low <= interval.point <= interval.high <= 1.0


def _simulate(seed: int, shares: tuple[float, ...]) -> tuple[Estimate, float, float]:
    """5000 rows with these label shares; 2000 verified by the active selection, then 150
    held out uniformly from the other 3000 and the 2850 left unverified, predicted right
    80% of the time (an error goes to the most common label, else to the first). Returns
    the estimate and the true accuracy and macro-F1 of the final labels."""
    rng = np.random.default_rng(seed)
    k = len(shares)
    truth = rng.choice(k, size=5000, p=shares)
    wrong = np.where(truth == 0, 1, 0)
    predicted = np.where(rng.random(5000) < 0.8, truth, wrong)
    verified_by_gain = np.arange(2000)
    pool = rng.permutation(np.arange(2000, 5000))
    heldout, unverified = pool[:150], pool[150:]
    final = truth.copy()
    final[unverified] = predicted[unverified]
    names = [f"l{code}" for code in range(k)]
    verified = np.concatenate([verified_by_gain, heldout])
    estimate = estimate_final_labels(
        [(names[truth[row]], names[predicted[row]]) for row in heldout],
        {name: int((truth[verified] == code).sum()) for code, name in enumerate(names)},
        len(unverified),
        names,
        seed=seed,
    )
    assert estimate is not None
    f1s = [
        2
        * np.sum((final == code) & (truth == code))
        / (np.sum(final == code) + np.sum(truth == code))
        for code in range(k)
    ]
    return estimate, float(np.mean(final == truth)), float(np.mean(f1s))


@pytest.mark.parametrize("shares", [(0.7, 0.3), (0.6, 0.3, 0.1), (0.4, 0.25, 0.15, 0.1, 0.1)])
def test_intervals_cover_the_truth_on_simulated_runs(shares) -> None:
    runs = [_simulate(seed, shares) for seed in range(200)]

    def covered(interval: Interval, value: float) -> bool:
        return interval.low <= value <= interval.high

    accuracy_coverage = np.mean([covered(e.accuracy, acc) for e, acc, _ in runs])
    f1_coverage = np.mean([covered(e.macro_f1, f1) for e, _, f1 in runs])
    error = np.mean([abs(e.accuracy.point - acc) for e, acc, _ in runs])

    assert accuracy_coverage >= 0.90
    assert f1_coverage >= 0.85
    assert error <= 0.02
    # Honest, not merely wide: the intervals are narrower than a quarter of the scale.
    assert np.mean([e.accuracy.high - e.accuracy.low for e, _, _ in runs]) < 0.1


def test_the_same_seed_gives_the_same_estimate_and_another_seed_another_bootstrap() -> None:
    args = (HELDOUT * 10, VERIFIED, 100, ["a", "b"])

    first = estimate_final_labels(*args, seed=3)
    assert first == estimate_final_labels(*args, seed=3)
    other = estimate_final_labels(*args, seed=4)
    assert other is not None and first is not None
    assert other.accuracy.point == first.accuracy.point
    assert other != first


def test_no_heldout_rows_and_unverified_rows_give_no_estimate() -> None:
    assert estimate_final_labels([], VERIFIED, 10, ["a", "b"]) is None
    assert estimate_final_labels([], {}, 0, ["a", "b"]) is None


def test_with_every_row_verified_the_accuracy_is_exactly_one() -> None:
    estimate = estimate_final_labels([], VERIFIED, 0, ["a", "b"])

    assert estimate is not None
    assert estimate.accuracy == Interval(1.0, 1.0, 1.0)
    assert estimate.macro_f1 == Interval(1.0, 1.0, 1.0)
    assert "every one of the 8 rows verified" in describe(estimate, "human")


def test_as_dict_is_json_ready_and_rounded() -> None:
    estimate = estimate_final_labels(HELDOUT, VERIFIED, 4, ["a", "b"])

    assert estimate is not None
    record = json.loads(json.dumps(estimate.as_dict()))
    assert record["accuracy"]["point"] == 0.9167
    assert record["heldout_rows"] == 4 and record["level"] == 0.95


def test_describe_says_what_the_estimate_rests_on() -> None:
    estimate = Estimate(Interval(0.874, 0.851, 0.895), Interval(0.871, 0.846, 0.893), 112, 50, 900)

    line = describe(estimate, "column:label")
    assert line == (
        "estimated accuracy 0.874 (95% interval 0.851-0.895), macro-F1 0.871 (0.846-0.893), "
        "on 112 held-out rows"
    )
    assert describe(estimate, "llm:gpt-4o-mini") == (
        line + "; agreement with the LLM verifier, not with the truth"
    )
    assert "LLM" not in describe(estimate, "human")


def test_half_right_at_even_odds_is_not_better_than_chance() -> None:
    better, p_value = better_than_chance(25, 50, 0.5)

    assert not better
    assert p_value == pytest.approx(0.5561376, abs=1e-6)


def test_35_of_50_at_even_odds_is_better_than_chance() -> None:
    better, p_value = better_than_chance(35, 50, 0.5)

    assert better
    assert p_value == pytest.approx(0.0033002, abs=1e-6)


def test_the_binomial_tail_holds_for_large_counts() -> None:
    # Normal approximation with continuity correction: z = (100500 - 0.5 - 100000) / sqrt(50000).
    z = (100500 - 0.5 - 100000) / math.sqrt(50000)
    better, p_value = better_than_chance(100500, 200000, 0.5)

    assert better
    assert p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-2)
    assert better_than_chance(100000, 200000, 0.5)[1] == pytest.approx(0.5, abs=0.01)
    assert better_than_chance(700000, 1000000, 0.7)[1] == pytest.approx(0.5005, abs=1e-3)


def test_nothing_voted_is_not_better_than_chance() -> None:
    assert better_than_chance(0, 0, 0.7) == (False, 1.0)


def test_majority_rate_is_the_share_of_the_commonest_label() -> None:
    assert majority_rate(["a", "b", "a", "a"]) == 0.75
    assert majority_rate([]) == 0.0
