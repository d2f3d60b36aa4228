"""The service's limits, for real: 413 and 422 with clear JSON errors, 503 with Retry-After when
its queue is full, a graceful stop on SIGTERM that answers every accepted request, and
one-line refusals of bad options and of voters that cannot load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.packages import bundle_labeler
from tests.support.serving import ServedLabeler, get, metrics, post_json, request, sample

pytestmark = pytest.mark.slow

MODULE = "limits_service"
VOTERS = (
    ("plain", {"non-toxic": "non-toxic", "toxic": "toxic"}),
    ("shouty", {"NOT_OFFENSIVE": "non-toxic", "OFFENSIVE": "toxic"}),
)


@pytest.fixture(scope="module")
def package(toxic_voters, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("limits-models")
    for name, _ in VOTERS:
        shutil.copytree(toxic_voters[name], models / name)
    root = tmp_path_factory.mktemp("limits-service")
    voters = [(name, "hf-sequence-classifier", label_map) for name, label_map in VOTERS]
    return bundle_labeler(root, MODULE, models, voters, ("non-toxic", "toxic"))


def serve(package: Path, *options: str) -> ServedLabeler:
    return ServedLabeler(package.parent, MODULE, *options)


def test_too_many_or_too_long_texts_get_413_and_malformed_bodies_422(package):
    service = serve(package, "--max-texts", "3", "--max-text-chars", "20")
    url = service.url + "/v1/label"
    try:
        cases = [
            ({"texts": ["a", "b", "c", "d"]}, 413, "too_many_texts"),
            ({"texts": ["x" * 21]}, 413, "text_too_long"),
            ({"records": [{"text": "ok"}, {"text": "y" * 21}]}, 413, "text_too_long"),
            ({"texts": "one text"}, 422, "invalid_body"),
            ({"text": ["a"]}, 422, "invalid_body"),
            (["a", "b"], 422, "invalid_body"),
            ({"texts": ["fine", 42]}, 422, "invalid_text"),
            ({"records": [{"review": "no text field"}]}, 422, "missing_text_column"),
            ({"records": [{"text": None}]}, 422, "invalid_text"),
        ]
        for payload, status, code in cases:
            answer = post_json(url, payload)
            assert answer[0] == status and answer[2]["error"] == code, (payload, answer)
            assert answer[2]["message"] and answer[1]["content-type"] == "application/json"
        status, _, body = request("POST", url, b'{"texts": ["unclosed"')
        assert status == 422 and json.loads(body)["error"] == "invalid_json"
        huge = b'{"texts": ["a"]' + b" " * 200_000 + b"}"
        status, _, body = request("POST", url, huge)
        assert status == 413 and json.loads(body)["error"] == "body_too_large"
        assert request("GET", url)[0] == 405
        families = metrics(service.url)
        counted = ("labeler_requests", "labeler_requests_total")
        assert sample(families, *counted, status="413") == 4
        assert sample(families, *counted, status="422") == 7
        assert sample(families, "labeler_rows", "labeler_rows_total") == 0
    finally:
        service.close()


def wait_for_queue(url: str, rows: int, counting_answered: bool = False) -> None:
    """Until the queue holds ``rows`` rows; ``counting_answered``: until the service has
    taken ``rows`` rows, some of them still queued or running (the first batches may be
    answered before the last request arrives)."""
    deadline = time.monotonic() + 30
    while True:
        families = metrics(url)
        queued = sample(families, "labeler_queue_rows", "labeler_queue_rows")
        answered = sample(families, "labeler_rows", "labeler_rows_total")
        if queued and queued + (answered if counting_answered else 0) == rows:
            return
        assert time.monotonic() < deadline, f"the service never held {rows} rows"
        time.sleep(0.02)


def test_a_full_queue_sheds_requests_with_503_and_retry_after(package):
    options = ["--max-queue-rows", "4", "--max-texts", "4", "--max-wait-ms", "1500"]
    service = serve(package, *options)
    url = service.url + "/v1/label"
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post_json, url, {"texts": ["a", "b", "c", "d"]})
            wait_for_queue(service.url, 4)
            status, headers, answer = post_json(url, {"texts": ["one more"]})
            assert status == 503 and answer["error"] == "overloaded"
            assert int(headers["retry-after"]) >= 1
            status, _, accepted = first.result(60)
        assert status == 200 and len(accepted["results"]) == 4
        # Once the queue has drained, the same request is taken.
        assert post_json(url, {"texts": ["one more"]})[0] == 200
        counted = ("labeler_requests", "labeler_requests_total")
        assert sample(metrics(service.url), *counted, status="503") == 1
    finally:
        service.close()


def test_sigterm_answers_every_accepted_request_then_exits_0(package):
    service = serve(package, "--max-wait-ms", "1500", "--max-batch-rows", "8")
    url = service.url
    requests = [[f"request {i} row {j} you idiot" for j in range(3)] for i in range(10)]
    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            pending = [pool.submit(post_json, url + "/v1/label", {"texts": t}) for t in requests]
            # 24 rows run in three full batches; the last 6 wait 1.5 s for company.
            wait_for_queue(url, 30, counting_answered=True)
            service.signal(signal.SIGTERM)
            answers = [future.result(120) for future in pending]
        assert service.wait(60) == 0
    finally:
        service.close()
    for texts, (status, _, answer) in zip(requests, answers, strict=True):
        assert status == 200 and len(answer["results"]) == len(texts)
    assert "stopped after answering 10 label requests" in service.stderr
    assert get(url + "/healthz")[0] == 0  # nothing listens any more


def run_serve(package: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", MODULE, "serve", *options],
        env={**os.environ, "PYTHONPATH": str(package.parent), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-texts", "0"], "error: --max-texts must be at least 1"),
        (["--max-texts", "10", "--max-queue-rows", "5"], "error: --max-texts must not exceed"),
        (["--max-wait-ms", "-1"], "error: --max-wait-ms must not be negative"),
    ],
)
def test_bad_options_exit_2_with_one_line(package, options, message):
    done = run_serve(package, *options)
    assert done.returncode == 2 and done.stderr.startswith(message)
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_taken_port_exits_2_with_one_line(package):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        done = run_serve(package, "--port", str(taken.getsockname()[1]))
    assert done.returncode == 2
    assert error_lines(done.stderr) == [done.stderr.strip()]
    assert "cannot listen on 127.0.0.1:" in done.stderr


def test_voters_that_cannot_load_stop_the_service_with_exit_1(package, tmp_path):
    broken = tmp_path / MODULE
    shutil.copytree(package, broken)
    shutil.rmtree(broken / "models" / "shouty")
    done = run_serve(broken, "--port", "0")
    assert done.returncode == 1
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and "shouty" in errors[0]


def listening_addresses(port: int) -> list[str]:
    """The IPv4 and IPv6 addresses with a socket listening on ``port``, from the kernel."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    packed = bytes.fromhex(address)
                    if len(packed) == 4:
                        found.append(socket.inet_ntop(socket.AF_INET, packed[::-1]))
                    else:
                        found.append(f"ipv6:{address}")
    return found


def test_the_service_listens_on_loopback_unless_told_otherwise(package):
    service = serve(package)
    try:
        assert service.url.startswith("http://127.0.0.1:")
        port = int(service.url.rsplit(":", 1)[1])
        assert listening_addresses(port) == ["127.0.0.1"]
    finally:
        service.close()


def test_a_burst_beyond_the_queue_is_shed_and_no_request_hangs(package):
    service = serve(package, "--max-queue-rows", "8", "--max-texts", "2", "--max-wait-ms", "50")
    barrier = threading.Barrier(40)

    def client(index: int):
        barrier.wait()
        started = time.monotonic()
        status = post_json(service.url + "/v1/label", {"texts": [f"row {index}", "again"]})[0]
        return status, time.monotonic() - started

    try:
        with ThreadPoolExecutor(40) as pool:
            outcomes = list(pool.map(client, range(40)))
    finally:
        service.close()
    statuses = [status for status, _ in outcomes]
    assert set(statuses) <= {200, 503} and statuses.count(503) >= 1 and statuses.count(200) >= 4
    assert max(seconds for _, seconds in outcomes) < 60
