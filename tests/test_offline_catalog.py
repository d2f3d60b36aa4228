"""The offline catalog: a broken cached model is a refusal with its reason; a bug is a bug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.discovery import catalog
from agent.discovery.catalog import catalog_candidates
from tests.support.fakes import TOXICITY_PLAN as PLAN


def model_folder(root: Path, name: str, weights: bytes) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    config = {"model_type": "bert", "id2label": {"0": "non-toxic", "1": "toxic"}}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_a_torn_cached_model_is_refused_with_the_reason(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    models = tmp_path / "models"
    model_folder(models, "torn", b"\x05\x00")  # a download cut off inside the header length

    _candidates, rejections = catalog_candidates(PLAN, models)

    refused = {rejection.ref: rejection.reason for rejection in rejections}
    reason = refused[str(models / "torn")]
    assert reason.startswith("unreadable (") and "safetensors header" in reason


def test_a_bug_while_vetting_a_cached_model_is_not_turned_into_a_refusal(
    tmp_path: Path, monkeypatch
):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    models = tmp_path / "models"
    model_folder(models, "fine", b"")

    def broken(*args, **kwargs):
        raise AttributeError("bug in vet_folder")

    monkeypatch.setattr(catalog, "read_model_folder", broken)

    with pytest.raises(AttributeError, match="bug in vet_folder"):
        catalog_candidates(PLAN, models)
