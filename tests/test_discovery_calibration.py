"""Label maps settled on the pilot: opaque labels mapped or refused, inverted names flipped."""

from __future__ import annotations

import pytest

from agent.discovery.calibration import binomial_tail, calibrate_label_maps
from agent.state import Candidate

TASK = ("non-toxic", "toxic")
NAMED = {"non-toxic": "non-toxic", "toxic": "toxic"}
PROVISIONAL = {"LABEL_0": "non-toxic", "LABEL_1": "toxic"}
# 40 pilot rows, 16 of them toxic.
TRUTH = ["toxic" if row % 5 in (1, 3) else "non-toxic" for row in range(40)]


def flip(label: str) -> str:
    return "toxic" if label == "non-toxic" else "non-toxic"


def with_errors(rows: list[int]) -> list[str]:
    return [flip(label) if row in rows else label for row, label in enumerate(TRUTH)]


def candidate(name: str, labels: dict[str, str], model_labels: tuple[str, ...] = ()) -> Candidate:
    return Candidate(
        name=name,
        ref=f"org/{name}",
        origin="hub",
        path="",
        revision="0" * 40,
        model_labels=model_labels or tuple(labels),
        label_map=labels,
    )


def named_voters() -> tuple[list[Candidate], dict[str, list[str]]]:
    voters = [candidate(name, NAMED) for name in ("a", "b", "c")]
    votes = {"a": with_errors([0, 7]), "b": with_errors([3, 11, 20]), "c": with_errors([30])}
    return voters, votes


def test_opaque_labels_take_the_assignment_that_agrees_with_the_named_voters():
    voters, votes = named_voters()
    opaque = candidate("opaque", PROVISIONAL)
    # Its class 0 means toxic, so under the provisional guess it votes the opposite.
    votes["opaque"] = [flip(label) for label in with_errors([5, 9])]

    result = calibrate_label_maps([*voters, opaque], votes, TASK)

    settled = next(c for c in result.candidates if c.name == "opaque")
    assert settled.label_map == {"LABEL_0": "toxic", "LABEL_1": "non-toxic"}
    assert result.votes["opaque"] == with_errors([5, 9])
    assert "opaque labels were mapped by pilot agreement" in result.notes["opaque"]
    assert not result.rejections


@pytest.mark.parametrize(
    "votes",
    [
        ["non-toxic"] * 40,  # always the majority label: 60% "agreement", no information
        ["toxic" if row % 2 else "non-toxic" for row in range(40)],  # unrelated to the text
    ],
    ids=["constant", "unrelated"],
)
def test_opaque_model_no_better_than_chance_is_refused(votes):
    voters, pilot = named_voters()
    pilot["opaque"] = votes

    result = calibrate_label_maps([*voters, candidate("opaque", PROVISIONAL)], pilot, TASK)

    [rejection] = result.rejections
    assert rejection.ref == "org/opaque"
    assert "opaque" in rejection.reason and "not clearly better than chance" in rejection.reason
    assert "opaque" not in result.votes
    assert [c.name for c in result.candidates] == ["a", "b", "c"]


def test_opaque_model_on_too_small_a_pilot_is_refused():
    short = TRUTH[:12]
    votes = {name: list(short) for name in ("a", "b")} | {"opaque": [flip(x) for x in short]}
    voters = [candidate("a", NAMED), candidate("b", NAMED), candidate("opaque", PROVISIONAL)]

    result = calibrate_label_maps(voters, votes, TASK)

    assert [r.ref for r in result.rejections] == ["org/opaque"]


def test_opaque_model_without_named_voters_is_refused():
    result = calibrate_label_maps([candidate("opaque", PROVISIONAL)], {"opaque": list(TRUTH)}, TASK)

    assert "no voter with named labels" in result.rejections[0].reason


def test_three_opaque_labels_are_matched_to_three_task_labels():
    task = ("negative", "neutral", "positive")
    truth = [task[row % 3] for row in range(45)]
    provisional = {"LABEL_0": "negative", "LABEL_1": "neutral", "LABEL_2": "positive"}
    # The model's LABEL_0 is positive, LABEL_1 negative, LABEL_2 neutral.
    meaning = {"positive": "LABEL_0", "negative": "LABEL_1", "neutral": "LABEL_2"}
    as_voted = [provisional[meaning[label]] for label in truth]
    named = {label: label for label in task}
    voters = [candidate("a", named), candidate("b", named), candidate("opaque", provisional)]

    result = calibrate_label_maps(voters, {"a": truth, "b": truth, "opaque": as_voted}, task)

    settled = next(c for c in result.candidates if c.name == "opaque")
    assert settled.label_map == {"LABEL_0": "positive", "LABEL_1": "negative", "LABEL_2": "neutral"}


