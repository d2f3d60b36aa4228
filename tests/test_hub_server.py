"""The real huggingface_hub client against LoopbackHub: behaviour the agent's Hub code relies on.

Every test goes through the installed client (no mocks), so these also pin down what the client
itself does: which calls retry, which exceptions come out, what stays cached when the Hub is gone.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import pytest
from huggingface_hub import (
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_session

from tests.support.hub_server import LoopbackHub, read_files, safetensors_parameters

if TYPE_CHECKING:
    from tests.support.hub_fixtures import TinyModelCache

# Registered as a plugin, not imported at module level: pytest then rewrites its asserts.
pytest_plugins = ["tests.support.hub_fixtures"]

GOOD = "acme/toxic-bert-tiny"
LOADABLE = ["*.json", "*.safetensors", "tokenizer*"]
TOXICITY_LABELS = {0: "non-toxic", 1: "toxic"}


def test_search_sorts_by_downloads_filters_by_task_and_stops_at_limit(catalog_hub: LoopbackHub):
    models = list(
        HfApi().list_models(
            search="toxic", pipeline_tag="text-classification", sort="downloads", limit=5, full=True
        )
    )

    assert [m.id for m in models] == [
        "acme/toxic-bert-tiny",
        "erin/toxic-gated",
        "carol/toxic-pickle-only",
        "dave/toxic-remote-code",
        "bob/toxic-comment-tiny",
    ]
    assert all(len(m.sha) == 40 and m.siblings and m.last_modified for m in models)
    [request] = catalog_hub.requests_to("/api/models")
    assert request.query == {
        "search": ["toxic"],
        "pipeline_tag": ["text-classification"],
        "sort": ["downloads"],
        "limit": ["5"],
        "full": ["true"],
    }


def test_expand_returns_only_the_requested_fields(catalog_hub: LoopbackHub):
    [model] = HfApi().list_models(author="acme", expand=["safetensors", "cardData", "gated"])

    assert model.safetensors is not None and model.safetensors.total > 10_000
    assert model.card_data.license == "apache-2.0" and model.card_data.language == ["en"]
    assert model.gated is False
    assert model.downloads is None and model.siblings is None  # not asked for, not sent


def test_listing_filters_combine_like_the_hub(catalog_hub: LoopbackHub):
    def ids(**filters) -> list[str]:
        return sorted(m.id for m in HfApi().list_models(**filters))

    assert ids(filter="custom_code") == ["dave/toxic-remote-code"]
    assert ids(filter=["text-classification", "de"]) == ["frank/toxic-german"]
    assert ids(gated=True) == ["erin/toxic-gated"]
    small = ids(search="toxic", num_parameters="max:1M")
    assert "acme/toxic-bert-tiny" in small
    assert "carol/toxic-pickle-only" not in small  # no safetensors header: no parameter count
    assert ids(search="toxic", num_parameters="min:1M") == []


def test_listing_follows_link_header_pages(catalog_hub: LoopbackHub):
    catalog_hub.page_size = 3

    models = list(HfApi().list_models(search="toxic", sort="downloads"))

    assert len(models) == 7
    assert len(catalog_hub.requests_to("/api/models")) == 3


def test_unsupported_listing_parameter_fails_loudly(catalog_hub: LoopbackHub):
    with pytest.raises(HfHubHTTPError) as raised:
        list(HfApi().list_models(inference="warm"))
    assert raised.value.response.status_code == 501


def test_model_info_describes_the_repo_and_labels_come_from_config_json(
    catalog_hub: LoopbackHub, tiny_models: TinyModelCache
):
    info = HfApi().model_info(GOOD)

    assert len(info.sha) == 40
    assert {s.rfilename for s in info.siblings} == {
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert info.card_data.license == "apache-2.0" and info.card_data.language == ["en"]
    assert info.pipeline_tag == "text-classification" and info.library_name == "transformers"
    assert {"license:apache-2.0", "en", "safetensors", "bert"} <= set(info.tags)
    built = read_files(tiny_models.get(TOXICITY_LABELS))
    assert info.safetensors.total == sum(safetensors_parameters(built).values())
    assert info.config["architectures"] == ["BertForSequenceClassification"]
    assert info.config["model_type"] == "bert"
    # As on the real Hub, model info carries no id2label: the labels are in config.json.
    assert "id2label" not in info.config
    config = json.loads(Path(hf_hub_download(GOOD, "config.json", revision=info.sha)).read_text())
    assert config["id2label"] == {"0": "non-toxic", "1": "toxic"}


def test_file_metadata_headers_pin_the_commit_and_content(catalog_hub: LoopbackHub):
    sha = HfApi().model_info(GOOD).sha
    weights = catalog_hub.models[GOOD].commits[sha]["model.safetensors"]

    metadata = get_hf_file_metadata(hf_hub_url(GOOD, "model.safetensors", revision="main"))

    assert metadata.commit_hash == sha
    assert metadata.etag == hashlib.sha256(weights).hexdigest()
    assert metadata.size == len(weights)


def test_range_requests_return_the_requested_slice(catalog_hub: LoopbackHub):
    url = hf_hub_url(GOOD, "model.safetensors")
    weights = next(iter(catalog_hub.models[GOOD].commits.values()))["model.safetensors"]

    response = get_session().get(url, headers={"Range": "bytes=8-15"})

    assert response.status_code == 206
    assert response.content == weights[8:16]
    assert response.headers["Content-Range"] == f"bytes 8-15/{len(weights)}"


def test_new_commit_moves_main_and_old_sha_stays_resolvable(
    loopback_hub: LoopbackHub, tiny_models: TinyModelCache
):
    first = loopback_hub.add_model("acme/evolving", tiny_models.get(TOXICITY_LABELS)).refs["main"]
    second_files = {**read_files(tiny_models.get(TOXICITY_LABELS)), "NOTES.md": b"v2"}
    second = loopback_hub.add_model("acme/evolving", second_files).refs["main"]

    api = HfApi()
    assert first != second
    assert api.model_info("acme/evolving").sha == second
    old = api.model_info("acme/evolving", revision=first)
    assert old.sha == first and "NOTES.md" not in {s.rfilename for s in old.siblings}
    assert "NOTES.md" not in api.list_repo_files("acme/evolving", revision=first)
    with pytest.raises(RevisionNotFoundError):
        api.model_info("acme/evolving", revision="no-such-branch")


def test_snapshot_loads_with_transformers_then_serves_from_cache_offline(
    catalog_hub: LoopbackHub, monkeypatch: pytest.MonkeyPatch
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests.support.hub_fixtures import set_hub_offline

    sha = HfApi().model_info(GOOD).sha
    path = snapshot_download(GOOD, revision=sha, allow_patterns=LOADABLE)

    assert sorted(p.name for p in Path(path).iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.id2label == TOXICITY_LABELS
    assert model(**tokenizer(["you are pathetic"], return_tensors="pt")).logits.shape == (1, 2)

    catalog_hub.stop()
    seen = len(catalog_hub.requests)
    assert (
        snapshot_download(GOOD, revision=sha, allow_patterns=LOADABLE, local_files_only=True)
        == path
    )
    set_hub_offline(monkeypatch)
    assert snapshot_download(GOOD, revision=sha, allow_patterns=LOADABLE) == path
    assert len(catalog_hub.requests) == seen


def test_unreachable_hub_raises_connect_error_and_restart_keeps_the_url(catalog_hub: LoopbackHub):
    url = catalog_hub.url
    catalog_hub.stop()

    with pytest.raises(httpx2.ConnectError):  # not an HfHubHTTPError: catch transport errors too
        HfApi().model_info(GOOD)

    catalog_hub.start()
    assert catalog_hub.url == url
    assert HfApi().model_info(GOOD).id == GOOD


def test_gated_repo_is_visible_but_downloads_need_granted_access(catalog_hub: LoopbackHub):
    gated = "erin/toxic-gated"
    assert HfApi().model_info(gated).gated == "manual"

    with pytest.raises(GatedRepoError) as anonymous:
        snapshot_download(gated, allow_patterns=LOADABLE)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as not_granted:
        hf_hub_download(gated, "config.json", token="hf_not_granted")
    assert not_granted.value.response.status_code == 403

    catalog_hub.grant(gated, "hf_granted")
    assert Path(hf_hub_download(gated, "config.json", token="hf_granted")).is_file()


def test_missing_repo_file_and_private_repo_raise_typed_errors(catalog_hub: LoopbackHub):
    # GatedRepoError subclasses RepositoryNotFoundError: catch the gated case first.
    with pytest.raises(RepositoryNotFoundError) as missing:
        HfApi().model_info("nobody/nothing")
    assert not isinstance(missing.value, GatedRepoError)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("nobody/nothing")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(GOOD, "no_such_file.bin")

    catalog_hub.add_model("acme/secret", {"config.json": b"{}"}, private=True)
    assert "acme/secret" not in {m.id for m in HfApi().list_models(author="acme")}
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("acme/secret")
    catalog_hub.grant("acme/secret", "hf_owner")
    assert HfApi(token="hf_owner").model_info("acme/secret").private is True


def test_listing_retries_429_after_retry_after(catalog_hub: LoopbackHub):
    catalog_hub.fail_next("/api/models", 429, retry_after=0)
    started = time.monotonic()

    models = list(HfApi().list_models(search="toxic", limit=2))

    assert len(models) == 2
    assert len(catalog_hub.requests_to("/api/models")) == 2
    assert time.monotonic() - started >= 1  # the client waits Retry-After + 1 s


def test_model_info_does_not_retry(catalog_hub: LoopbackHub):
    catalog_hub.fail_next(f"/api/models/{GOOD}", 429, retry_after=0)

    with pytest.raises(HfHubHTTPError) as raised:
        HfApi().model_info(GOOD)

    assert raised.value.response.status_code == 429
    assert len(catalog_hub.requests_to(f"/api/models/{GOOD}")) == 1


def test_download_recovers_from_one_server_error_on_its_metadata_call(catalog_hub: LoopbackHub):
    catalog_hub.fail_next("/resolve/", 500)

    assert Path(hf_hub_download(GOOD, "config.json")).is_file()
    assert len(catalog_hub.requests_to("/resolve/", method="HEAD")) == 2


def test_slow_hub_raises_timeout(catalog_hub: LoopbackHub):
    catalog_hub.delay_next(f"/api/models/{GOOD}", 5)
    started = time.monotonic()

    with pytest.raises(httpx2.TimeoutException):
        HfApi().model_info(GOOD, timeout=0.2)

    assert time.monotonic() - started < 2


def test_traps_are_visible_in_model_info(catalog_hub: LoopbackHub):
    api = HfApi()

    pickle_only = api.model_info("carol/toxic-pickle-only")
    weights = {s.rfilename for s in pickle_only.siblings} - {
        "README.md",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert weights == {"pytorch_model.bin"}
    assert pickle_only.safetensors is None and "pytorch" in pickle_only.tags
    remote_code = api.model_info("dave/toxic-remote-code")
    assert "auto_map" in remote_code.config and "custom_code" in remote_code.tags
    assert api.model_info("frank/toxic-german").card_data.language == ["de"]
    assert api.model_info("gina/toxic-generator").pipeline_tag == "text-generation"
    assert api.model_info("hank/sentiment-tiny").pipeline_tag == "text-classification"
