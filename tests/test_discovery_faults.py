"""The Hub misbehaving, through the real client against the loopback Hub.

429, 5xx and timeouts are retried with backoff; answers (404, gated) are not. When the Hub stays
down, :class:`HfHub` answers from the records and cache of an earlier run, or says in one line
that it cannot; the CLI then falls back to the offline catalog or stops, never with a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from agent.cli import main
from agent.errors import HubUnavailableError
from agent.hub.client import HfHub, ModelUnavailableError
from tests.support.hub_server import LoopbackHub

pytestmark = pytest.mark.filterwarnings("ignore:sandbox isolation is off")

REPO = "acme/toxic-small"
INFO = f"/api/models/{REPO}"


def repo_files() -> dict[str, bytes]:
    """A repo with the files the agent reads (a labeler could not run it: no real network)."""
    config = {"model_type": "bert", "id2label": {"0": "non-toxic", "1": "toxic"}}
    weights = {"classifier.weight": np.zeros((2, 4), dtype=np.float32)}
    return {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": save(weights),
        "tokenizer.json": b"{}",
    }


@pytest.fixture
def hub(loopback_hub: LoopbackHub) -> LoopbackHub:
    loopback_hub.add_model(REPO, repo_files(), license="mit", downloads=10)
    return loopback_hub


def client(hub: LoopbackHub, sleeps: list[float], **options) -> HfHub:
    return HfHub(hub.url, sleep=sleeps.append, **options)


def test_server_errors_are_retried_with_exponential_backoff(hub: LoopbackHub):
    hub.fail_next(INFO, 500, times=2)
    sleeps: list[float] = []

    model = client(hub, sleeps).info(REPO)

    assert model.sha == hub.models[REPO].refs["main"]
    assert len(hub.requests_to(INFO)) == 3
    assert 0.5 <= sleeps[0] <= 0.625 and 1.0 <= sleeps[1] <= 1.25


def test_rate_limit_waits_as_long_as_retry_after_says(hub: LoopbackHub):
    hub.fail_next(INFO, 429, retry_after=7)
    sleeps: list[float] = []

    client(hub, sleeps).info(REPO)

    assert len(sleeps) == 1 and sleeps[0] >= 7


def test_timeouts_are_retried(hub: LoopbackHub):
    hub.delay_next(INFO, 3)
    sleeps: list[float] = []

    model = client(hub, sleeps, timeout_s=0.3).info(REPO)

    assert model.id == REPO and len(sleeps) == 1


def test_a_missing_model_is_an_answer_not_a_hiccup(hub: LoopbackHub):
    sleeps: list[float] = []

    with pytest.raises(ModelUnavailableError, match="no such model"):
        client(hub, sleeps).info("nobody/nothing")

    assert sleeps == []


def test_search_asks_for_every_field_the_filters_need_in_one_listing(hub: LoopbackHub):
    [model] = client(hub, []).search("toxic", 20)

    assert model.license == "mit" and model.parameters == 8 and model.sha
    assert model.files == ("README.md", "config.json", "model.safetensors", "tokenizer.json")
    [request] = hub.requests_to("/api/models")
    assert request.query["pipeline_tag"] == ["text-classification"]
    assert request.query["sort"] == ["downloads"]


def test_with_the_hub_down_a_rerun_replays_the_recorded_search_and_the_cache(hub: LoopbackHub):
    online = client(hub, [])
    [found] = online.search("toxic", 20)
    config = online.read_config(REPO, found.sha)
    path = online.download(REPO, found.sha)
    hub.stop()
    sleeps: list[float] = []
    offline = client(hub, sleeps)

    # ``--model acme/toxic-small``: the commit used last time, with its licence. Model info is
    # the call the client does not retry itself, so here it is what finds the Hub down.
    named = offline.info(REPO)
    assert (named.sha, named.license, named.cached) == (found.sha, "mit", True)
    assert len(sleeps) == 3 and offline.unreachable
    [replayed] = offline.search("toxic", 20)
    assert replayed.cached and not found.cached
    assert {**replayed.__dict__, "cached": False} == found.__dict__
    assert offline.read_config(REPO, found.sha) == config
    assert offline.download(REPO, found.sha) == path
    assert len(sleeps) == 3  # once found down, the Hub is not waited for again


def test_with_the_hub_down_and_nothing_recorded_each_call_says_so_in_one_line(hub: LoopbackHub):
    hub.stop()
    offline = client(hub, [])

    with pytest.raises(HubUnavailableError, match="not in the cache"):
        offline.info(REPO)
    with pytest.raises(HubUnavailableError, match="no earlier search to replay"):
        offline.search("toxic", 20)
    with pytest.raises(HubUnavailableError, match="not in the cache"):
        offline.download(REPO, "b" * 40)


@pytest.mark.slow
def test_cli_falls_back_to_the_offline_catalog_when_search_keeps_failing(
    hub: LoopbackHub, tweets_csv: Path, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    hub.fail_next("/api/models", 503, times=100)

    code = main(
        ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", "none"]
        + ["--verifier", "none", "--out", "out"]
    )

    log = " ".join(capsys.readouterr().err.split())
    assert code == 0, log
    assert "HTTP 503" in log and "using the offline catalog instead" in log
    lock = json.loads((tmp_path / "out" / "toxicity-labeler" / "models.lock.json").read_text())
    assert all(voter["source"].startswith("pypi:") for voter in lock["voters"])


def test_cli_stops_with_one_line_when_a_named_model_cannot_be_had(
    hub: LoopbackHub, tweets_csv: Path, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AUTOANNOTATOR_LABELER_TIMEOUT_S", "60")
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", "none"]

    code = main(args + ["--model", "nobody/nothing"])

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2
    assert len(errors) == 1 and "nobody/nothing" in errors[0] and "no such model" in errors[0]


def test_a_bug_in_parsing_a_hub_answer_is_not_an_outage(hub: LoopbackHub, monkeypatch):
    """Only the request is retried: a parser bug surfaces at once, as itself."""
    import agent.hub.client

    def broken_parser(info):
        raise TypeError("parser bug")

    monkeypatch.setattr(agent.hub.client, "_hub_model", broken_parser)
    sleeps: list[float] = []
    hub_client = client(hub, sleeps)

    with pytest.raises(TypeError, match="parser bug"):
        hub_client.search("toxic", 20)
    with pytest.raises(TypeError, match="parser bug"):
        hub_client.info(REPO)
    assert sleeps == [] and hub_client.unreachable is None
    assert len(hub.requests_to(INFO)) == 1
    assert len(hub.requests_to("/api/models", "GET")) == 2  # one listing, one info


@pytest.mark.slow
def test_cli_reports_a_hub_parser_bug_as_an_internal_error_of_a_resumable_run(
    hub: LoopbackHub, tweets_csv: Path, tmp_path, monkeypatch, capsys
):
    import agent.hub.client

    def broken_parser(info):
        raise KeyError("cardData")

    monkeypatch.setattr(agent.hub.client, "_hub_model", broken_parser)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    code = main(
        ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", "none"]
        + ["--verifier", "none", "--out", "out"]
    )

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert code == 1
    assert len(errors) == 1, errors
    assert errors[0].startswith("internal error: KeyError") and "--resume" in errors[0]
    assert not any("offline catalog" in line or "unavailable" in line for line in lines)
    assert not (tmp_path / "out").exists()
