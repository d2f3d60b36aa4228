"""The service's parts without a server or a model: the micro-batcher's queue, the request
checks and the metrics' text format (read back with prometheus_client's parser)."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from templates.labeler.pkg.batcher import MicroBatcher, Overloaded
from templates.labeler.pkg.serve_metrics import ServeMetrics
from templates.labeler.pkg.serve_requests import (
    LabelRequest,
    Limits,
    RequestError,
    answer_rows,
    parse_label_request,
)

LIMITS = Limits(max_texts=4, max_text_chars=10, max_body_bytes=10_000)


class Recorder:
    """Labels each text with its length, on whatever thread calls it, noting each batch."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> list[dict]:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.fail_on in texts:
            raise RuntimeError("voter failed")
        return [{"text": text, "length": len(text)} for text in texts]


def run_batcher(recorder: Recorder, requests: list[list[str]], **options):
    """Submit every request at once to a fresh batcher; each one's outcome and the metrics."""
    metrics = ServeMetrics()
    settings = {"max_batch_rows": 4, "max_wait": 0.05, "max_queue_rows": 100, **options}

    async def main():
        with ThreadPoolExecutor(1, thread_name_prefix="voters") as executor:
            batcher = MicroBatcher(recorder, executor, metrics=metrics, **settings)
            batcher.start()
            outcomes = await asyncio.gather(
                *(batcher.submit(texts) for texts in requests), return_exceptions=True
            )
            await batcher.stop()
            return outcomes, batcher

    outcomes, batcher = asyncio.run(main())
    return outcomes, metrics, batcher


def test_concurrent_requests_share_batches_and_each_gets_its_own_rows_in_order():
    requests = [["a", "bb"], ["ccc"], ["dddd", "eeeee", "ffffff"], ["g"]]
    recorder = Recorder()
    outcomes, metrics, batcher = run_batcher(recorder, requests)
    for texts, rows in zip(requests, outcomes, strict=True):
        assert rows == [{"text": text, "length": len(text)} for text in texts]
    # 7 rows, at most 4 a batch: the third request is spread over two batches.
    assert [len(batch) for batch in recorder.batches] == [4, 3]
    assert recorder.threads == {"voters_0"}
    assert metrics.batch_rows.count == 2 and metrics.batch_rows.sum == 7
    assert batcher.queued_rows == 0 and metrics.queue_rows.value == 0


def test_a_lone_request_waits_at_most_max_wait_then_goes_alone():
    recorder = Recorder()
    outcomes, _, _ = run_batcher(recorder, [["only"]], max_wait=0.01)
    assert outcomes == [[{"text": "only", "length": 4}]]
    assert recorder.batches == [["only"]]


def test_rows_beyond_the_queue_are_refused_at_once_with_a_retry_time():
    recorder = Recorder()
    outcomes, _, _ = run_batcher(recorder, [["a", "b", "c"], ["d", "e"]], max_queue_rows=4)
    assert len(outcomes[0]) == 3
    assert isinstance(outcomes[1], Overloaded) and outcomes[1].retry_after >= 1
    assert recorder.batches == [["a", "b", "c"]]


def test_a_failing_batch_fails_only_its_requests_and_the_batcher_goes_on():
    recorder = Recorder(fail_on="bad")
    requests = [["x", "bad"], ["y", "z", "w", "v"], ["later"]]
    outcomes, metrics, batcher = run_batcher(recorder, requests, max_batch_rows=2)
    assert isinstance(outcomes[0], RuntimeError)
    assert [row["text"] for row in outcomes[1]] == ["y", "z", "w", "v"]
    assert [row["text"] for row in outcomes[2]] == ["later"]
    assert batcher.queued_rows == 0 and metrics.queue_rows.value == 0


def body(payload) -> bytes:
    return json.dumps(payload).encode()


def refusal(payload: bytes) -> tuple[int, str]:
    with pytest.raises(RequestError) as caught:
        parse_label_request(payload, "text", LIMITS)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", (422, "invalid_json")),
        (b"\xff\xfe", (422, "invalid_json")),
        (body(["a"]), (422, "invalid_body")),
        (body({"texts": "a"}), (422, "invalid_body")),
        (body({"rows": ["a"]}), (422, "invalid_body")),
        (body({"texts": ["a"], "records": []}), (422, "invalid_body")),
        (body({"texts": ["a", 3]}), (422, "invalid_text")),
        (body({"texts": [None]}), (422, "invalid_text")),
        (body({"records": ["a"]}), (422, "invalid_record")),
        (body({"records": [{"review": "a"}]}), (422, "missing_text_column")),
        (body({"records": [{"text": ["a"]}]}), (422, "invalid_text")),
        (body({"texts": ["a"] * 5}), (413, "too_many_texts")),
        (body({"texts": ["a" * 11]}), (413, "text_too_long")),
        (body({"records": [{"text": "a" * 11}]}), (413, "text_too_long")),
    ],
)
def test_bad_bodies_are_refused_with_their_status_and_code(payload, expected):
    assert refusal(payload) == expected


def test_records_come_back_with_their_fields_renamed_as_the_batch_command_renames_them():
    parsed = parse_label_request(
        body({"records": [{"id": 7, "text": "hi", "label": "gold"}]}), "text", LIMITS
    )
    assert parsed == LabelRequest(["hi"], [{"id": 7, "text": "hi", "label": "gold"}])
    result = {"label": "b", "confidence": 0.9, "agreement": 1.0, "needs_review": False}
    result |= {"label_v": "b", "prob_v": 0.9}
    rows = answer_rows(parsed, [result], ["v"])
    assert rows == [{"id": 7, "text": "hi", "label_input": "gold", **result}]
    texts = parse_label_request(body({"texts": ["hi", ""]}), "text", LIMITS)
    assert texts == LabelRequest(["hi", ""], None)


def test_metrics_text_reads_back_with_prometheus_clients_parser():
    metrics = ServeMetrics()
    metrics.requests.inc(label_value="200")
    metrics.requests.inc(2, label_value="503")
    metrics.rows.inc(5)
    metrics.latency.observe(0.02)
    metrics.batch_rows.observe(5)
    metrics.batch_rows.observe(64)
    metrics.queue_rows.set(3)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    assert families["labeler_requests"].type == "counter"
    requests = {s.labels["status"]: s.value for s in families["labeler_requests"].samples}
    assert requests == {"200": 1.0, "503": 2.0}
    batches = {
        s.labels.get("le"): s.value
        for s in families["labeler_batch_rows"].samples
        if s.name.endswith("_bucket")
    }
    assert batches["4"] == 0 and batches["8"] == 1 and batches["64"] == 2 and batches["+Inf"] == 2
    assert families["labeler_request_duration_seconds"].type == "histogram"
    assert families["labeler_queue_rows"].samples[0].value == 3
    assert families["labeler_ready"].samples[0].value == 0
