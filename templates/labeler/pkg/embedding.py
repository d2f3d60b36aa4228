"""Sentence-embedding voters: label prototypes (zero-shot), or the linear head of their
LoRA adapter once :mod:`.finetune` tuned them.

Texts are embedded with mean pooling and L2-normalised (:mod:`.encoders`). Zero-shot,
each label's prototype is the mean embedding of several phrasings of it (from the task
plan) and a temperature-scaled softmax over cosine similarities gives probabilities. A
tuned voter's adapter folder holds the head trained with it (``head.npz``). Heads learned
on verified rows without tuning the encoder are voters of their own: ``embedding-head``
(:mod:`.embedding_head`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from .adapters import current_adapter
from .config import VoterConfig
from .encoders import EncoderVoter, row_products, shared_encoder
from .voters import Runtime, VoterLoadError

DEFAULT_TEMPERATURE = 30.0


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class EmbeddingVoter(EncoderVoter):
    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
        self.labels = list(labels)
        self.encoder = shared_encoder(config, runtime)
        self.head = current_adapter(runtime.package_root, config.name)
        if self.head is not None:
            weights = np.load(self.head / "head.npz", allow_pickle=False)
            meta = json.loads((self.head / "adapter.json").read_text(encoding="utf-8"))
            if meta["labels"] != self.labels:
                raise VoterLoadError(f"voter {config.name}: head labels {meta['labels']} differ")
            self.weights, self.bias = weights["weights"], weights["bias"]
        else:
            prototypes = config.options.get("prototypes", {})
            missing = [label for label in self.labels if not prototypes.get(label)]
            if missing:
                raise VoterLoadError(f"voter {config.name}: no prototype phrasings for {missing}")
            centres = np.stack(
                [
                    self.encoder.embed_phrasings(prototypes[label], runtime.cache).mean(axis=0)
                    for label in labels
                ]
            )
            self.prototypes = centres / np.linalg.norm(centres, axis=1, keepdims=True)
            self.temperature = float(config.options.get("temperature", DEFAULT_TEMPERATURE))

    @property
    def tokenizer(self):
        return self.encoder.tokenizer

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.embed(texts)

    def linear_head(self) -> tuple[np.ndarray, np.ndarray]:
        """(weights, bias) of the linear map from embeddings to label logits."""
        if self.head is not None:
            return self.weights, self.bias
        return self.temperature * self.prototypes, np.zeros(len(self.labels))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        embeddings = self.embed(texts)
        if self.head is not None:
            return softmax(row_products(embeddings, self.weights) + self.bias)
        return softmax(self.temperature * row_products(embeddings, self.prototypes))
