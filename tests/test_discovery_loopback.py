"""Discovery end to end against the loopback Hub: the issue's "done when".

``autoannotator-agent "label tweets for toxicity"`` searches the loopback Hub through the real
``huggingface_hub`` client, refuses every trap of the catalog with its reason, maps the opaque
model's labels and flips the inverted model's by pilot agreement, pins each voter's commit, and a
second run with the Hub stopped (the same command, then with ``--model``) reproduces the package.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.support.hub_fixtures import (
    GOOD_TOXICITY_MODELS,
    TOXIC_WORDS,
    TOXICITY_LABELS,
    TinyModelCache,
    tweet_examples,
    with_labels,
)
from tests.support.hub_server import LoopbackHub, read_files
from tests.support.llm_scripts import (
    judge_items,
    keyword_label,
    keyword_verdicts,
    schema_name,
    toxicity_plan,
)
from tests.support.openai_server import RecordedRequest, ScriptedOpenAI

pytestmark = pytest.mark.slow

PACKAGE = "toxicity-labeler"
REFUSED = {
    "erin/toxic-gated": "gated",
    "carol/toxic-pickle-only": "no safetensors weights",
    "dave/toxic-remote-code": "needs remote code",
    "frank/toxic-german": "do not include en",
    "kate/offensive-multilabel": "its labels cover only",
    "liam/offensive-noncommercial": "licence cc-by-nc-4.0 is not on the allow-list",
}


def label(args: list[str], capsys) -> str:
    """Run the CLI; its log with the terminal's line wrapping undone."""
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    return " ".join(err.split())


def lock_of(out: Path) -> dict:
    return json.loads((out / PACKAGE / "models.lock.json").read_text())


def spec_of(out: Path) -> str:
    return (out / PACKAGE / "toxicity_labeler" / "spec.py").read_text()


def keyword_truth(text: str) -> str:
    return keyword_label(text, TOXIC_WORDS)


