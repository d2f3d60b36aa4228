"""LoRA adapters of the transformer voters: where they live and how they are loaded.

``finetune`` trains them on verified rows; each promoted stage is a version
under ``adapters/<voter>/v<N>/`` and ``adapters/<voter>/CURRENT`` names the one
in use. Adapters load only from safetensors and are merged into the base model,
so a tuned voter runs exactly as fast as the original. An embedding voter's
folder also holds the linear head trained with its adapter (``head.npz``).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import versions
from .voters import VoterLoadError

ADAPTERS = "adapters"
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
RECORD = "adapter.json"

TARGET_MODULES = {
    "albert": ("query", "value"),
    "bert": ("query", "value"),
    "camembert": ("query", "value"),
    "deberta": ("in_proj",),
    "deberta-v2": ("query_proj", "value_proj"),
    "distilbert": ("q_lin", "v_lin"),
    "electra": ("query", "value"),
    "modernbert": ("Wqkv",),
    "mpnet": ("q", "v"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
}
"""Attention projections LoRA adapts, per ``config.model_type``."""


def target_modules(model) -> list[str]:
    """The modules LoRA adapts in ``model``: ours per architecture, else PEFT's defaults."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in TARGET_MODULES:
        return list(TARGET_MODULES[model_type])
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

    if model_type in defaults:
        return list(defaults[model_type])
    raise VoterLoadError(f"no LoRA target modules known for architecture {model_type!r}")


def adapter_folder(package_root: Path, voter: str) -> Path:
    return package_root / ADAPTERS / voter


def current_version(package_root: Path, voter: str) -> str | None:
    return versions.current(adapter_folder(package_root, voter))


def current_adapter(package_root: Path, voter: str) -> Path | None:
    """The folder of the promoted adapter, or None while the voter is untuned."""
    version = current_version(package_root, voter)
    if version is None:
        return None
    folder = adapter_folder(package_root, voter) / version
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise VoterLoadError(f"voter {voter}: adapter {folder} named by CURRENT is incomplete")
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pkl"))
    if pickled:
        raise VoterLoadError(f"voter {voter}: adapter {folder} holds pickled files {pickled}")
    return folder


def adapter_identity(folder: Path) -> dict:
    """What an installed adapter is: its voter, version and files' sha256."""
    return {"voter": folder.parent.name, "version": folder.name, **versions.file_digests(folder)}


def next_version(package_root: Path, voter: str) -> str:
    return versions.following(adapter_folder(package_root, voter))


def install_adapters(output: Path, promoted: dict[str, str], package_root: Path) -> None:
    """Copy the promoted versions (``output/<voter>/<version>``) into the package and make
    them current."""
    for voter, version in promoted.items():
        versions.install(output / voter / version, adapter_folder(package_root, voter), version)


def merge_adapter(model, folder: Path):
    """``model`` with the LoRA weights in ``folder`` merged in (no PEFT layers left)."""
    try:
        from peft import PeftModel
    except ImportError as error:
        raise VoterLoadError(
            f"adapter {folder} needs peft: install the package's 'finetune' extra"
        ) from error
    tuned = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    return tuned.merge_and_unload()


def adapter_record(folder: Path) -> dict:
    return json.loads((folder / RECORD).read_text(encoding="utf-8"))
