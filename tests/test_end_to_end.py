"""End to end: the CLI labels a CSV with three tiny voters and the scripted LLM.

The real ``ChatOpenAI`` client talks HTTP to the scripted server (planner and
judge); the rendered labeler runs in the sandbox; the emitted package is then
run again in a fresh process and must reproduce the agent's votes exactly.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import black
import pytest

from agent.cli import main
from agent.packaging.lint import black_mode
from tests.support.datasets import read_csv
from tests.support.hub_fixtures import TOXIC_WORDS
from tests.support.llm_scripts import judge_items, keyword_judge, schema_name, toxicity_plan
from tests.support.openai_server import ScriptedOpenAI

pytestmark = pytest.mark.slow

PLAN = toxicity_plan(
    descriptions=("planner said: civil text", "planner said: insults, threats or slurs")
)


def test_cli_labels_verifies_only_disagreements_and_emits_a_reproducible_package(
    tmp_path, tweets_csv, toxic_voters, scripted_llm: ScriptedOpenAI, sandbox_kind, monkeypatch
):
    scripted_llm.respond_with(keyword_judge(PLAN, TOXIC_WORDS))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
    monkeypatch.chdir(tmp_path)
    out, output = tmp_path / "generated", tmp_path / "labeled.csv"
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--out", str(out)]
    args += ["--output", str(output), "--llm-base-url", scripted_llm.url, "--sandbox", sandbox_kind]
    for path in toxic_voters.values():
        args += ["--model", str(path)]

    assert main(args + ["--yes"]) == 0

    package = out / "toxicity-labeler"
    manifest = json.loads((package / "manifest.json").read_text())
    plan = manifest["provenance"]["plan"]
    assert plan["planner"] == "llm:gpt-4o-mini"
    assert [label["description"] for label in plan["labels"]] == [
        label["description"] for label in PLAN["labels"]
    ]
    assert schema_name(scripted_llm.completions[0]) == "PlanProposal"

    for source in package.rglob("*.py"):
        text = source.read_text()
        ast.parse(text)
        assert black.format_str(text, mode=black_mode()) == text, source

    inputs = read_csv(tweets_csv)
    rows = read_csv(output)
    voters = manifest["package"]["voters"]
    names = [voter["name"] for voter in voters]
    assert list(rows[0]) == ["id", "text", "label", "source", "confidence", "agreement"] + [
        f"{kind}_{name}" for name in names for kind in ("label", "prob")
    ]
    assert [row["id"] for row in rows] == [row["id"] for row in inputs]

    disputed = {row["text"] for row in rows if len({row[f"label_{n}"] for n in names}) > 1}
    judged = [item["text"] for r in scripted_llm.completions[1:] for item in judge_items(r)]
    assert disputed, "the tiny voters should disagree on some tweets"
    assert set(judged) == disputed and len(judged) == len(disputed)
    for row in rows:
        assert row["source"] == ("llm" if row["text"] in disputed else "consensus")
        assert row["label"] in ("toxic", "non-toxic")

    relabeled = tmp_path / "relabeled.csv"
    env = {**os.environ, "PYTHONPATH": str(package)}
    env.pop("OPENAI_API_KEY")
    subprocess.run(
        [sys.executable, "-m", "toxicity_labeler", str(tweets_csv), "--output", str(relabeled)],
        check=True,
        env=env,
        cwd=tmp_path,
        capture_output=True,
    )
    again = read_csv(relabeled)
    for first, second in zip(rows, again, strict=True):
        assert [first[f"label_{n}"] for n in names] == [second[f"label_{n}"] for n in names]
        assert [first[f"prob_{n}"] for n in names] == [second[f"prob_{n}"] for n in names]
