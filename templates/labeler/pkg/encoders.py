"""Sentence encoders shared by the voters that embed texts.

An ``embedding`` voter (zero-shot) and an ``embedding-head`` voter (learned) over the
same encoder (same source, revision, adapter, maximum length and device) share one
loaded :class:`Encoder`, and it embeds each slice of texts once: the embeddings of the
texts it was last given are kept. Its precision is shared too: when a voter switches it
to int8 (or back), every voter using it follows.

One pass of the model gives each text two views, kept side by side (one array, cached as
one): its *embedding*, the mean over the tokens of the last layer's states, L2-normalised
(what the model was trained to give, and what the zero-shot prototypes compare); and its
*upper-layer features*, the same mean pooling of each of the upper half of the layers (the
last included), each L2-normalised, averaged and L2-normalised again. A linear head learned
from a few hundred rows does better on the second (:mod:`.embedding_head`): the last layer
of a sentence encoder is tuned for similarity of meaning, and the layers below it keep
more of the words and their tone.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .adapters import adapter_identity, current_adapter
from .config import VoterConfig
from .feature_cache import FeatureCache
from .transformer import load_transformer, max_length, run_batches
from .voters import Runtime

_shared: weakref.WeakValueDictionary = weakref.WeakValueDictionary()

EMBEDDING, UPPER_LAYERS = "embedding", "upper-layers"
VIEWS = (EMBEDDING, UPPER_LAYERS)
"""The views of a text an encoder computes, in the order they sit side by side."""


def view(features: np.ndarray, name: str) -> np.ndarray:
    """One view's columns of an encoder's (texts, views * dim) features."""
    if name not in VIEWS:
        raise ValueError(f"an encoder's view is one of {list(VIEWS)}, not {name!r}")
    width = features.shape[1] // len(VIEWS)
    start = VIEWS.index(name) * width
    return features[:, start : start + width]


def row_products(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``rows @ matrix.T``, each row's products summed on its own: numpy's matmul takes
    another kernel for a single row, whose sums round differently, so one text labeled
    alone would not get the answer it gets in a batch."""
    return (rows[:, None, :] * matrix[None, :, :]).sum(axis=-1)


def precision_of(model) -> str:
    """``int8`` when the model computes in int8 (:func:`.transformer.int8_copy`), else its
    floating point format."""
    if any(hasattr(module, "weight_int8") for module in model.modules()):
        return "int8"
    dtype = str(next(model.parameters()).dtype)
    return "bf16" if "bfloat16" in dtype else "fp32"


class Encoder:
    """A loaded sentence encoder and the embeddings of the texts it was last given."""

    def __init__(self, config: VoterConfig, runtime: Runtime, adapter: Path | None) -> None:
        self.runtime = runtime
        self.tokenizer, self.model = load_transformer(config, runtime, "AutoModel")
        self.max_length = max_length(config, self.model, self.tokenizer)
        self.precision = precision_of(self.model)
        self.base = {
            "source": config.source,
            "revision": config.revision,
            "adapter": None if adapter is None else adapter_identity(adapter),
            "max_length": self.max_length,
            "device": runtime.device,
        }
        self.texts: tuple[str, ...] | None = None
        self.embeddings: np.ndarray | None = None
        self.forward_calls = 0
        """Batches run through the model: tests count them to see that a cache was used."""

    @property
    def identity(self) -> dict:
        """What decides the embeddings: the cache's key for them."""
        return {"encoder": self.base, "precision": self.precision, "views": list(VIEWS)}

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def set_model(self, model) -> None:
        """Swap the model (int8 or back) for every voter sharing this encoder."""
        self.model = model
        self.precision = precision_of(model)
        self.texts = self.embeddings = None

    def compute(self, texts: Sequence[str]) -> np.ndarray:
        """Both views of ``texts`` with one pass of the model, (texts, 2 * dim): the
        embedding, then the upper-layer features."""
        import torch

        def unit(vectors):
            return vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12)

        def pooled(inputs, batch):
            self.forward_calls += 1
            states = self.model(**inputs, output_hidden_states=True).hidden_states
            mask = inputs["attention_mask"].unsqueeze(-1).to(states[-1].dtype)

            def mean(hidden):
                return unit((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))

            layers = len(states) - 1  # states[0] is the embedding layer's output
            upper = unit(sum(mean(hidden) for hidden in states[layers // 2 :]))
            return torch.cat([mean(states[-1]), upper], dim=-1)

        return run_batches(self.tokenizer, texts, self.max_length, self.runtime, pooled)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        """Both views of ``texts`` (:meth:`compute`); the same texts again are not computed
        again."""
        current = tuple(texts)
        if self.texts != current or self.embeddings is None:
            self.remember(current, self.compute(current))
        assert self.embeddings is not None
        return self.embeddings

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (the last layer's view)."""
        return view(self.features(texts), EMBEDDING)

    def embed_phrasings(self, texts: Sequence[str], cache: FeatureCache | None) -> np.ndarray:
        """Embeddings of a few texts (prototypes' phrasings), through ``cache`` if given;
        they do not replace the slice's."""
        stored = None if cache is None else cache.get("embeddings", self.identity, texts)
        if stored is None:
            stored = self.compute(texts)
            if cache is not None:
                cache.put("embeddings", self.identity, texts, stored)
            stored = stored.astype(np.float32).astype(np.float64)
        return view(stored, EMBEDDING)

    def remember(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Hold ``embeddings`` as those of ``texts`` (computed here, or read from a cache)."""
        self.texts, self.embeddings = tuple(texts), np.asarray(embeddings, dtype=np.float64)


def shared_encoder(config: VoterConfig, runtime: Runtime) -> Encoder:
    """The encoder for ``config``'s model, loaded once per process while a voter holds it."""
    adapter = current_adapter(runtime.package_root, config.name)
    key = (
        str(runtime.package_root),
        config.source,
        config.revision,
        None if adapter is None else str(adapter),
        config.options.get("max_length"),
        runtime.device,
        runtime.batch_size,
    )
    encoder = _shared.get(key)
    if encoder is None:
        encoder = Encoder(config, runtime, adapter)
        _shared[key] = encoder
    return encoder


class EncoderVoter:
    """What voters over an :class:`Encoder` share: its model, as a transformer voter's.

    ``model`` is what int8 swaps (:func:`.transformer.use_int8`); here it swaps the shared
    encoder's.
    """

    encoder: Encoder | None

    @property
    def model(self):
        return None if self.encoder is None else self.encoder.model

    @model.setter
    def model(self, model) -> None:
        assert self.encoder is not None
        self.encoder.set_model(model)

    @property
    def precision(self) -> str | None:
        return None if self.encoder is None else self.encoder.precision
