"""Pytest fixtures that point the real ``huggingface_hub`` client at a :class:`LoopbackHub`.

Load them with ``pytest_plugins = ["tests.support.hub_fixtures"]`` (in tests/conftest.py, or in a
test module). Fixtures:

- ``loopback_hub``: an empty, started hub; the client is pointed at it for the test (see below).
- ``tiny_models`` (session): builds each distinct tiny classifier once per session.
- ``catalog_hub``: ``loopback_hub`` filled with :data:`CATALOG` (good models and the traps).

The good toxicity voters of the catalog are trained on ``examples/tweets.csv`` labeled by keywords
(each leaves a different quarter of it out), so on that file they have real, different opinions:
enough signal for the pilot to tell an inverted or opaque label map from a right one.

Why the client needs more than ``HF_ENDPOINT``: huggingface_hub reads its environment *at import*
into ``huggingface_hub.constants`` (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``, ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, token paths...), and imports happen long before a test picks a port. So
:func:`point_client_at` sets the variables (for subprocesses, e.g. the sandboxed labeler) *and*
patches those constants (for this process). Product code stays correct on both sides if it builds
its clients at run time (``HfApi(endpoint=settings.hf_endpoint)``, ``snapshot_download(...,
endpoint=...)``), never at import time.
"""

from __future__ import annotations

import csv
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
OPAQUE_LABELS = {0: "LABEL_0", 1: "LABEL_1"}
MULTI_LABEL_LABELS = {0: "toxic", 1: "obscene", 2: "insult"}
TWEETS = Path(__file__).resolve().parents[2] / "examples" / "tweets.csv"
TOXIC_WORDS = (
    "idiot", "stupid", "dumb", "moron", "loser", "hate", "trash", "garbage", "clown", "shut",
    "hell", "creep", "pathetic", "kill", "freak", "disgusting", "ugly", "worthless", "choke",
)  # fmt: skip
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


def tweet_examples(left_out: int, *, inverted: bool = False) -> tuple[tuple[str, int], ...]:
    """``examples/tweets.csv`` labeled by keywords (1 = toxic), every fourth row from
    ``left_out`` omitted; ``inverted`` swaps the targets (a model whose class 0 means toxic)."""
    with open(TWEETS, newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    return tuple(
        (text, int(any(word in text.lower() for word in TOXIC_WORDS)) ^ inverted)
        for row, text in enumerate(texts)
        if row % 4 != left_out
    )


@dataclass(frozen=True)
class CatalogEntry:
    """One repo of the standard catalog, and the trap it sets (None: a good model)."""

    repo_id: str
    trap: str | None
    downloads: int
    seed: int = 0
    labels: Mapping[int, str] = field(default_factory=lambda: TOXICITY_LABELS)
    """The id2label published in config.json (the network is built with as many classes)."""
    train: tuple[tuple[str, int], ...] = ()
    """What the network learnt, by class index (1 = toxic for two classes)."""
    options: Mapping[str, Any] = field(default_factory=dict)


_ACME, _BOB = tweet_examples(0), tweet_examples(1)
CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry("acme/toxic-bert-tiny", None, 9000, train=_ACME, options={"likes": 40}),
    CatalogEntry("erin/toxic-gated", "gated", 8000, train=_ACME, options={"gated": "manual"}),
    CatalogEntry("carol/toxic-pickle-only", "pickle-only", 7000, train=_ACME),
    CatalogEntry("dave/toxic-remote-code", "remote-code", 6000, train=_ACME),
    CatalogEntry("bob/toxic-comment-tiny", None, 5000, seed=1, train=_BOB, options={"likes": 80}),
    CatalogEntry(
        "frank/toxic-german", "non-english", 4000, train=_ACME, options={"languages": ["de"]}
    ),
    CatalogEntry(
        "gina/toxic-generator",
        "wrong-task",
        3000,
        train=_ACME,
        options={"pipeline_tag": "text-generation"},
    ),
    CatalogEntry("hank/sentiment-tiny", None, 10000, seed=1, labels=SENTIMENT_LABELS, train=_BOB),
    # Found by the "offensive" query only (ids without "toxic" keep the listings above as they
    # were). Opaque and inverted labels are not refused but must be mapped by the pilot: their
    # networks are good voters whose class 0 means toxic.
    CatalogEntry(
        "ivan/offensive-label-ids",
        "opaque-labels",
        2500,
        seed=3,
        labels=OPAQUE_LABELS,
        train=tweet_examples(3, inverted=True),
    ),
    CatalogEntry(
        "judy/offensive-inverted",
        "inverted-labels",
        2000,
        seed=2,
        train=tweet_examples(2, inverted=True),  # config.json says class 1 is toxic: it is not
    ),
    CatalogEntry("kate/offensive-multilabel", "three-class", 1500, labels=MULTI_LABEL_LABELS),
    CatalogEntry(
        "liam/offensive-noncommercial",
        "non-permissive-licence",
        1200,
        train=_ACME,
        options={"license": "cc-by-nc-4.0"},
    ),
)
GOOD_TOXICITY_MODELS = (
    "acme/toxic-bert-tiny",
    "bob/toxic-comment-tiny",
    "ivan/offensive-label-ids",
    "judy/offensive-inverted",
)
"""The catalog's usable toxicity voters (the opaque and inverted ones once mapped)."""


def add_catalog(hub: LoopbackHub, models: TinyModelCache) -> None:
    """Publish :data:`CATALOG`: four different toxicity voters, a sentiment model, traps.

    Five networks are built: the four voters and the three-class head; the traps reuse the
    first voter's weights, so only their metadata or files make them traps.
    """
    transforms = {"pickle-only": pickle_only, "remote-code": with_remote_code}
    for entry in CATALOG:
        classes = TOXICITY_LABELS if len(entry.labels) == 2 else entry.labels
        files = read_files(models.get(classes, seed=entry.seed, train_examples=entry.train))
        if entry.labels != classes:
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
