"""End to end: the CLI labels a CSV with three tiny voters and the scripted LLM.

The real ``ChatOpenAI`` client talks HTTP to the scripted server (planner and
judge); the rendered labeler runs in the sandbox; the LLM verifies pilot rows and then,
round by round, the rows of highest expected value, within the default ``--max-verified``
(30% of the rows); the emitted package is then run again in a fresh process and must
reproduce the agent's votes exactly.
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
from tests.support.llm_scripts import (
    judge_items,
    keyword_judge,
    keyword_label,
    schema_name,
    toxicity_plan,
)
from tests.support.openai_server import ScriptedOpenAI

pytestmark = pytest.mark.slow

PLAN = toxicity_plan(
    descriptions=("planner said: civil text", "planner said: insults, threats or slurs")
)


def test_cli_labels_every_row_verifies_a_bounded_set_and_emits_a_reproducible_package(
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

    for row in rows:
        assert row["label"] in ("toxic", "non-toxic")

    # The LLM verified each row it was asked about once, at most 30% of the rows in all (the
    # pilot's rows and the rounds'), and those rows carry its verdict; the others keep the vote.
    judged = [item["text"] for r in scripted_llm.completions[1:] for item in judge_items(r)]
    assert judged, "the LLM verifies some rows"
    assert len(judged) == len(set(judged)) <= 0.3 * len(rows)
    verified = {row["text"] for row in rows if row["source"] == "llm"}
    assert verified == set(judged)
    for row in rows:
        if row["text"] in verified:
            assert row["label"] == keyword_label(row["text"], TOXIC_WORDS)
        else:
            assert row["source"] in ("vote", "consensus")
            votes = {row[f"label_{n}"] for n in names} - {""}  # learned voters may abstain
            if len(votes) > 1:  # a disputed row nobody verified still needs review
                assert row["source"] == "vote"

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
