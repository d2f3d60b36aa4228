"""Facts read from a model folder's files, without loading the model: labels, safetensors
parameters, remote code, a multi-label head, and the hashes of the files a labeler needs."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from agent.errors import UserInputError


@dataclass(frozen=True)
class ModelFolder:
    """Facts read from a model folder's files."""

    path: Path
    model_labels: tuple[str, ...]
    has_safetensors: bool
    remote_code: bool
    parameters: int | None
    multi_label: bool = False
    """A sigmoid head (``problem_type`` multi-label): its classes are not one label per text."""


def read_model_folder(path: Path) -> ModelFolder:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise UserInputError(f"{path}: not a model folder (no config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserInputError(f"{config_path}: unreadable ({error})") from None
    try:
        labels = config_labels(config)
    except UserInputError as error:
        raise UserInputError(f"{path}/{error}") from None
    weights = sorted(path.glob("*.safetensors"))
    return ModelFolder(
        path=path,
        model_labels=labels,
        has_safetensors=bool(weights),
        remote_code="auto_map" in config,
        parameters=sum(_safetensors_parameters(w) for w in weights) if weights else None,
        multi_label=is_multi_label(config),
    )


def config_labels(config: dict) -> tuple[str, ...]:
    """The model's labels in class order; transformers' ``LABEL_i`` names when none are given."""
    id2label = config.get("id2label") or {
        str(i): f"LABEL_{i}" for i in range(int(config.get("num_labels", 2)))
    }
    try:
        return tuple(str(id2label[key]) for key in sorted(id2label, key=int))
    except ValueError:
        raise UserInputError("config.json: id2label keys are not integers") from None


def is_multi_label(config: dict) -> bool:
    return config.get("problem_type") == "multi_label_classification"


def _safetensors_parameters(path: Path) -> int:
    """Parameter count from a safetensors header, without loading the tensors."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
        return sum(prod(entry["shape"]) for key, entry in header.items() if key != "__metadata__")
    except (OSError, struct.error, ValueError, KeyError, TypeError, AttributeError) as error:
        # A torn download or a file that only looks like safetensors: the file's fault.
        raise UserInputError(f"{path}: unreadable safetensors header ({error})") from None


def labeler_files(path: Path) -> list[Path]:
    """The files of a model folder a labeler needs (config, safetensors, tokenizer)."""
    chosen = {f for pattern in MODEL_FILE_PATTERNS for f in path.glob(pattern) if f.is_file()}
    return sorted(chosen)


def file_hashes(path: Path) -> dict[str, str]:
    hashes = {}
    for file in labeler_files(path):
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        hashes[file.name] = digest.hexdigest()
    return hashes


def content_revision(hashes: dict[str, str]) -> str:
    """A revision id for local files: sha256 over their names and hashes."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()


MODEL_FILE_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
)
"""What a labeler needs from a model repository: config, safetensors weights, tokenizer."""
