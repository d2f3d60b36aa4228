"""``--llm-batch`` through the CLI: a run end to end, and a run killed (SIGKILL) while its
first round's batch is pending, then resumed: one batch per round, each row paid for once.

The real CLI labels ``examples/tweets.csv`` with three tiny voters; the pilot's sample is
verified synchronously, each round of verification through the loopback server's Batch API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from agent.cli import main
from agent.llm.client import TokenUsage
from agent.llm.pricing import price_for
from agent.verification.store import read_jsonl
from tests.support.openai_server import Endpoint, RecordedRequest, ScriptedOpenAI
from tests.test_llm_endpoints_end_to_end import judge, label_args, read_csv
from tests.test_verify_judge import items_of
from tests.test_verify_resume import wait_for

pytestmark = pytest.mark.slow
KEY = "sk-test-not-a-real-key-000000000000"


def batch_args(server, data, out, voters) -> list[str]:
    args = label_args(server, data, out, voters, "none") + ["--llm-batch", "--pilot-verify", "8"]
    # rounds of 4 rows within 16 verified (the pilot takes a third): several rounds, so several
    # batches
    args += ["--round-rows", "4", "--max-verified", "16"]
    return args + ["--judge-batch-size", "4", "--verdict-cache", str(out / "verdicts.sqlite")]


def round_texts(run_dir) -> list[list[str]]:
    """The texts of each round's rows, round by round."""
    paths = sorted((run_dir / "rounds").glob("round-*.jsonl"), key=lambda p: int(p.stem[6:]))
    return [[record["text"] for record in read_jsonl(path)] for path in paths]


def assert_each_verified_row_paid_once(rows, in_batch, in_pilot, rounds) -> None:
    """Each round's rows went in a batch of their own, every row to the LLM once (the pilot's
    synchronously), and every row it judged is labeled by it: none left unresolved."""
    assert len(in_batch) == len(set(in_batch)) and not set(in_batch) & set(in_pilot)
    assert sorted(in_batch) == sorted(text for texts in rounds for text in texts)
    verified = {row["text"] for row in rows if row["source"] == "llm"}
    assert verified == set(in_batch) | set(in_pilot)
    assert {row["source"] for row in rows} <= {"llm", "vote", "consensus"}


def sent_texts(requests) -> list[str]:
    return [item["text"] for request in requests for item in items_of(request)]


def judged_sync(server: ScriptedOpenAI):
    return [r for r in server.completions if "You plan text-labeling jobs" not in r.system_text]


def test_a_batch_run_verifies_each_round_in_one_batch_at_the_batch_rate(
    tmp_path, tweets_csv, toxic_voters, scripted_llm, monkeypatch
):
    scripted_llm.respond_with(judge)
    scripted_llm.batch.pending_polls = 2
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("AUTOANNOTATOR_LLM_BATCH_POLL_S", "0.01")
    monkeypatch.chdir(tmp_path)

    assert main(batch_args(scripted_llm, tweets_csv, tmp_path, toxic_voters)) == 0

    rows = read_csv(tmp_path / "labeled.csv")
    (run_dir,) = (tmp_path / "runs").iterdir()
    rounds = round_texts(run_dir)
    in_batch = sent_texts(scripted_llm.batch_requests)
    in_pilot = sent_texts(judged_sync(scripted_llm))
    assert len(rounds) >= 2 and len(scripted_llm.batch.creates) == len(rounds)
    assert in_batch and in_pilot
    assert_each_verified_row_paid_once(rows, in_batch, in_pilot, rounds)
    assert sorted(path.name for path in (run_dir / "batches").iterdir()) == sorted(
        f"pass-{number}.json" for number in range(1, len(rounds) + 1)
    )
    ledger = list(read_jsonl(run_dir / "ledger.jsonl"))
    batch_entries = [entry for entry in ledger if entry.get("batch")]
    assert len(batch_entries) == len(scripted_llm.batch_requests)
    assert {entry["batch"] for entry in batch_entries} == {
        f"batch_{number}" for number in range(1, len(rounds) + 1)
    }
    price = price_for("gpt-4o-mini")
    for entry in batch_entries:
        standard = price.cost(TokenUsage(entry["prompt_tokens"], entry["completion_tokens"]))
        assert entry["cost_usd"] == pytest.approx(standard / 2, abs=1e-8)
    estimate = json.loads((run_dir / "cost_estimate.json").read_text())
    assert estimate["batch"] is True


def test_killed_while_the_batch_is_pending_then_resumed_pays_for_each_row_once(
    tmp_path, tweets_csv, toxic_voters, scripted_llm, monkeypatch
):
    scripted_llm.respond_with(judge)
    scripted_llm.batch.hold = True
    env = {**os.environ, "OPENAI_API_KEY": KEY, "AUTOANNOTATOR_LLM_BATCH_POLL_S": "0.05"}
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent",
            *batch_args(scripted_llm, tweets_csv, tmp_path, toxic_voters),
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=log,
    )
    runs = tmp_path / "runs"
    try:
        saved = lambda: runs.exists() and any(runs.glob("*/batches/pass-*.json"))  # noqa: E731
        wait_for(saved, "the saved batch record")
        wait_for(lambda: scripted_llm.batch.polls.get("batch_1", 0) >= 2, "polls")
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    assert scripted_llm.batch_requests == [] and scripted_llm.batch.cancels == []
    assert len(scripted_llm.batch.creates) == 1  # the first round's, killed while pending
    assert not (tmp_path / "labeled.csv").exists()
    first_round = sent_texts(
        RecordedRequest(line["url"], {}, line["body"])
        for line in scripted_llm.batch.uploaded_lines()
    )

    scripted_llm.batch.hold = False
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    (run_id,) = [path.name for path in runs.iterdir()]
    assert main(["--resume", run_id, "--runs-dir", str(runs)]) == 0

    # The resumed run waited for the first round's batch (no second one for it), then gave
    # each later round a batch of its own.
    rounds = round_texts(runs / run_id)
    assert len(rounds) >= 2 and len(scripted_llm.batch.creates) == len(rounds)
    assert sorted(first_round) == sorted(rounds[0])
    uploaded = sent_texts(
        RecordedRequest(line["url"], {}, line["body"])
        for line in scripted_llm.batch.uploaded_lines()
    )
    assert len(uploaded) == len(set(uploaded))  # each row in the uploaded files once
    in_batch = sent_texts(scripted_llm.batch_requests)
    assert in_batch and sorted(in_batch) == sorted(uploaded)
    rows = read_csv(tmp_path / "labeled.csv")
    in_pilot = sent_texts(judged_sync(scripted_llm))
    assert_each_verified_row_paid_once(rows, in_batch, in_pilot, rounds)
    ledger = list(read_jsonl(runs / run_id / "ledger.jsonl"))
    assert len([entry for entry in ledger if entry.get("batch")]) == len(
        scripted_llm.batch_requests
    )


def test_llm_batch_with_an_endpoint_without_the_batch_api_exits_2_before_anything_is_sent(
    tmp_path, tweets_csv, capsys, monkeypatch
):
    server = ScriptedOpenAI(endpoint=Endpoint("vllm-like", batch_api=False))
    try:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        args = ["label tweets", "--data", str(tweets_csv), "--llm-base-url", server.url]
        args += ["--runs-dir", str(tmp_path / "runs"), "--sandbox", "none", "--llm-batch"]
        assert main(args) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: --llm-batch:") and "offers no Batch API" in line
        assert server.completions == [] and not (tmp_path / "runs").exists()
    finally:
        server.close()
