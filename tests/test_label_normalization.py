"""Label normalization: an LLM's label in another form maps onto the task label, nothing else.

Unit tests of :class:`~agent.verification.label_normalization.LabelNormalizer`, then the judge
with the real ChatOpenAI client against an endpoint that answers ``Toxic`` for ``toxic``.
"""

from __future__ import annotations

import pytest

from agent.verification.label_normalization import LabelNormalizer
from tests.support.openai_server import ScriptedOpenAI
from tests.test_verify_judge import (
    keyword_verdicts,
    ledger,
    make_settings,
    make_state,
    tweets,
    verify,
)

LABELS = ("positive", "negative", "non-toxic")


@pytest.fixture
def server():
    emulated = ScriptedOpenAI()
    yield emulated
    emulated.close()


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("positive", "positive"),
        ("Positive", "positive"),
        ("  POSITIVE\n", "positive"),
        ('"positive"', "positive"),
        ("'Negative'", "negative"),
        ("non_toxic", "non-toxic"),
        ("Non Toxic", "non-toxic"),
        ("non--toxic", "non-toxic"),
        ("<think>It praises the film.</think>\npositive", "positive"),
        ("favourable", "positive"),
        ("Favourable", "positive"),
    ],
)
def test_forms_and_synonyms_of_a_label_map_onto_it(answer, label):
    normalizer = LabelNormalizer(LABELS, {"positive": ("favourable",)})
    assert normalizer.normalize(answer) == label


@pytest.mark.parametrize(
    "answer", ["pos", "positive!", "positive or negative", "toxic", "", None, 1, ["positive"]]
)
def test_anything_else_is_no_label(answer):
    assert LabelNormalizer(LABELS).normalize(answer) is None


def test_labels_that_look_alike_are_matched_exactly_only():
    normalizer = LabelNormalizer(("non-toxic", "non_toxic", "toxic"))
    assert normalizer.normalize("non-toxic") == "non-toxic"
    assert normalizer.normalize("Non Toxic") is None
    assert normalizer.normalize("TOXIC") == "toxic"


def test_a_synonym_shared_by_two_labels_names_neither():
    normalizer = LabelNormalizer(
        ("positive", "negative"), {"positive": ("mixed",), "negative": ("mixed",)}
    )
    assert normalizer.normalize("mixed") is None


def test_labels_in_another_form_are_normalized_and_counted_in_the_ledger(tmp_path, server):
    def capitalised(request):
        ids = keyword_verdicts(request)["labels"]
        forms = ("Toxic", " 'non_toxic' ", "NON TOXIC", "<think>rude?</think>toxic")
        return {"labels": {id_: forms[int(id_) % 4] for id_ in ids}}

    server.respond_with(capitalised)
    state = make_state(tmp_path, tweets(8))
    result, verdicts, _ = verify(state, make_settings(tmp_path), server)

    assert result.verified == 8 and result.unresolved == 0
    assert [verdicts[row]["label"] for row in range(4)] == [
        "toxic",
        "non-toxic",
        "non-toxic",
        "toxic",
    ]
    assert [entry["normalized"] for entry in ledger(state)] == [8]


def test_an_answer_outside_the_labels_in_any_form_stays_invalid(tmp_path, server):
    server.respond_with(lambda request: {"labels": {"0": "rude"}})
    state = make_state(tmp_path, tweets(1))
    result, verdicts, _ = verify(state, make_settings(tmp_path), server)
    assert result.unresolved == 1 and "'rude', not a task label" in verdicts[0]["reason"]
