"""``<labeler> serve`` for real: a package's service in its own process answers what the batch
command writes, batches concurrent requests together, and describes itself (``/metrics``,
``/openapi.json``, ``/docs``, ``/readyz``)."""

from __future__ import annotations

import importlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from templates.labeler.pkg import learn, learned, versions
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.vote import votes_folder
from templates.labeler.pkg.voters import Runtime
from tests.support.datasets import read_csv, write_csv
from tests.support.packages import PACKAGE_SOURCE, bundle_labeler
from tests.support.serving import ServedLabeler, get, label, metrics, post_json, request, sample
from tests.support.tiny_models import TOXIC_EXAMPLES

pytestmark = pytest.mark.slow

LEARNED_MODULE = "zorb_service"
KEYWORD = "zorblat"
ENCODER = "bundled:models/encoder"
PROTOTYPES = {"A": ["a calm remark", "a plain sentence"], "B": ["something else", "a thing"]}
LEARNED_SPEC = LabelerSpec(
    "zorb-service",
    "find zorblats",
    ("A", "B"),
    "text",
    1.0,
    (
        VoterConfig("classifier", "hf-sequence-classifier", ENCODER, "r", {"A": "A", "B": "B"}),
        VoterConfig("minilm", "embedding", ENCODER, "r", {}, options={"prototypes": PROTOTYPES}),
        VoterConfig("head", "embedding-head", ENCODER, "r", {}),
        VoterConfig("lexical", "tfidf", ENCODER, "r", {}),
    ),
)
VOTE_WEIGHTS = {"classifier": 0.5, "minilm": 0.25, "head": 1.0, "lexical": 2.0}
TOXIC_MODULE = "toxic_service"
TOXIC_VOTERS = (
    ("plain", {"non-toxic": "non-toxic", "toxic": "toxic"}),
    ("shouty", {"NOT_OFFENSIVE": "non-toxic", "OFFENSIVE": "toxic"}),
    ("three_way", {"hate": "toxic", "offensive": "toxic", "neither": "non-toxic"}),
)
AWKWARD = ["", 'she said "no, never"', "line one\nline two", "naïve café, 100% 😀", "NA"]


