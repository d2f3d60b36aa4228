"""Sentence-embedding voters: label prototypes (zero-shot) or a fitted linear head (few-shot).

Texts are embedded with mean pooling and L2-normalised. Zero-shot, each label's
prototype is the mean embedding of several phrasings of it (from the task plan)
and a temperature-scaled softmax over cosine similarities gives probabilities.
Once verified examples exist, a softmax-regression head fitted on their
embeddings replaces the prototypes; heads are versioned under
``heads/<voter>/v<N>/`` and ``heads/<voter>/CURRENT`` names the one in use.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import versions
from .adapters import current_adapter
from .config import VoterConfig
from .transformer import load_transformer, max_length, run_batches
from .voters import Runtime, VoterLoadError

DEFAULT_TEMPERATURE = 30.0
HEADS = "heads"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def head_folder(package_root: Path, voter: str) -> Path:
    return package_root / HEADS / voter


def install_head(output: Path, voter: str, version: str, package_root: Path) -> None:
    """Copy a fitted head (``output/<voter>/<version>``) into the package and make it current."""
    versions.install(output / voter / version, head_folder(package_root, voter), version)


def current_head(package_root: Path, voter: str) -> Path | None:
    """The folder of the head in use, or None while the voter is zero-shot."""
    version = versions.current(head_folder(package_root, voter))
    if version is None:
        return None
    folder = head_folder(package_root, voter) / version
    if not (folder / "head.npz").is_file():
        raise VoterLoadError(f"voter {voter}: head {folder} named by CURRENT is missing")
    return folder


class EmbeddingVoter:
    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
        self.labels = list(labels)
        self.tokenizer, self.model = load_transformer(config, runtime, "AutoModel")
        self.max_length = max_length(config, self.model, self.tokenizer)
        # A tuned voter's adapter folder holds the head trained with it; it wins.
        self.head = current_adapter(runtime.package_root, config.name) or current_head(
            runtime.package_root, config.name
        )
        if self.head is not None:
            weights = np.load(self.head / "head.npz")
            record = "head.json" if (self.head / "head.json").is_file() else "adapter.json"
            meta = json.loads((self.head / record).read_text(encoding="utf-8"))
            if meta["labels"] != self.labels:
                raise VoterLoadError(f"voter {config.name}: head labels {meta['labels']} differ")
            self.weights, self.bias = weights["weights"], weights["bias"]
        else:
            prototypes = config.options.get("prototypes", {})
            missing = [label for label in self.labels if not prototypes.get(label)]
            if missing:
                raise VoterLoadError(f"voter {config.name}: no prototype phrasings for {missing}")
            centres = np.stack([self.embed(prototypes[label]).mean(axis=0) for label in labels])
            self.prototypes = centres / np.linalg.norm(centres, axis=1, keepdims=True)
            self.temperature = float(config.options.get("temperature", DEFAULT_TEMPERATURE))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        def pooled(batch):
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            return mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-12)

        return run_batches(self.tokenizer, texts, self.max_length, self.runtime, pooled)

    def linear_head(self) -> tuple[np.ndarray, np.ndarray]:
        """(weights, bias) of the linear map from embeddings to label logits."""
        if self.head is not None:
            return self.weights, self.bias
        return self.temperature * self.prototypes, np.zeros(len(self.labels))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        embeddings = self.embed(texts)
        if self.head is not None:
            return softmax(embeddings @ self.weights.T + self.bias)
        return softmax(self.temperature * (embeddings @ self.prototypes.T))
