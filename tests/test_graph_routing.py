"""Routers decide from the state's records, and an older checkpoint is refused in one line.

The run folder in these tests holds no verdicts file at all: a router that read one would
see nothing verified and decide otherwise.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.errors import RunStateError
from agent.graph import build_graph, route_after_verify_disagreements
from agent.runs import check_resumable
from agent.settings import Settings
from agent.state import (
    Candidate,
    DatasetInfo,
    FinetuneStage,
    LabelingResult,
    PilotVerification,
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
    return route_after_verify_disagreements(run, SimpleNamespace(context=context))


def test_the_learned_vote_follows_from_the_verified_count_in_the_state(tmp_path):
    assert route(state(tmp_path, verified=40, labels=2)) == "learn_vote"
    assert route(state(tmp_path, verified=40, labels=1)) == "emit_package"  # one label only
    assert route(state(tmp_path, verified=5, labels=2)) == "emit_package"  # too few
    assert route(state(tmp_path, verified=40, labels=2, labeling_passes=2)) == "emit_package"


def test_heads_follow_from_the_state_for_embedding_voters(tmp_path):
    voters = (voter("one", "embedding"), voter("two"))
    assert route(state(tmp_path, verified=8, labels=2, voters=voters)) == "fit_heads"


def test_a_finetuning_stage_needs_rows_verified_since_the_last(tmp_path):
    voters = (voter("one", "hf-sequence-classifier"), voter("two"))
    first = state(tmp_path, verified=60, labels=2, voters=voters)
    assert route(first, finetune_stages=2) == "finetune_voters"
    stage = FinetuneStage(
        stage=1, verified_rows=48, verified_in_all=60, replay_rows=0, holdout_rows=12,
        voters=(), escalated_before=90, agreement_before=0.8,
    )  # fmt: skip
    done = first.model_copy(update={"finetune": (stage,), "labeling_passes": 2})
    assert route(done, finetune_stages=2) == "emit_package"  # nothing new since stage 1
    more = done.model_copy(
        update={"verification": done.verification.model_copy(update={"verified": 70})}
    )
    assert route(more, finetune_stages=2) == "finetune_voters"


def test_before_the_first_pass_the_pilots_verified_rows_count(tmp_path):
    from agent.learning import learn_blocker

    pilot = PilotVerification(
        verifier="column:gold", asked=30, verified=30, verified_labels=2, verdicts_path="p"
    )
    run = state(tmp_path, 0, 0, verification=None, labeling_passes=0, pilot_verification=pilot)
    assert learn_blocker(run, Settings(sandbox="none")) is None


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