def keyword_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """Random words; label B exactly when the text holds the keyword."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)] + "the cat sat on a mat in the park all day".split()
    rows = []
    for index in range(count):
        chosen = rng.sample(words, 6)
        if index % 2 == 0:
            chosen.insert(rng.randrange(len(chosen) + 1), KEYWORD)
        rows.append((" ".join(chosen), "B" if index % 2 == 0 else "A"))
    return rows


def install_vote(package: Path) -> None:
    """A learned vote of our own weights, so the service must pool as the batch command does."""
    version = versions.following(votes_folder(package))
    folder = package.parent / "vote-source" / version
    folder.mkdir(parents=True)
    record = {
        "voters": [{"voter": name, "weight": weight} for name, weight in VOTE_WEIGHTS.items()],
        "bias": {"A": 0.1, "B": -0.1},
        "adopted": True,
    }
    (folder / "vote.json").write_text(json.dumps(record), encoding="utf-8")
    versions.install(folder, votes_folder(package), version)


@pytest.fixture(scope="module")
def learned_package(tiny_models, tmp_path_factory) -> Path:
    """``zorb_service``: a classifier, a zero-shot voter and two learned voters trained on the
    keyword task, with a learned vote installed."""
    root = tmp_path_factory.mktemp("learned-service")
    package = root / LEARNED_MODULE
    package.mkdir()
    for source in PACKAGE_SOURCE.glob("*.py"):
        shutil.copy(source, package / source.name)
    (package / "__init__.py").write_text("", encoding="utf-8")
    encoder = tiny_models.get({0: "A", 1: "B"}, seed=5, train_examples=TOXIC_EXAMPLES)
    shutil.copytree(encoder, package / "models" / "encoder")
    (package / "spec.py").write_text(
        f"from .config import LabelerSpec, VoterConfig\nSPEC = {LEARNED_SPEC!r}\n",
        encoding="utf-8",
    )
    examples = write_csv(root / "verified.csv", ("text", "label"), keyword_rows(200, seed=0))
    loaded = learn.Examples(examples, ("text", "label", None), LEARNED_SPEC)
    runtime = Runtime(package, "cpu", 8)
    learn.learn_all(loaded, root / "learned", LEARNED_SPEC, runtime, seed=0)
    assert learned.install_learned(root / "learned", package)["voters"] == {
        "head": "v1",
        "lexical": "v1",
    }
    install_vote(package)
    return package


def label_with_the_batch_command(package: Path, table: Path, output: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(package.parent), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", package.name, str(table), "-o", str(output)]
    done = subprocess.run(command + ["--progress", "none"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return read_csv(output)


def assert_same_row(served: dict, written: dict[str, str], voters: list[str]) -> None:
    assert served["label"] == written["label"]
    assert served["needs_review"] == (written["needs_review"] == "true")
    for column in ("confidence", "agreement"):
        assert served[column] == pytest.approx(float(written[column]), abs=1e-4)
    for voter in voters:
        assert served[f"label_{voter}"] == (written[f"label_{voter}"] or None)
        assert served[f"prob_{voter}"] == pytest.approx(float(written[f"prob_{voter}"]), abs=1e-4)


def test_answers_equal_the_batch_commands_learned_voters_and_vote_included(
    learned_package, tmp_path
):
    rows = keyword_rows(43, seed=3) + [(text, "A") for text in AWKWARD]
    table = write_csv(
        tmp_path / "data.csv", ("id", "text", "label"), [(i, t, g) for i, (t, g) in enumerate(rows)]
    )
    written = label_with_the_batch_command(learned_package, table, tmp_path / "labeled.csv")
    voters = list(VOTE_WEIGHTS)
    service = ServedLabeler(learned_package.parent, LEARNED_MODULE, "--max-wait-ms", "20")
    try:
        status, body = get(service.url + "/readyz")
        assert status == 200 and json.loads(body)["voters"] == voters
        texts = [text for text, _ in rows]
        # Requests of different sizes at once: their rows share batches of other lengths.
        sizes = [1, 3, 7, 2, 11, 5, 9, 10]
        starts = [sum(sizes[:index]) for index in range(len(sizes))]
        with ThreadPoolExecutor(len(sizes)) as pool:
            answers = list(
                pool.map(
                    lambda start, size: label(service.url, texts[start : start + size]),
                    starts,
                    sizes,
                )
            )
        served = [row for answer in answers for row in answer]
        assert len(served) == len(written) == 48
        for answer_row, written_row in zip(served, written, strict=True):
            assert_same_row(answer_row, written_row, voters)
        records = [{"id": row["id"], "text": row["text"], "label": row["label_input"]}
                   for row in written]  # fmt: skip
        status, _, answer = post_json(service.url + "/v1/label", {"records": records[:20]})
        assert status == 200
        for answer_row, written_row in zip(answer["results"], written[:20], strict=True):
            assert answer_row["id"] == written_row["id"]
            assert answer_row["label_input"] == written_row["label_input"]
            assert_same_row(answer_row, written_row, voters)
        # The learned lexical voter is in play: it knows the keyword task.
        correct = [
            row["label_lexical"] == gold
            for row, (_, gold) in zip(served[:43], rows[:43], strict=True)
        ]
        assert sum(correct) >= 40
    finally:
        service.close()


@pytest.fixture(scope="module")
def toxic_package(toxic_voters, tmp_path_factory) -> Path:
    """``toxic_service``: the three tiny toxicity voters, bundled as in a rendered package."""
    models = tmp_path_factory.mktemp("toxic-models")
    for name, path in toxic_voters.items():
        shutil.copytree(path, models / name)
    root = tmp_path_factory.mktemp("toxic-service")
    voters = [(name, "hf-sequence-classifier", label_map) for name, label_map in TOXIC_VOTERS]
    return bundle_labeler(root, TOXIC_MODULE, models, voters, ("non-toxic", "toxic"))


@pytest.fixture(scope="module")
def toxic_service(toxic_package):
    """The toxic package's service: rows wait up to 300 ms for company, 8 texts a request."""
    options = ["--max-wait-ms", "300", "--max-batch-rows", "64", "--max-texts", "8"]
    service = ServedLabeler(toxic_package.parent, TOXIC_MODULE, *options, "--max-text-chars", "200")
    try:
        yield service
    finally:
        service.close()


def test_concurrent_clients_share_model_batches(toxic_service):
    url = toxic_service.url
    before = metrics(url)
    batches_before = sample(before, "labeler_batch_rows", "labeler_batch_rows_count")
    requests = [
        [f"client {i} says you idiot", f"client {i} says have a nice day"] for i in range(12)
    ]
    barrier = threading.Barrier(len(requests))

    def client(texts: list[str]) -> list[dict]:
        barrier.wait()
        return label(url, texts)

    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(client, requests))
    after = metrics(url)
    batches = sample(after, "labeler_batch_rows", "labeler_batch_rows_count") - batches_before
    rows = sample(after, "labeler_batch_rows", "labeler_batch_rows_sum") - sample(
        before, "labeler_batch_rows", "labeler_batch_rows_sum"
    )
    assert rows == 24
    assert batches < len(requests)  # some batches held rows of several clients
    larger_than_a_request = sample(
        after, "labeler_batch_rows", "labeler_batch_rows_count"
    ) - sample(after, "labeler_batch_rows", "labeler_batch_rows_bucket", le="2")
    assert larger_than_a_request >= 1
    # Each client got its own rows: exactly the answers it gets alone (same text, same answer,
    # whoever shared its batch).
    for texts, answer in zip(requests, together, strict=True):
        assert answer == label(url, texts)


