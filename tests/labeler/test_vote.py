"""The vote: majority, ties, weights, agreement and confidence."""

from __future__ import annotations

import numpy as np
import pytest

from templates.labeler.pkg.vote import vote


def probs(*rows):
    return np.array(rows, dtype=float)


def test_majority_wins_and_reports_agreement_and_confidence():
    result = vote(
        [probs([0.9, 0.1]), probs([0.6, 0.4]), probs([0.3, 0.7])],
        [1.0, 1.0, 1.0],
    )
    assert result.label_index.tolist() == [0]
    assert result.agreement.tolist() == [pytest.approx(2 / 3, abs=1e-6)]
    assert result.confidence.tolist() == [pytest.approx((0.9 + 0.6 + 0.3) / 3)]
    assert result.voter_label_index[:, 0].tolist() == [0, 0, 1]
    assert result.voter_confidence[:, 0].tolist() == pytest.approx([0.9, 0.6, 0.7])


def test_unanimous_rows_have_agreement_exactly_one():
    result = vote([probs([0.2, 0.8])] * 3, [1.0, 1.0, 1.0])
    assert result.agreement.tolist() == [1.0]


def test_tie_goes_to_larger_summed_probability():
    # Two voters split; the one that is surer of its label wins the tie.
    result = vote([probs([0.55, 0.45]), probs([0.1, 0.9])], [1.0, 1.0])
    assert result.label_index.tolist() == [1]
    assert result.agreement.tolist() == [0.5]


def test_exact_tie_goes_to_the_earlier_label():
    result = vote([probs([0.6, 0.4]), probs([0.4, 0.6])], [1.0, 1.0])
    assert result.label_index.tolist() == [0]


def test_weights_can_outvote_a_majority():
    result = vote(
        [probs([0.9, 0.1]), probs([0.8, 0.2]), probs([0.3, 0.7])],
        [1.0, 1.0, 3.0],
    )
    assert result.label_index.tolist() == [1]
    assert result.agreement.tolist() == [0.6]


def test_three_labels_plurality_over_many_rows():
    a = probs([0.7, 0.2, 0.1], [0.1, 0.1, 0.8])
    b = probs([0.2, 0.7, 0.1], [0.1, 0.2, 0.7])
    c = probs([0.1, 0.8, 0.1], [0.6, 0.3, 0.1])
    result = vote([a, b, c], [1.0, 1.0, 1.0])
    assert result.label_index.tolist() == [1, 2]


def test_refuses_non_positive_weights():
    with pytest.raises(ValueError):
        vote([probs([0.5, 0.5])], [0.0])


def test_a_voter_with_no_opinion_abstains():
    uniform = probs([0.5, 0.5])
    result = vote([probs([0.2, 0.8]), probs([0.3, 0.7]), uniform], [1.0, 1.0, 1.0])
    assert result.label_index.tolist() == [1]
    assert result.agreement.tolist() == [1.0]
    assert result.confidence.tolist() == [pytest.approx(0.75)]
    assert result.abstained[:, 0].tolist() == [False, False, True]


def test_when_every_voter_abstains_agreement_is_zero():
    result = vote([probs([0.5, 0.5]), probs([0.5, 0.5])], [1.0, 1.0])
    assert result.agreement.tolist() == [0.0]
    assert result.label_index.tolist() == [0]