def test_discovery_avoids_traps_maps_opaque_and_inverted_labels_and_reproduces_offline(
    catalog_hub: LoopbackHub, tweets_csv, tmp_path, monkeypatch, sandbox_kind, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    command = ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", sandbox_kind]
    command += ["--verifier", "none", "--voters", "4"]

    log = label(command + ["--out", "first", "--output", "first.csv"], capsys)

    lock = lock_of(tmp_path / "first")
    voters = {voter["origin"]: voter for voter in lock["voters"]}
    assert set(voters) == set(GOOD_TOXICITY_MODELS)
    for repo, voter in voters.items():
        assert voter["source"] == f"hub:{repo}"
        assert voter["revision"] == catalog_hub.models[repo].refs["main"]  # pinned
        assert set(voter["files"]) == {
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        }
    assert voters["acme/toxic-bert-tiny"]["label_map"] == {
        "non-toxic": "non-toxic",
        "toxic": "toxic",
    }
    # config.json says class 1 is "toxic"; the pilot showed it is not, so the map is flipped.
    assert voters["judy/offensive-inverted"]["label_map"] == {
        "non-toxic": "toxic",
        "toxic": "non-toxic",
    }
    assert voters["ivan/offensive-label-ids"]["label_map"] == {
        "LABEL_0": "toxic",
        "LABEL_1": "non-toxic",
    }
    assert "its label names are inverted" in log

    # The flipped and remapped votes are right: they agree with the keywords the voters learnt.
    rows = list(csv.DictReader(open(tmp_path / "first.csv", newline="", encoding="utf-8")))
    for repo in ("judy/offensive-inverted", "ivan/offensive-label-ids"):
        column = f"label_{voters[repo]['name']}"
        right = sum(row[column] == keyword_truth(row["text"]) for row in rows)
        assert right / len(rows) >= 0.8, (repo, right)
    readme = (tmp_path / "first" / PACKAGE / "README.md").read_text()
    assert "leave-one-out consensus" in readme and "--verifier none" in readme  # nothing verified
    judy_note = next(line for line in readme.splitlines() if "judy/offensive-inverted" in line)
    assert "inverted" in judy_note
    for repo, reason in REFUSED.items():
        assert any(repo in line and reason in line for line in readme.splitlines()), repo
    assert "gina/toxic-generator" not in readme  # the search asks for text classifiers only
    # Labels are read from config.json before any weights are fetched.
    fetched = {r.path for r in catalog_hub.requests if "/resolve/" in r.path}
    assert not [path for path in fetched if path.endswith(".safetensors") and "kate/" in path]
    assert any(path.startswith("/kate/offensive-multilabel/") for path in fetched)

    catalog_hub.stop()
    log = label(command + ["--out", "replayed"], capsys)

    assert "the Hub is unreachable; replaying" in log
    assert lock_of(tmp_path / "replayed") == lock
    assert spec_of(tmp_path / "replayed") == spec_of(tmp_path / "first")

    by_model = [argument for voter in lock["voters"] for argument in ("--model", voter["origin"])]
    label(command + by_model + ["--out", "named"], capsys)

    assert lock_of(tmp_path / "named") == lock
    assert spec_of(tmp_path / "named") == spec_of(tmp_path / "first")


CIVILITY = "mona/toxic-civility"
"""Published with labels no synonym places: the LLM maps them."""
CIVILITY_MAP = {"civil": "non-toxic", "attack": "toxic"}
PLAN_PROPOSAL = toxicity_plan(search_queries=["toxic", "toxicity", "offensive"])


def orchestrator(request: RecordedRequest) -> dict:
    """Plans, maps mona's labels (and no others), and judges by the keywords."""
    name = schema_name(request)
    if name == "PlanProposal":
        return PLAN_PROPOSAL
    if name == "LabelMappingProposal":
        if CIVILITY not in request.user_text:
            return {"mapping": []}  # refused: it must map every label
        pairs = CIVILITY_MAP.items()
        return {"mapping": [{"model_label": k, "task_label": v} for k, v in pairs]}
    return keyword_verdicts(request, TOXIC_WORDS)


def add_civility_model(hub: LoopbackHub, models: TinyModelCache) -> None:
    # Trained on the keywords with three targets flipped, so it is a voter of its own.
    examples = [
        (text, 1 - label if row in (1, 6, 11) else label)
        for row, (text, label) in enumerate(tweet_examples(0))
    ]
    network = models.get(TOXICITY_LABELS, seed=4, train_examples=tuple(examples))
    files = with_labels(read_files(network), {0: "civil", 1: "attack"})
    hub.add_model(CIVILITY, files, downloads=1800)


def test_pilot_rows_verified_by_the_llm_score_the_candidates_are_paid_once_and_an_llm_label_map_is_reused_by_model(  # noqa: E501
    catalog_hub: LoopbackHub,
    tiny_models: TinyModelCache,
    scripted_llm: ScriptedOpenAI,
    tweets_csv,
    tmp_path,
    monkeypatch,
    sandbox_kind,
    capsys,
):
    add_civility_model(catalog_hub, tiny_models)
    scripted_llm.respond_with(orchestrator)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
    command = ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", sandbox_kind]
    command += ["--llm-base-url", scripted_llm.url, "--yes", "--voters", "5"]
    # No verification limit: the pilot (at most a third of the limit otherwise) takes every tweet.
    command += ["--max-verified", "none"]

    log = label(command + ["--out", "first", "--output", "first.csv"], capsys)

    lock = lock_of(tmp_path / "first")
    voters = {voter["origin"]: voter for voter in lock["voters"]}
    hub_voters = {origin for origin in voters if not origin.startswith("learned:")}
    assert hub_voters == {*GOOD_TOXICITY_MODELS, CIVILITY}
    assert voters[CIVILITY]["label_map"] == CIVILITY_MAP
    readme = (tmp_path / "first" / PACKAGE / "README.md").read_text().replace("\\", "")
    assert "by accuracy against the 40 of them verified by the LLM (gpt-4o-mini)" in readme
    # The voter's line under "Why these voters" (the licences list names it first).
    why = readme.split("Why these voters", 1)[1]
    mona_note = next(line for line in why.splitlines() if line.startswith("- toxic_civility"))
    assert "verified pilot rows" in mona_note and "mapped by the LLM (search_models/v1" in mona_note
    # Every tweet is a pilot row: each was judged once, without the votes, in the pilot, and
    # the run kept those verdicts, so the full run asked nothing new.
    judged = [r for r in scripted_llm.completions if schema_name(r) == "Verdicts"]
    texts = [item["text"] for request in judged for item in judge_items(request)]
    assert len(texts) == len(set(texts)) == 40
    assert all(isinstance(item["text"], str) for request in judged for item in judge_items(request))
    rows = list(csv.DictReader(open(tmp_path / "first.csv", newline="", encoding="utf-8")))
    assert {row["source"] for row in rows} == {"llm"}
    assert all(row["label"] == keyword_truth(row["text"]) for row in rows)

    # Named again with the Hub down and an LLM that must not be asked to map labels again.
    catalog_hub.stop()
    first_requests = len(scripted_llm.completions)
    # The learned voters are added by the run itself, not named.
    named = [voter["origin"] for voter in lock["voters"] if voter["origin"] in hub_voters]
    by_model = [argument for origin in named for argument in ("--model", origin)]

    log = label(command + by_model + ["--out", "named"], capsys)

    # same task, same data: the plan comes from the LLM cache, the label map from its record
    assert scripted_llm.completions[first_requests:] == []
    assert lock_of(tmp_path / "named") == lock
    assert spec_of(tmp_path / "named") == spec_of(tmp_path / "first")
    assert "as the LLM mapped them before (search_models/v1, gpt-4o-mini)" in log
