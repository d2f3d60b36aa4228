"""The OpenAI Batch API (``--llm-batch``): the real ``openai`` client against the loopback
server's ``/v1/files`` and ``/v1/batches``, and verification as one batch per pass.

The node runs on a hand-made run folder (as in ``test_verify_judge``): one batch carries
every judge request, its answers are validated like synchronous ones and priced at the batch
rate; a pass killed while its batch is pending resumes waiting for the same batch; an expired
batch leaves its rows for review; the spending cap refuses a batch before it is submitted;
an interrupted wait cancels the batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.context import RunContext
from agent.errors import UserInputError
from agent.llm.batch import OpenAIBatchClient, wait_for_batch
from agent.llm.client import Message, OpenAIChatModel, TokenUsage
from agent.llm.pricing import price_for
from agent.verification.batch_round import batch_record_path
from agent.verification.judge import judge_messages, verdict_schema
from agent.verification.store import read_jsonl
from tests.support.fakes import RecordingReporter
from tests.support.openai_server import Endpoint, ScriptedOpenAI
from tests.support.run_states import verify_disputed
from tests.test_verify_judge import (
    PLAN,
    items_of,
    keyword_verdicts,
    ledger,
    make_settings,
    make_state,
    tweets,
)

SCHEMA = verdict_schema(PLAN.label_names)


def no_sleep(seconds: float) -> None:
    pass


def chat_model(server: ScriptedOpenAI, **options) -> OpenAIChatModel:
    settings = {"api_key": "sk-test", "base_url": server.url, "max_retries": 0, "timeout_s": 5.0}
    return OpenAIChatModel("gpt-4o-mini", **(settings | options))


def verify_in_batch(state, settings, server: ScriptedOpenAI, sleep=no_sleep):
    """Run the node with a Batch API; the result, the verdicts by row and the reporter."""
    llm = chat_model(server)
    batch = OpenAIBatchClient(llm, poll_interval_s=0.01, sleep=sleep)
    reporter = RecordingReporter()
    context = RunContext(settings=settings, sandbox=None, reporter=reporter, llm=llm, batch=batch)
    result = verify_disputed(state, SimpleNamespace(context=context))["verification"]
    verdicts = {v["row"]: v for v in read_jsonl(Path(result.verdicts_path))}
    return result, verdicts, reporter


def batch_texts(server: ScriptedOpenAI) -> list[str]:
    return [item["text"] for request in server.batch_requests for item in items_of(request)]


@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
def test_a_batch_request_is_exactly_the_chat_request_the_synchronous_path_sends(
    scripted_llm, method
):
    scripted_llm.respond_with(keyword_verdicts)
    llm = chat_model(scripted_llm, method=method)
    records = [{"row": 0, "text": "what a clown"}, {"row": 1, "text": "nice day"}]
    messages = judge_messages(PLAN, records)
    llm.structured(messages, SCHEMA)
    (sent,) = scripted_llm.completions

    line = OpenAIBatchClient(llm).request("judge-0", messages, SCHEMA)

    assert line == {
        "custom_id": "judge-0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": sent.body,
    }


def test_submit_poll_and_answers_go_through_files_and_batches(scripted_llm):
    scripted_llm.respond_with(keyword_verdicts)
    scripted_llm.batch.pending_polls = 2
    llm = chat_model(scripted_llm)
    client = OpenAIBatchClient(llm, poll_interval_s=0.01, sleep=no_sleep)
    records = [{"row": 0, "text": "what a clown"}, {"row": 1, "text": "nice day"}]
    lines = [client.request("judge-0", judge_messages(PLAN, records), SCHEMA)]
    lines.append(client.request("judge-1", [Message("user", "nothing to judge")], SCHEMA))
    scripted_llm.enqueue({"labels": {"0": "toxic", "1": "non-toxic"}}, "not JSON at all")

    batch_id = client.submit(lines, {"pass": "pass-0"})
    seen = []
    status = wait_for_batch(client, batch_id, on_poll=lambda s: seen.append(s.status))
    answers = client.answers(status, SCHEMA)

    assert seen == ["in_progress", "in_progress", "completed"]
    assert scripted_llm.batch.creates == [
        {
            "input_file_id": "file-1",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "metadata": {"pass": "pass-0"},
        }
    ]
    assert scripted_llm.batch.uploaded_lines() == lines
    assert scripted_llm.completions == []  # nothing went the synchronous way
    assert answers["judge-0"].reply.value.labels == {"0": "toxic", "1": "non-toxic"}
    assert answers["judge-0"].reply.usage == TokenUsage(*scripted_llm.usage[0])
    assert answers["judge-1"].reply is None
    assert answers["judge-1"].problem.startswith("malformed answer")
    assert answers["judge-1"].usage == TokenUsage(*scripted_llm.usage[1])  # still paid for


def test_an_interrupted_wait_cancels_the_batch(scripted_llm):
    scripted_llm.batch.hold = True

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    client = OpenAIBatchClient(chat_model(scripted_llm), poll_interval_s=0.01, sleep=interrupted)
    line = client.request("judge-0", [Message("user", "hello")], SCHEMA)
    batch_id = client.submit([line], {})

    with pytest.raises(KeyboardInterrupt):
        wait_for_batch(client, batch_id)

    assert scripted_llm.batch.cancels == [batch_id]
    assert client.status(batch_id).status == "cancelled"
    assert scripted_llm.batch_requests == []  # it never ran


def test_an_endpoint_without_the_batch_api_is_named_in_one_line():
    server = ScriptedOpenAI(endpoint=Endpoint("vllm-like", batch_api=False))
    try:
        with pytest.raises(UserInputError) as raised:
            OpenAIBatchClient(chat_model(server)).check()
    finally:
        server.close()
    (line,) = str(raised.value).splitlines()
    assert "offers no Batch API" in line and "run without --llm-batch" in line
    assert server.batch.creates == [] and server.completions == []


def test_a_pass_goes_as_one_batch_priced_at_the_batch_rate(tmp_path, scripted_llm):
    scripted_llm.respond_with(keyword_verdicts)
    scripted_llm.batch.pending_polls = 3
    texts = tweets(23)
    state = make_state(tmp_path, texts)

    result, verdicts, reporter = verify_in_batch(state, make_settings(tmp_path), scripted_llm)

    assert len(scripted_llm.batch.creates) == 1
    assert len(scripted_llm.batch.uploaded_lines()) == 3  # 23 rows in requests of 10
    assert sorted(batch_texts(scripted_llm)) == sorted(texts)
    assert scripted_llm.completions == []
    assert result.verified == 23 and result.unresolved == 0
    for row, text in enumerate(texts):
        assert verdicts[row]["label"] == ("toxic" if "clown" in text else "non-toxic")
    entries = ledger(state)
    batch_price = price_for("gpt-4o-mini").batch_rate()
    assert [entry["batch"] for entry in entries] == ["batch_1"] * 3
    for entry, usage in zip(entries, scripted_llm.usage, strict=True):
        assert entry["cost_usd"] == round(batch_price.cost(TokenUsage(*usage)), 8)
        full = price_for("gpt-4o-mini").cost(TokenUsage(*usage))
        assert entry["cost_usd"] == pytest.approx(full / 2, abs=1e-8)
    saved = json.loads(batch_record_path(Path(state.run_dir), 0).read_text())
    assert saved["batch_id"] == "batch_1"
    assert sorted(r["row"] for rows in saved["requests"].values() for r in rows) == list(range(23))
    assert any("batch batch_1 submitted" in line for line in reporter.infos)


def test_a_bad_row_in_a_batch_answer_is_asked_again_alone_synchronously(tmp_path, scripted_llm):
    texts = tweets(3)
    scripted_llm.enqueue({"labels": {"0": "toxic", "1": "purple", "2": "non-toxic"}})
    scripted_llm.respond_with(keyword_verdicts)
    state = make_state(tmp_path, texts)

    result, verdicts, _ = verify_in_batch(state, make_settings(tmp_path), scripted_llm)

    (retry,) = scripted_llm.completions  # the one bad row, alone, the synchronous way
    assert [item["text"] for item in items_of(retry)] == [texts[1]]
    assert result.verified == 3 and verdicts[1]["label"] == "non-toxic"
    entries = ledger(state)
    assert [entry.get("batch") for entry in entries] == ["batch_1", None]


def test_an_expired_batch_leaves_its_rows_for_review_with_the_reason(tmp_path, scripted_llm):
    scripted_llm.respond_with(keyword_verdicts)
    scripted_llm.batch.outcome = "expired"
    state = make_state(tmp_path, tweets(12))

    result, verdicts, reporter = verify_in_batch(state, make_settings(tmp_path), scripted_llm)

    assert result.verified == 0 and result.unresolved == 12
    assert {v["source"] for v in verdicts.values()} == {"unresolved"}
    assert {v["reason"] for v in verdicts.values()} == {
        "Batch API batch batch_1 expired without answering; left for review"
    }
    assert scripted_llm.batch_requests == [] and scripted_llm.completions == []
    assert ledger(state) == []  # nothing was answered, nothing paid
    assert (Path(state.run_dir) / "review.csv").exists()


def test_a_failed_batch_names_the_apis_reason(tmp_path, scripted_llm):
    scripted_llm.batch.outcome = "failed"
    state = make_state(tmp_path, tweets(4))

    _, verdicts, _ = verify_in_batch(state, make_settings(tmp_path), scripted_llm)

    assert {v["reason"] for v in verdicts.values()} == {
        "Batch API batch batch_1 failed (invalid: the input file failed validation) without "
        "answering; left for review"
    }


def test_a_batch_over_the_spending_cap_is_refused_before_it_is_submitted(tmp_path, scripted_llm):
    scripted_llm.respond_with(keyword_verdicts)
    state = make_state(tmp_path, tweets(40))
    settings = make_settings(tmp_path, max_cost_usd=0.0001)

    result, verdicts, reporter = verify_in_batch(state, settings, scripted_llm)

    assert scripted_llm.batch.uploads == [] and scripted_llm.batch.creates == []
    assert result.unresolved == 40 and result.verified == 0
    reasons = {v["reason"] for v in verdicts.values()}
    assert reasons == {
        "spending cap: this pass's batch of 4 requests would pass --max-cost-usd $0.0001; "
        "not submitted, left for review"
    }
    assert any("4 LLM requests not sent" in line for line in reporter.warnings)


def test_a_batch_under_the_cap_is_submitted(tmp_path, scripted_llm):
    """The cap counts the batch rate: a cap between the batch and the standard cost passes."""
    scripted_llm.respond_with(keyword_verdicts)
    state = make_state(tmp_path, tweets(40))
    unlimited, _, _ = verify_in_batch(state, make_settings(tmp_path), scripted_llm)
    batch_cost = sum(entry["cost_usd"] for entry in ledger(state))

    other = make_state(tmp_path / "again", tweets(40))
    settings = make_settings(tmp_path / "again", max_cost_usd=batch_cost * 1.5, llm_cache=False)
    result, _, _ = verify_in_batch(other, settings, scripted_llm)

    assert unlimited.verified == 40 and result.verified == 40
    assert len(scripted_llm.batch.creates) == 2


def test_a_pass_interrupted_while_waiting_cancels_its_batch_and_a_rerun_submits_anew(
    tmp_path, scripted_llm
):
    scripted_llm.respond_with(keyword_verdicts)
    scripted_llm.batch.hold = True
    state = make_state(tmp_path, tweets(5))

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    settings = make_settings(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        verify_in_batch(state, settings, scripted_llm, sleep=interrupted)
    assert scripted_llm.batch.cancels == ["batch_1"]
    assert json.loads(batch_record_path(Path(state.run_dir), 0).read_text())["cancelled"]

    scripted_llm.batch.hold = False
    result, _, _ = verify_in_batch(state, settings, scripted_llm)

    assert [create["input_file_id"] for create in scripted_llm.batch.creates] == [
        "file-1",
        "file-2",
    ]
    assert result.verified == 5
