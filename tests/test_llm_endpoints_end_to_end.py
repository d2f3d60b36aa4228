"""The CLI against endpoints that are not OpenAI: DeepSeek's refusal of ``json_schema``, a
rerun that pays for nothing, a wrong key.

The real ``ChatOpenAI`` client talks HTTP to the scripted server; three tiny voters label
``examples/tweets.csv`` in the sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.support.datasets import read_csv
from tests.support.hub_fixtures import TOXIC_WORDS
from tests.support.openai_server import JSON_OBJECT_ONLY, Endpoint, RecordedRequest, ScriptedOpenAI
from tests.test_end_to_end import PLAN

pytestmark = pytest.mark.slow


def is_planner(request: RecordedRequest) -> bool:
    return "You plan text-labeling jobs" in request.system_text


def judge(request: RecordedRequest) -> dict:
    """The planner's plan, or the judge's verdicts, whatever the structured-output method."""
    if is_planner(request):
        return PLAN
    items = json.loads(request.user_text.split("Items (JSON data):", 1)[1])
    toxic = {id_: any(word in text.lower() for word in TOXIC_WORDS) for id_, text in items.items()}
    return {"labels": {id_: "toxic" if rude else "non-toxic" for id_, rude in toxic.items()}}


def label_args(server: ScriptedOpenAI, data: Path, out: Path, voters, sandbox_kind) -> list[str]:
    args = ["label tweets for toxicity", "--data", str(data), "--out", str(out / "package")]
    args += ["--output", str(out / "labeled.csv"), "--llm-base-url", server.url]
    args += ["--sandbox", sandbox_kind, "--runs-dir", str(out / "runs"), "--yes"]
    for path in voters.values():
        args += ["--model", str(path)]
    return args


@pytest.fixture
def deepseek_like():
    server = ScriptedOpenAI(endpoint=JSON_OBJECT_ONLY)
    yield server
    server.close()


def test_a_json_object_only_endpoint_plans_verifies_and_a_rerun_sends_no_chat_request(
    tmp_path, tweets_csv, toxic_voters, deepseek_like, sandbox_kind, monkeypatch
):
    deepseek_like.respond_with(judge)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.chdir(tmp_path)

    first = tmp_path / "first"
    assert main(label_args(deepseek_like, tweets_csv, first, toxic_voters, sandbox_kind)) == 0
    manifest = json.loads((first / "package" / "toxicity-labeler" / "manifest.json").read_text())
    assert manifest["provenance"]["llm"]["structured_method"] == "json_mode"
    assert manifest["provenance"]["plan"]["planner"] == "llm:gpt-4o-mini"
    rows = read_csv(first / "labeled.csv")
    # Every row put to the LLM got its verdict (none "unresolved"); the rows the rounds did not
    # reach keep the vote.
    sources = {row["source"] for row in rows}
    assert "llm" in sources and sources <= {"consensus", "vote", "llm"}
    (run_dir,) = (first / "runs").iterdir()
    ledger = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines()]
    assert ledger and {entry["method"] for entry in ledger} == {"json_mode"}
    planner_requests = [r for r in deepseek_like.completions if is_planner(r)]
    assert len(deepseek_like.refused) == 2 and len(planner_requests) == 3  # stepped down once
    chat_requests = len(deepseek_like.completions)

    second = tmp_path / "second"
    assert main(label_args(deepseek_like, tweets_csv, second, toxic_voters, sandbox_kind)) == 0
    assert len(deepseek_like.completions) == chat_requests  # the rerun asked nothing
    assert read_csv(second / "labeled.csv") == rows
    (rerun_dir,) = (second / "runs").iterdir()
    assert not (rerun_dir / "ledger.jsonl").exists() or not (rerun_dir / "ledger.jsonl").read_text()


def test_a_wrong_key_exits_2_before_anything_is_labeled(tmp_path, tweets_csv, capsys, monkeypatch):
    server = ScriptedOpenAI(endpoint=Endpoint("keyed", api_key="sk-right"))
    try:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        args = ["label tweets", "--data", str(tweets_csv), "--llm-base-url", server.url]
        args += ["--runs-dir", str(tmp_path / "runs"), "--sandbox", "none"]
        assert main(args) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: the LLM endpoint") and "refused the API key" in line
        assert server.completions == [] and not (tmp_path / "runs").exists()
    finally:
        server.close()
