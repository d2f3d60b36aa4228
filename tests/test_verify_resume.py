"""``kill -9`` in the middle of verification, then ``--resume``: no row lost or
duplicated, and no answered LLM call made again.

The first process runs the real CLI in a subprocess. The scripted server answers
its first judge requests and holds every later one unanswered, so the kill lands
while calls are in flight: those never got an answer, and are the only ones the
resumed run may send again. Everything answered was persisted (verdicts file or
verdict cache) before the kill, and must never be sent twice.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.verification.store import read_jsonl
from tests.support.openai_server import RecordedRequest, Reply, ScriptedOpenAI
from tests.test_verify_costs import PLAN_PROPOSAL, realistic_judge
from tests.test_verify_judge import items_of

ANSWERED_BEFORE_KILL = 2
BATCH = 2


def is_judge(request: RecordedRequest) -> bool:
    return request.body["response_format"]["json_schema"]["name"] != "PlanProposal"


def wait_for(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_kill_mid_verification_then_resume_loses_no_row_and_repeats_no_answered_call(
    tmp_path, tweets_csv, toxic_voters, scripted_llm: ScriptedOpenAI, monkeypatch
):
    answered: list[list[str]] = []
    held = threading.Event()

    def first_process(request: RecordedRequest):
        if not is_judge(request):
            return PLAN_PROPOSAL
        if len(answered) >= ANSWERED_BEFORE_KILL:
            held.wait(60)  # never answered: the client is killed meanwhile
            return Reply(status=500)
        time.sleep(0.1)
        answered.append([item["text"] for item in items_of(request)])
        return realistic_judge(request)

    scripted_llm.respond_with(first_process)
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-real-key-000000000000"}
    output = tmp_path / "labeled.csv"
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", "none"]
    args += ["--llm-base-url", scripted_llm.url, "--out", "out", "--output", str(output)]
    args += ["--verdict-cache", str(tmp_path / "verdicts.sqlite"), "--yes"]
    args += ["--judge-batch-size", str(BATCH), "--llm-concurrency", "2"]
    for path in toxic_voters.values():
        args += ["--model", str(path)]
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", *args], cwd=tmp_path, env=env, stdout=log, stderr=log
    )
    runs = tmp_path / ".autoannotator" / "runs"
    try:
        wait_for(lambda: sum(map(is_judge, scripted_llm.completions)) >= 4, "held requests")
        verdicts = lambda: list(read_jsonl(next(runs.iterdir()) / "verdicts.jsonl"))  # noqa: E731
        wait_for(lambda: len(verdicts()) == ANSWERED_BEFORE_KILL * BATCH, "persisted verdicts")
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
        # The pilot's rows were the answered ones; the kill lands in round 1's verification.
        assert (next(runs.iterdir()) / "rounds" / "round-1.jsonl").is_file()
    finally:
        held.set()
        if process.poll() is None:
            process.kill()
        log.close()
    assert not output.exists()
    first_requests = len(scripted_llm.completions)
    in_flight = [
        [item["text"] for item in items_of(request)]
        for request in scripted_llm.completions
        if is_judge(request)
    ][ANSWERED_BEFORE_KILL:]

    scripted_llm.respond_with(realistic_judge)
    run_id = next(runs.iterdir()).name
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
    monkeypatch.chdir(tmp_path)
    assert main(["--resume", run_id]) == 0

    resumed = [
        [item["text"] for item in items_of(request)]
        for request in scripted_llm.completions[first_requests:]
    ]
    answered_texts = [text for batch in answered + resumed for text in batch]
    assert len(answered_texts) == len(set(answered_texts))  # no answered row was sent again
    assert {text for batch in in_flight for text in batch} <= set(answered_texts)

    rows, inputs = read_csv(output), read_csv(tweets_csv)
    assert [row["id"] for row in rows] == [row["id"] for row in inputs]
    verified = {row["text"] for row in rows if row["source"] == "llm"}
    assert verified == set(answered_texts)  # every answer kept, the pilot's included
    assert {row["source"] for row in rows} <= {"llm", "vote", "consensus"}  # none unresolved
    ledger = list(read_jsonl(runs / run_id / "ledger.jsonl"))
    assert len(ledger) == len(answered) + len(resumed)
    assert all(entry["outcome"] == "ok" for entry in ledger)