def test_a_poison_text_is_labeled_and_fails_no_other_clients_request(toxic_service):
    """A lone surrogate and a NUL, posted beside another client's ordinary request: both get
    200 (the texts are made safe as read, as the batch command reads a file's)."""
    url = toxic_service.url + "/v1/label"
    poison = {"records": [{"text": "ok \ud800 broken", "note": "\udfff kept"}]}
    poison["records"].append({"text": "nul \u0000 x you idiot", "note": "plain"})
    ordinary = {"texts": ["you idiot", "have a nice day"]}
    barrier = threading.Barrier(2)

    def client(payload: dict) -> tuple[int, dict]:
        barrier.wait()
        status, _, answer = post_json(url, payload)
        return status, answer

    with ThreadPoolExecutor(2) as pool:
        (poisoned, poisoned_answer), (fine, fine_answer) = pool.map(client, [poison, ordinary])
    assert (poisoned, fine) == (200, 200), (poisoned_answer, fine_answer)
    first, second = poisoned_answer["results"]
    assert first["text"] == "ok \ufffd broken" and second["text"] == "nul  x you idiot"
    assert first["note"] == "\udfff kept"  # every other field answered as it came
    assert second["label"] == label(toxic_service.url, ["nul  x you idiot"])[0]["label"]
    assert [row["label"] for row in fine_answer["results"]] == [
        row["label"] for row in label(toxic_service.url, ordinary["texts"])
    ]


def test_metrics_parse_and_count_requests_by_status(toxic_service):
    url = toxic_service.url
    before = metrics(url)
    label(url, ["you are an idiot", "see you at the park"])
    assert post_json(url + "/v1/label", {"texts": [1]})[0] == 422
    after = metrics(url)
    assert after["labeler_requests"].type == "counter"
    for status, added in (("200", 1), ("422", 1)):
        family = ("labeler_requests", "labeler_requests_total")
        grew = sample(after, *family, status=status) - sample(before, *family, status=status)
        assert grew == added
    rows = ("labeler_rows", "labeler_rows_total")
    assert sample(after, *rows) - sample(before, *rows) == 2
    latency = ("labeler_request_duration_seconds", "labeler_request_duration_seconds_count")
    assert sample(after, *latency) - sample(before, *latency) == 2
    assert after["labeler_request_duration_seconds"].type == "histogram"
    assert after["labeler_batch_rows"].type == "histogram"
    assert after["labeler_queue_rows"].type == "gauge"
    assert sample(after, "labeler_queue_rows", "labeler_queue_rows") == 0
    assert sample(after, "labeler_ready", "labeler_ready") == 1


def test_openapi_document_and_an_offline_docs_page(toxic_service):
    status, body = get(toxic_service.url + "/openapi.json")
    document = json.loads(body)
    assert status == 200 and document["openapi"].startswith("3.")
    operation = document["paths"]["/v1/label"]["post"]
    assert set(operation["responses"]) == {"200", "413", "422", "503"}
    row = document["components"]["schemas"]["LabeledRow"]["properties"]
    assert {
        "label",
        "confidence",
        "agreement",
        "needs_review",
        "label_shouty",
        "prob_shouty",
    } <= set(row)
    assert row["label"]["enum"] == ["non-toxic", "toxic"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(document["paths"])
    status, headers, page = request("GET", toxic_service.url + "/docs")
    text = page.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "POST /v1/label" in text and "<script" not in text and "<link" not in text
    assert "src=" not in text


def test_healthz_answers_at_once_and_readyz_only_once_the_voters_are_loaded(
    toxic_package, monkeypatch
):
    """The service in this process, its voters loaded only when the test lets them."""
    import uvicorn

    monkeypatch.syspath_prepend(str(toxic_package.parent))
    try:
        serve_app = importlib.import_module(f"{TOXIC_MODULE}.serve_app")
        serve = importlib.import_module(f"{TOXIC_MODULE}.serve")
        spec = importlib.import_module(f"{TOXIC_MODULE}.spec").SPEC
        args = serve.build_parser(spec).parse_args(["--device", "cpu"])
        gate, failures = threading.Event(), []
        load = serve.load_labeler(spec, args, {})

        def gated_load():
            assert gate.wait(60)
            return load()

        service = serve_app.Service(spec, serve.settings_of(args), gated_load, failures.append)
        server = uvicorn.Server(uvicorn.Config(service.app(), log_level="warning"))
        sock = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while get(url + "/healthz")[0] != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert get(url + "/readyz") == (503, b'{"status":"loading"}')
            status, headers, answer = post_json(url + "/v1/label", {"texts": ["hello"]})
            assert (
                status == 503 and answer["error"] == "loading" and int(headers["retry-after"]) >= 1
            )
            gate.set()
            while get(url + "/readyz")[0] != 200:
                assert time.monotonic() < deadline + 60 and not failures
                time.sleep(0.05)
            assert label(url, ["you are an idiot"])[0]["label"] == "toxic"
        finally:
            gate.set()
            server.should_exit = True
            thread.join(30)
    finally:
        for name in [name for name in sys.modules if name.startswith(TOXIC_MODULE)]:
            del sys.modules[name]
