"""The ``embedding-head`` voter: a softmax-regression head over a sentence encoder's
features, learned from verified rows (:mod:`.learn`).

Its spec names the encoder (``source``, ``revision``, option ``max_length``) as an
``embedding`` voter does; over the same encoder the two share one loaded model and each
slice's features (:mod:`.encoders`). The head reads the encoder's upper-layer features
(option ``view``: ``upper-layers``, the default, or ``embedding`` for the last layer's
embedding); a stored version names the view it was fitted on. Its label map is empty: it
predicts the task's labels. Until a version is installed it abstains and loads no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import VoterConfig
from .encoders import (
    EMBEDDING,
    UPPER_LAYERS,
    VIEWS,
    Encoder,
    EncoderVoter,
    row_products,
    shared_encoder,
    view,
)
from .learned import LearnedVoter, uniform
from .voters import Runtime, VoterLoadError


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def head_view(options: dict) -> str:
    """The encoder's view a head reads (option ``view``)."""
    name = options.get("view", UPPER_LAYERS)
    if name not in VIEWS:
        raise ValueError(f"view must be one of {list(VIEWS)}, not {name!r}")
    return name


def head_probabilities(arrays: dict[str, np.ndarray], embeddings: np.ndarray) -> np.ndarray:
    """(rows, labels) probabilities of a head (``weights`` (labels, dim), ``bias``)."""
    if len(embeddings) == 0:
        return np.zeros((0, arrays["bias"].shape[0]))
    return softmax(row_products(embeddings, arrays["weights"]) + arrays["bias"])


class EmbeddingHeadVoter(EncoderVoter, LearnedVoter):
    """Abstains until a version is installed; then the head over the shared encoder."""

    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.load_stored(config, labels, runtime.package_root)
        self.encoder: Encoder | None = None
        if self.stored is not None:
            shape = self.stored.arrays.get("weights", np.zeros((0, 0))).shape
            if shape[0] != len(self.labels) or "bias" not in self.stored.arrays:
                raise VoterLoadError(f"voter {config.name}: learned head has shape {shape}")
            # A version from before views were recorded was fitted on the embedding.
            self.view = self.stored.record.get("hyper", {}).get("view", EMBEDDING)
            if self.view not in VIEWS:
                raise VoterLoadError(f"voter {config.name}: learned head reads view {self.view!r}")
            self.encoder = shared_encoder(config, runtime)
            if self.encoder.dimension != shape[1]:
                raise VoterLoadError(
                    f"voter {config.name}: learned head is for {shape[1]}-dimensional "
                    f"features, the encoder gives {self.encoder.dimension}"
                )

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if self.stored is None or self.encoder is None:
            return uniform(len(texts), len(self.labels))
        features = view(self.encoder.features(texts), self.view)
        return head_probabilities(self.stored.arrays, features)
