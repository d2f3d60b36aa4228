"""Voter adapters: each turns texts into probabilities over the task's labels.

Every adapter kind implements the same small interface (:class:`Voter`); the
labeler never cares which kind it is talking to.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .config import IGNORE, VoterConfig


class VoterLoadError(RuntimeError):
    """A voter's model is missing, unsafe or not the model the spec pinned."""


@dataclass(frozen=True)
class Runtime:
    """Where and how voters run."""

    package_root: Path
    """Folder of the installed package (bundled models live under it)."""
    device: str
    """``cpu`` or ``cuda``."""
    batch_size: int


class Voter(Protocol):
    config: VoterConfig

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities over the task's labels, shape (len(texts), labels), rows sum to 1."""
        ...


def label_map_matrix(
    model_labels: Sequence[str], label_map: dict[str, str], labels: Sequence[str]
) -> np.ndarray:
    """A (model labels, task labels) 0/1 matrix; ignored model labels have an all-zero row."""
    unknown = sorted(set(model_labels) ^ set(label_map))
    if unknown:
        raise VoterLoadError(f"the model's labels {list(model_labels)} differ from the label map")
    matrix = np.zeros((len(model_labels), len(labels)))
    for row, model_label in enumerate(model_labels):
        target = label_map[model_label]
        if target != IGNORE:
            matrix[row, labels.index(target)] = 1.0
    return matrix


def to_task_probabilities(model_probabilities: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Sum model-label probabilities into task labels and renormalise over the mapped ones."""
    task = model_probabilities @ matrix
    totals = task.sum(axis=1, keepdims=True)
    uniform = np.full_like(task, 1.0 / task.shape[1])
    return np.where(totals > 1e-12, task / np.maximum(totals, 1e-12), uniform)


class SequenceClassifierVoter:
    """A Hugging Face sequence classifier, loaded from safetensors without remote code."""

    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.config = config
        self.runtime = runtime
        location, revision = model_location(config, runtime.package_root)
        self._torch = torch
        load = {"revision": revision, "trust_remote_code": False}
        self.tokenizer = AutoTokenizer.from_pretrained(location, **load)
        dtype = torch.bfloat16 if runtime.device == "cuda" else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(
            location, use_safetensors=True, dtype=dtype, **load
        )
        self.model.to(runtime.device).eval()
        id2label = self.model.config.id2label
        model_labels = [id2label[index] for index in range(len(id2label))]
        self.matrix = label_map_matrix(model_labels, config.label_map, labels)
        self.max_length = int(
            min(
                config.options.get("max_length", 512),
                getattr(self.model.config, "max_position_embeddings", 512),
                self.tokenizer.model_max_length,
            )
        )

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        features = list(encoded.keys())
        # Length-sorted batches pad each batch only to its own longest text.
        order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
        probabilities = np.zeros((len(texts), self.matrix.shape[0]))
        with torch.inference_mode():
            for start in range(0, len(order), self.runtime.batch_size):
                batch_rows = order[start : start + self.runtime.batch_size]
                batch = self.tokenizer.pad(
                    {name: [encoded[name][i] for i in batch_rows] for name in features},
                    return_tensors="pt",
                )
                logits = self.model(**batch.to(self.runtime.device)).logits
                probabilities[batch_rows] = logits.float().softmax(dim=-1).cpu().numpy()
        return to_task_probabilities(probabilities, self.matrix)


def model_location(config: VoterConfig, package_root: Path) -> tuple[str, str | None]:
    """Where ``from_pretrained`` finds a voter's files, and the revision to ask for."""
    scheme, _, reference = config.source.partition(":")
    if scheme == "bundled":
        location = package_root / reference
        if not location.is_dir():
            raise VoterLoadError(f"voter {config.name}: bundled model {location} is missing")
        return str(location), None
    if scheme == "hub":
        return reference, config.revision
    raise VoterLoadError(f"voter {config.name}: unknown model source {config.source!r}")


ADAPTERS: dict[str, Callable[[VoterConfig, Sequence[str], Runtime], Voter]] = {
    "hf-sequence-classifier": SequenceClassifierVoter,
}


def load_voter(config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> Voter:
    """Build the adapter for ``config.kind``."""
    try:
        adapter = ADAPTERS[config.kind]
    except KeyError:
        raise VoterLoadError(f"voter {config.name}: unknown kind {config.kind!r}") from None
    try:
        return adapter(config, labels, runtime)
    except (OSError, ValueError) as error:
        raise VoterLoadError(f"voter {config.name}: cannot load its model ({error})") from error
