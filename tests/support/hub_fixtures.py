"""Pytest fixtures that point the real ``huggingface_hub`` client at a :class:`LoopbackHub`.

Load them with ``pytest_plugins = ["tests.support.hub_fixtures"]`` (in tests/conftest.py, or in a
test module). Fixtures:

- ``loopback_hub``: an empty, started hub; the client is pointed at it for the test (see below).
- ``tiny_models`` (session): builds each distinct tiny classifier once per session.
- ``catalog_hub``: ``loopback_hub`` filled with :data:`CATALOG` (good models and the traps).

Why the client needs more than ``HF_ENDPOINT``: huggingface_hub reads its environment *at import*
into ``huggingface_hub.constants`` (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, token paths...), and imports happen long before a test picks a port. So
:func:`point_client_at` sets the variables (for subprocesses, e.g. the sandboxed labeler) *and*
patches those constants (for this process). Product code stays correct on both sides if it builds
its clients at run time (``HfApi(endpoint=settings.hf_endpoint)``, ``snapshot_download(...,
endpoint=...)``), never at import time.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.hub_server import LoopbackHub, read_files
from tests.support.tiny_models import build_classifier

TOXICITY_LABELS = {0: "non-toxic", 1: "toxic"}
SENTIMENT_LABELS = {0: "negative", 1: "positive"}
REMOTE_CODE_MARKER = b"raise RuntimeError('LoopbackHub trap: remote code was executed')\n"


def point_client_at(endpoint: str, monkeypatch: pytest.MonkeyPatch, hf_home: Path) -> None:
    """Send every huggingface_hub call of this test to ``endpoint``, with a fresh, empty cache."""
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    hub_cache, token_path = hf_home / "hub", hf_home / "token"
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hub_cache)}
    for name, value in (env | {"HF_HUB_DISABLE_TELEMETRY": "1"}).items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    patched: dict[str, Any] = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_TOKEN_PATH": str(token_path),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        # Telemetry off: otherwise the first request also fetches an "agent harness" registry.
        "HF_HUB_DISABLE_TELEMETRY": True,
    }
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    close_session()  # pooled connections may still point at an earlier test's port


def set_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HF_HUB_OFFLINE=1`` for this process (the constant) and for subprocesses (the variable)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


class TinyModelCache:
    """Builds each distinct tiny classifier once (a few seconds each); never modify its output."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[tuple[Any, ...], Path] = {}

    def get(
        self,
        id2label: Mapping[int, str],
        *,
        seed: int = 0,
        logit_bias: Sequence[float] = (),
        train_examples: Sequence[tuple[str, int]] = (),
    ) -> Path:
        key = (tuple(sorted(id2label.items())), seed, tuple(logit_bias), tuple(train_examples))
        if key not in self._built:
            directory = self.root / f"model-{len(self._built)}"
            build_classifier(
                directory,
                dict(id2label),
                seed=seed,
                logit_bias=logit_bias or None,
                train_examples=train_examples,
            )
            self._built[key] = directory
        return self._built[key]


def pickle_only(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The pickle-only trap: the weights as ``pytorch_model.bin`` (torch.save), no safetensors."""
    import torch
    from safetensors.torch import load

    weights = io.BytesIO()
    torch.save(load(files["model.safetensors"]), weights)
    kept = {name: data for name, data in files.items() if not name.endswith(".safetensors")}
    return kept | {"pytorch_model.bin": weights.getvalue()}


def with_remote_code(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The remote-code trap: ``auto_map`` in config.json, and code that fails loudly if run."""
    config = json.loads(files["config.json"])
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_custom.CustomModel"}
    return {
        **files,
        "config.json": json.dumps(config, indent=2).encode(),
        "modeling_custom.py": REMOTE_CODE_MARKER,
    }


def with_labels(files: Mapping[str, bytes], id2label: Mapping[int, str]) -> dict[str, bytes]:
    """The same weights under other label names (rewrites id2label/label2id in config.json)."""
    config = json.loads(files["config.json"])
    config["id2label"] = {str(i): label for i, label in id2label.items()}
    config["label2id"] = {label: i for i, label in id2label.items()}
    return {**files, "config.json": json.dumps(config, indent=2).encode()}


@dataclass(frozen=True)
class CatalogEntry:
    """One repo of the standard catalog, and the trap it sets (None: a good model)."""

    repo_id: str
    trap: str | None
    downloads: int
    seed: int = 0
    labels: Mapping[int, str] = field(default_factory=lambda: TOXICITY_LABELS)
    options: Mapping[str, Any] = field(default_factory=dict)


CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("acme/toxic-bert-tiny", None, 9000, options={"likes": 40}),
    CatalogEntry("erin/toxic-gated", "gated", 8000, options={"gated": "manual"}),
    CatalogEntry("carol/toxic-pickle-only", "pickle-only", 7000),
    CatalogEntry("dave/toxic-remote-code", "remote-code", 6000),
    CatalogEntry("bob/toxic-comment-tiny", None, 5000, seed=1, options={"likes": 80}),
    CatalogEntry("frank/toxic-german", "non-english", 4000, options={"languages": ["de"]}),
    CatalogEntry(
        "gina/toxic-generator", "wrong-task", 3000, options={"pipeline_tag": "text-generation"}
    ),
    CatalogEntry("hank/sentiment-tiny", None, 10000, seed=1, labels=SENTIMENT_LABELS),
)


def add_catalog(hub: LoopbackHub, models: TinyModelCache) -> None:
    """Publish :data:`CATALOG`: two genuinely different toxicity voters, a sentiment model, traps.

    Only two networks are built (seeds 0 and 1); other label sets reuse their weights.
    """
    transforms = {"pickle-only": pickle_only, "remote-code": with_remote_code}
    for entry in CATALOG:
        files = read_files(models.get(TOXICITY_LABELS, seed=entry.seed))
        if entry.labels != TOXICITY_LABELS:
            files = with_labels(files, entry.labels)
        if entry.trap in transforms:
            files = transforms[entry.trap](files)
        hub.add_model(entry.repo_id, files, downloads=entry.downloads, **entry.options)


@pytest.fixture
def loopback_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[LoopbackHub]:
    """An empty hub, started, with the client pointed at it and a fresh HF_HOME in tmp_path."""
    from huggingface_hub.utils import close_session

    hub = LoopbackHub().start()
    point_client_at(hub.url, monkeypatch, tmp_path / "hf-home")
    try:
        yield hub
    finally:
        hub.stop()
        close_session()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModelCache:
    return TinyModelCache(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture
def catalog_hub(loopback_hub: LoopbackHub, tiny_models: TinyModelCache) -> LoopbackHub:
    add_catalog(loopback_hub, tiny_models)
    return loopback_hub
