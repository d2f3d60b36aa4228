"""Hugging Face sequence classifiers as voters, and batching shared by transformer voters."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .config import VoterConfig
from .voters import Runtime, label_map_matrix, model_location, to_task_probabilities


def max_length(config: VoterConfig, model, tokenizer) -> int:
    return int(
        min(
            config.options.get("max_length", 512),
            getattr(model.config, "max_position_embeddings", 512),
            tokenizer.model_max_length,
        )
    )


def run_batches(
    tokenizer, texts: Sequence[str], length: int, runtime: Runtime, forward: Callable
) -> np.ndarray:
    """``forward(batch)`` over length-sorted, dynamically padded batches, in input order."""
    import torch

    encoded = tokenizer(list(texts), truncation=True, max_length=length)
    features = list(encoded.keys())
    # Length-sorted batches pad each batch only to its own longest text.
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    results: np.ndarray | None = None
    with torch.inference_mode():
        for start in range(0, len(order), runtime.batch_size):
            rows = order[start : start + runtime.batch_size]
            batch = tokenizer.pad(
                {name: [encoded[name][i] for i in rows] for name in features},
                return_tensors="pt",
            )
            output = forward(batch.to(runtime.device)).float().cpu().numpy()
            if results is None:
                results = np.zeros((len(texts), output.shape[1]))
            results[rows] = output
    return results if results is not None else np.zeros((0, 0))


def load_transformer(config: VoterConfig, runtime: Runtime, auto_class: str):
    """Tokenizer and model from safetensors, never running remote code."""
    import torch
    import transformers

    location, revision = model_location(config, runtime.package_root)
    load = {"revision": revision, "trust_remote_code": False}
    tokenizer = transformers.AutoTokenizer.from_pretrained(location, **load)
    dtype = torch.bfloat16 if runtime.device == "cuda" else torch.float32
    model = getattr(transformers, auto_class).from_pretrained(
        location, use_safetensors=True, dtype=dtype, **load
    )
    model.to(runtime.device).eval()
    return tokenizer, model


class SequenceClassifierVoter:
    """A Hugging Face sequence classifier, loaded from safetensors without remote code."""

    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
        self.tokenizer, self.model = load_transformer(
            config, runtime, "AutoModelForSequenceClassification"
        )
        id2label = self.model.config.id2label
        model_labels = [id2label[index] for index in range(len(id2label))]
        self.matrix = label_map_matrix(model_labels, config.label_map, labels)
        self.max_length = max_length(config, self.model, self.tokenizer)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        probabilities = run_batches(
            self.tokenizer,
            texts,
            self.max_length,
            self.runtime,
            lambda batch: self.model(**batch).logits.softmax(dim=-1),
        )
        return to_task_probabilities(probabilities, self.matrix)
