"""Routers decide from the state's records, and an older checkpoint is refused in one line.

The run folder in these tests holds no verdicts file at all: a router that read one would
see nothing verified and decide otherwise.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.errors import RunStateError
from agent.graph import build_graph, route_after_plan_round, route_after_verify_round
from agent.runs import check_resumable
from agent.settings import Settings
from agent.state import (
    Candidate,
    DatasetInfo,
    FinetuneStage,
    LabelingResult,
    LearnedVoterRecord,
    RoundRecord,
    RunState,
    VerificationResult,
)
from tests.support.fakes import TOXICITY_PLAN


def voter(name: str, kind: str = "lexicon") -> Candidate:
    return Candidate(
        name=name, ref=name, origin="specialist", kind=kind, path="", revision="r",
        model_labels=("a", "b"), label_map={"a": "a", "b": "b"},
    )  # fmt: skip


def state(tmp_path, verified: int, labels: int, **values) -> RunState:
    dataset = DatasetInfo(path="d.csv", format="csv", columns=("text",), rows=500, sha256="0")
    labeling = LabelingResult(
        output_path="out.csv", rows=500, disagreements=90, seconds=1.0, disagreements_path="d"
    )
    result = VerificationResult(
        verifier="llm", verdicts_path="v", verified=verified, unresolved=0, verified_labels=labels
    )
    defaults = {
        "task": "t",
        "data_path": "d.csv",
        "dataset": dataset,
        "run_id": "run",
        "run_dir": str(tmp_path),
        "plan": TOXICITY_PLAN,
        "voters": (voter("one"), voter("two")),
        "labeling": labeling,
        "labeling_passes": 1,
        "verification": result,
    }
    return RunState(**(defaults | values))


def route(run: RunState, **settings) -> str:
    context = SimpleNamespace(settings=Settings(sandbox="none", **settings))
    return route_after_verify_round(run, SimpleNamespace(context=context))


def assessed(stop: str | None) -> RoundRecord:
    return RoundRecord(round=1, labeling_pass=1, verified=50, heldout=50, unverified=450, stop=stop)


def test_the_rounds_continue_until_the_assessment_says_stop(tmp_path):
    going = state(tmp_path, 40, 2, rounds=(assessed(None),))
    assert route_after_plan_round(going) == "verify_round"
    stopped = state(tmp_path, 40, 2, rounds=(assessed(None), assessed("budget")))
    assert route_after_plan_round(stopped) == "emit_package"


def test_the_learned_voters_learn_after_every_round_without_stages(tmp_path):
    assert route(state(tmp_path, verified=40, labels=2)) == "learn_voters"
    voters = (voter("one", "hf-sequence-classifier"), voter("two"))
    assert route(state(tmp_path, verified=40, labels=2, voters=voters)) == "learn_voters"


def test_a_finetuning_stage_needs_rows_verified_since_the_last(tmp_path):
    voters = (voter("one", "hf-sequence-classifier"), voter("two"))
    first = state(tmp_path, verified=60, labels=2, voters=voters)
    assert route(first, finetune_stages=2) == "finetune_voters"
    stage = FinetuneStage(
        stage=1, verified_rows=48, verified_in_all=60, replay_rows=0, holdout_rows=12,
        voters=(), escalated_before=90, agreement_before=0.8,
    )  # fmt: skip
    done = first.model_copy(update={"finetune": (stage,), "labeling_passes": 2})
    assert route(done, finetune_stages=2) == "learn_voters"  # nothing new since stage 1
    more = done.model_copy(
        update={"verification": done.verification.model_copy(update={"verified": 70})}
    )
    assert route(more, finetune_stages=2) == "finetune_voters"


def test_learning_needs_enough_training_rows_of_two_labels_and_new_ones(tmp_path):
    from agent.learning import learn_blocker

    run = state(tmp_path, 0, 0)
    settings = Settings(sandbox="none")
    assert learn_blocker(run, settings, training=40, labels=2) is None
    assert "too few" in learn_blocker(run, settings, training=5, labels=2)
    assert "too few" in learn_blocker(run, settings, training=40, labels=1)
    trained = LearnedVoterRecord(
        voter="tfidf", kind="tfidf", version="v1", examples=40, training_accuracy=1.0,
        cross_validated_accuracy=0.8, before_pass=2,
    )  # fmt: skip
    again = run.model_copy(update={"learned": (trained,)})
    assert "no rows were verified" in learn_blocker(again, settings, training=40, labels=2)
    assert learn_blocker(again, settings, training=41, labels=2) is None


def test_a_checkpoint_of_an_earlier_graph_is_refused_in_one_line():
    graph = build_graph().compile()
    waiting = SimpleNamespace(values={"plan": TOXICITY_PLAN}, next=("vet_models",))
    with pytest.raises(RunStateError, match="earlier version of the agent"):
        check_resumable(waiting, graph, "old-run")
    past_pilot = SimpleNamespace(values={"pilot": object()}, next=("render_labeler",))
    with pytest.raises(RunStateError, match="start it again"):
        check_resumable(past_pilot, graph, "old-run")
    current = SimpleNamespace(values={"pilot": object(), "pilot_run": object()}, next=())
    check_resumable(current, graph, "new-run")
