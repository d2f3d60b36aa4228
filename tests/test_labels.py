"""Mapping model labels onto task labels: names, synonyms, ignores and refusals."""

from __future__ import annotations

from agent.discovery.label_names import is_opaque, map_labels

TOXICITY = ("non-toxic", "toxic")
SENTIMENT3 = ("negative", "neutral", "positive")


def test_exact_names_in_any_case_or_separator():
    mapping = map_labels(["TOXIC", "non_toxic"], TOXICITY)
    assert mapping.ok
    assert mapping.mapping == {"TOXIC": "toxic", "non_toxic": "non-toxic"}


def test_synonyms_map_offensive_models_onto_toxicity():
    mapping = map_labels(["NOT_OFFENSIVE", "OFFENSIVE"], TOXICITY)
    assert mapping.mapping == {"NOT_OFFENSIVE": "non-toxic", "OFFENSIVE": "toxic"}


def test_three_class_hate_model_folds_onto_binary_task():
    mapping = map_labels(["hate", "offensive", "neither"], TOXICITY)
    assert mapping.mapping == {"hate": "toxic", "offensive": "toxic", "neither": "non-toxic"}


def test_short_sentiment_names_and_neutral_ignored_for_binary_task():
    assert map_labels(["NEG", "NEU", "POS"], SENTIMENT3).mapping == {
        "NEG": "negative",
        "NEU": "neutral",
        "POS": "positive",
    }
    binary = map_labels(["negative", "neutral", "positive"], ("negative", "positive"))
    assert binary.mapping == {"negative": "negative", "neutral": "ignore", "positive": "positive"}


def test_opaque_labels_are_refused_with_a_reason():
    mapping = map_labels(["LABEL_0", "LABEL_1"], TOXICITY)
    assert not mapping.ok
    assert "opaque" in mapping.reason
    assert is_opaque("LABEL_12") and is_opaque("3") and not is_opaque("label smoothing")


def test_unmatched_label_is_refused_naming_it():
    mapping = map_labels(["joy", "anger"], TOXICITY)
    assert not mapping.ok
    assert "'joy'" in mapping.reason


def test_model_covering_a_single_task_label_is_refused():
    mapping = map_labels(["toxic", "neutral"], ("toxic", "spam", "ham"))
    assert not mapping.ok
    assert "cover only" in mapping.reason
