"""The quality benchmark's arithmetic: the labeler's review rule, then verification."""

from __future__ import annotations

from benchmarks.quality import curve, frontier, point

ROWS = [
    {"label": "positive", "gold": "positive", "agreement": "1.0", "confidence": "0.9"},
    {"label": "positive", "gold": "negative", "agreement": "1.0", "confidence": "0.6"},
    {"label": "negative", "gold": "negative", "agreement": "0.75", "confidence": "0.8"},
    {"label": "negative", "gold": "positive", "agreement": "0.5", "confidence": "0.55"},
]


def test_a_point_escalates_by_agreement_or_confidence_and_verifies_what_it_escalates():
    assert point(ROWS, 1.0, 0.0) == {
        "min_agreement": 1.0, "min_confidence": 0.0, "escalated": 0.5, "accuracy": 0.75,
    }  # fmt: skip
    assert point(ROWS, 0.75, 0.0)["escalated"] == 0.25
    assert point(ROWS, 0.75, 0.65) == {
        "min_agreement": 0.75, "min_confidence": 0.65, "escalated": 0.5, "accuracy": 1.0,
    }  # fmt: skip
    assert point(ROWS, 0.5, 0.0) == {
        "min_agreement": 0.5, "min_confidence": 0.0, "escalated": 0.0, "accuracy": 0.5,
    }  # fmt: skip


def test_the_frontier_keeps_only_points_nothing_beats():
    best = frontier(curve(ROWS))
    assert [(p["escalated"], p["accuracy"]) for p in best] == [(0.0, 0.5), (0.25, 0.75), (0.5, 1.0)]