def test_inverted_named_voter_is_flipped_and_its_votes_follow():
    voters, votes = named_voters()
    votes["inverted"] = [flip(label) for label in with_errors([14])]

    result = calibrate_label_maps([*voters, candidate("inverted", NAMED)], votes, TASK)

    flipped = next(c for c in result.candidates if c.name == "inverted")
    assert flipped.label_map == {"non-toxic": "toxic", "toxic": "non-toxic"}
    assert result.votes["inverted"] == with_errors([14])
    assert "its label names are inverted" in result.notes["inverted"]
    assert len(result.warnings) == 1 and "org/inverted" in result.warnings[0]
    assert {c.name: c.label_map for c in result.candidates if c.name != "inverted"} == {
        name: NAMED for name in "abc"
    }


def test_two_voters_contradicting_each_other_are_left_alone():
    votes = {"a": with_errors([0]), "b": [flip(label) for label in TRUTH]}

    result = calibrate_label_maps([candidate("a", NAMED), candidate("b", NAMED)], votes, TASK)

    assert [c.label_map for c in result.candidates] == [NAMED, NAMED]
    assert not result.warnings and not result.rejections


def test_merely_weak_named_voter_is_not_flipped():
    voters, votes = named_voters()
    votes["weak"] = ["toxic" if row % 2 else "non-toxic" for row in range(40)]

    result = calibrate_label_maps([*voters, candidate("weak", NAMED)], votes, TASK)

    assert next(c for c in result.candidates if c.name == "weak").label_map == NAMED
    assert not result.warnings


def test_many_to_one_maps_are_references_but_never_flipped():
    three_way = {"hate": "toxic", "offensive": "toxic", "neither": "non-toxic"}
    voters, votes = named_voters()
    votes["three_way"] = [flip(label) for label in TRUTH]

    result = calibrate_label_maps([*voters, candidate("three_way", three_way)], votes, TASK)

    assert next(c for c in result.candidates if c.name == "three_way").label_map == three_way


def test_only_names_from_a_models_config_are_ever_flipped():
    voters, votes = named_voters()
    embedding = candidate("embedding", NAMED).model_copy(update={"kind": "embedding"})
    votes["embedding"] = [flip(label) for label in TRUTH]

    result = calibrate_label_maps([*voters, embedding], votes, TASK)

    assert next(c for c in result.candidates if c.name == "embedding").label_map == NAMED


def test_binomial_tail():
    assert binomial_tail(10, 10, 0.5) == pytest.approx(0.5**10)
    assert binomial_tail(0, 10, 0.5) == 1.0
    assert binomial_tail(5, 10, 0.5) == pytest.approx(638 / 1024)


def test_verified_rows_settle_opaque_labels_without_any_named_voter():
    opaque = candidate("opaque", PROVISIONAL)
    votes = {"opaque": [flip(label) for label in with_errors([5, 9])]}

    result = calibrate_label_maps([opaque], votes, TASK, verified=TRUTH)

    assert result.candidates[0].label_map == {"LABEL_0": "toxic", "LABEL_1": "non-toxic"}
    assert "agreed with the verified pilot rows on 95% of 40 rows" in result.notes["opaque"]


def test_with_verified_rows_one_other_voter_is_enough_to_flip_inverted_names():
    votes = {"a": with_errors([0]), "inverted": [flip(label) for label in with_errors([14])]}
    voters = [candidate("a", NAMED), candidate("inverted", NAMED)]

    alone = calibrate_label_maps(voters, votes, TASK)
    verified = calibrate_label_maps(voters, votes, TASK, verified=TRUTH)

    assert [c.label_map for c in alone.candidates] == [NAMED, NAMED]  # who is wrong? unknown
    assert verified.candidates[1].label_map == {"non-toxic": "toxic", "toxic": "non-toxic"}
    assert "agreed with the verified pilot rows on 2% of 40" in verified.notes["inverted"]


def test_too_few_verified_rows_leave_the_decision_to_the_named_voters():
    few = [label if row < 10 else None for row, label in enumerate(TRUTH)]

    result = calibrate_label_maps(
        [candidate("opaque", PROVISIONAL)], {"opaque": list(TRUTH)}, TASK, verified=few
    )

    assert "no voter with named labels" in result.rejections[0].reason
