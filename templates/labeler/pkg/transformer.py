"""Hugging Face sequence classifiers as voters, and what transformer voters share.

Shared: batching (each text padded to a length decided by its own token count, in
batches of that length only, so a text's outputs never depend on its batch:
:mod:`.packing`), one tokenization per distinct tokenizer for the texts all voters are
given, and the int8 mode for CPU.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import VoterConfig
from .packing import classifier_family, head_logits, length_batches, padded_length
from .voters import (
    Runtime,
    Voter,
    VoterLoadError,
    label_map_matrix,
    model_location,
    to_task_probabilities,
)


def max_length(config: VoterConfig, model, tokenizer) -> int:
    return int(
        min(
            config.options.get("max_length", 512),
            getattr(model.config, "max_position_embeddings", 512),
            tokenizer.model_max_length,
        )
    )


_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides how the tokenizer encodes text.

    Two voters whose tokenizers have the same fingerprint (the same ``tokenizer.json``
    and padding) get identical encodings, so they can share one; each model then takes
    the inputs it names (``model_input_names``).
    """
    if tokenizer not in _fingerprints:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:  # no tokenizer.json to compare: shares with no other
            definition: Any = f"object-{id(tokenizer)}"
        else:
            definition = json.loads(backend.to_str())
            # Truncation and padding state change with each call; the arguments decide them.
            definition.pop("truncation", None)
            definition.pop("padding", None)
        identity = {
            "class": type(tokenizer).__name__,
            "backend": definition,
            "truncation_side": tokenizer.truncation_side,
            "padding_side": tokenizer.padding_side,
            "pad": [tokenizer.pad_token_id, tokenizer.pad_token_type_id],
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        _fingerprints[tokenizer] = digest
    return _fingerprints[tokenizer]


@dataclass(frozen=True)
class Batch:
    rows: list[int]
    """Positions of the batch's texts in the input."""
    features: dict[str, np.ndarray]
    """Padded model inputs, one (rows, padded length) int64 array each."""


def pad_batch(
    tokenizer, encoded: dict[str, list], rows: list[int], longest: int | None = None
) -> Batch:
    """The arrays ``tokenizer.pad`` gives at length ``longest`` (None: the longest row's),
    without its per-row Python overhead."""
    if longest is None:
        longest = max(len(encoded["input_ids"][row]) for row in rows)
    left = tokenizer.padding_side == "left"
    pad_values = {
        "input_ids": tokenizer.pad_token_id,
        "token_type_ids": tokenizer.pad_token_type_id,
        "attention_mask": 0,
        "special_tokens_mask": 1,
    }
    features = {}
    for name, values in encoded.items():
        array = np.full((len(rows), longest), pad_values.get(name, 0), dtype=np.int64)
        for position, row in enumerate(rows):
            sequence = values[row]
            if left:
                array[position, longest - len(sequence) :] = sequence
            else:
                array[position, : len(sequence)] = sequence
        features[name] = array
    return Batch(rows, features)


def encode_batches(tokenizer, texts: Sequence[str], length: int, batch_size: int) -> list[Batch]:
    """Tokenize, and batch texts of one padded length together (:mod:`.packing`)."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no padding token, so texts cannot be batched")
    # Every input any model could take: voters sharing these batches pick theirs.
    encoded = dict(
        tokenizer(
            list(texts),
            truncation=True,
            max_length=length,
            return_token_type_ids=True,
            return_attention_mask=True,
        )
    )
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return [
        pad_batch(tokenizer, encoded, rows, padded_length(lengths[rows[0]], length))
        for rows in length_batches(lengths, length, batch_size)
    ]


class EncodingCache:
    """The batches of the texts most recently given to the voters, per distinct tokenizer.

    The labeler gives every voter the same texts; voters whose tokenizers share a
    fingerprint tokenize them once. Only the latest texts are kept.
    """

    def __init__(self) -> None:
        self.texts: tuple[str, ...] = ()
        self.batches: dict[tuple[str, int, int], list[Batch]] = {}

    def batches_for(
        self, tokenizer, texts: Sequence[str], length: int, batch_size: int
    ) -> list[Batch]:
        current = tuple(texts)
        if current != self.texts:
            self.texts, self.batches = current, {}
        key = (tokenizer_fingerprint(tokenizer), length, batch_size)
        if key not in self.batches:
            self.batches[key] = encode_batches(tokenizer, current, length, batch_size)
        return self.batches[key]


ENCODINGS = EncodingCache()


def run_batches(
    tokenizer,
    texts: Sequence[str],
    length: int,
    runtime: Runtime,
    forward: Callable,
) -> np.ndarray:
    """``forward(inputs, batch)`` over batches of texts of one padded length, in input
    order."""
    import torch

    if not texts:
        return np.zeros((0, 0))
    batches = ENCODINGS.batches_for(tokenizer, texts, length, runtime.batch_size)
    wanted = set(tokenizer.model_input_names)
    cuda = runtime.device == "cuda"
    outputs = []
    with torch.inference_mode():
        for batch in batches:
            inputs = {
                name: torch.from_numpy(array)
                for name, array in batch.features.items()
                if name in wanted
            }
            if cuda:
                inputs = {
                    k: v.pin_memory().to("cuda", non_blocking=True) for k, v in inputs.items()
                }
            # Outputs stay on the device until the end: no synchronisation per batch.
            outputs.append(forward(inputs, batch))
        stacked = torch.cat(outputs).float().cpu().numpy()
    results = np.zeros(stacked.shape, dtype=stacked.dtype)
    results[[row for batch in batches for row in batch.rows]] = stacked
    return results.astype(np.float64)


def load_transformer(config: VoterConfig, runtime: Runtime, auto_class: str, adapters: bool = True):
    """Tokenizer and model from safetensors, never running remote code.

    With ``adapters``, the voter's promoted LoRA adapter (if any) is merged in.
    """
    import torch
    import transformers

    from .adapters import current_adapter, merge_adapter

    location, revision = model_location(config, runtime.package_root)
    load = {"revision": revision, "trust_remote_code": False}
    tokenizer = transformers.AutoTokenizer.from_pretrained(location, **load)
    dtype = torch.bfloat16 if runtime.device == "cuda" else torch.float32
    model = getattr(transformers, auto_class).from_pretrained(
        location, use_safetensors=True, dtype=dtype, **load
    )
    folder = current_adapter(runtime.package_root, config.name) if adapters else None
    if folder is not None:
        model = merge_adapter(model, folder)
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
        self.family = classifier_family(self.model)
        """How its head reads the first token (None: the model's own head runs)."""

    def logits(self, inputs, batch):
        if self.family is None:
            return self.model(**inputs).logits
        return head_logits(self.model, self.family, inputs)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        probabilities = run_batches(
            self.tokenizer,
            texts,
            self.max_length,
            self.runtime,
            lambda inputs, batch: self.logits(inputs, batch).softmax(dim=-1),
        )
        return to_task_probabilities(probabilities, self.matrix)


class Int8Unavailable(VoterLoadError):
    """This torch build cannot multiply int8 matrices on the CPU."""


def torch_model(voter: Voter) -> Any | None:
    """The torch model a transformer voter runs (``voter.model``), or None for other voters."""
    model = getattr(voter, "model", None)
    if model is None:
        return None
    import torch

    return model if isinstance(model, torch.nn.Module) else None


def int8_copy(model, in_place: bool = False):
    """A copy of ``model`` whose ``nn.Linear`` layers compute in int8 (``in_place``: ``model``
    itself, converted without a copy of its fp32 weights, when nothing needs them again).

    Weights are scaled per output channel and activations per token, so one outlier
    token does not cost the others their precision. (``torch.ao``'s dynamic
    quantization scales a whole batch at once: as fast, but on all-MiniLM-L6-v2 its
    labels agreed with fp32 far less often; it is also deprecated for removal.)
    """
    import torch

    try:
        torch._int_mm(torch.ones(1, 8, dtype=torch.int8), torch.ones(8, 8, dtype=torch.int8))
    except (AttributeError, RuntimeError) as error:
        raise Int8Unavailable(f"this torch build has no CPU int8 matmul ({error})") from error
    quantized = model if in_place else copy.deepcopy(model)
    linears = [(n, m) for n, m in quantized.named_modules() if isinstance(m, torch.nn.Linear)]
    for name, linear in linears:
        parent, _, child = name.rpartition(".")
        setattr(quantized.get_submodule(parent), child, _int8_linear_class()(linear))
    return quantized


@functools.cache
def _int8_linear_class() -> type:
    import torch

    class Int8Linear(torch.nn.Module):
        """``nn.Linear`` in int8: weights per output channel, activations per token."""

        def __init__(self, linear: torch.nn.Linear) -> None:
            super().__init__()
            weight = linear.weight.detach().float()
            scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
            quantized = torch.round(weight / scale[:, None]).to(torch.int8)
            self.register_buffer("weight_int8", quantized.t().contiguous())
            self.register_buffer("weight_scale", scale)
            bias = None if linear.bias is None else linear.bias.detach().float()
            self.register_buffer("bias", bias)
            self.out_features = linear.out_features

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            rows = inputs.reshape(-1, inputs.shape[-1])
            # Few passes over the activations: on CPU each costs about as much as the matmul.
            scale = torch.linalg.vector_norm(rows, float("inf"), dim=1, keepdim=True)
            scale = scale.clamp_(min=1e-12).div_(127)
            quantized = torch.div(rows, scale).round_().to(torch.int8)
            # int32 times the per-token scales: float in one pass.
            output = torch.mul(torch._int_mm(quantized, self.weight_int8), scale)
            if self.bias is None:
                output.mul_(self.weight_scale)
            else:
                torch.addcmul(self.bias, output, self.weight_scale, out=output)
            return output.reshape(*inputs.shape[:-1], self.out_features)

    return Int8Linear


@dataclass(frozen=True)
class Int8Decision:
    """Whether one voter runs in int8, and why."""

    voter: str
    int8: bool
    agreement: float | None
    """Share of sample rows where int8 and fp32 give the same label (None: not measured)."""
    rows: int
    """Sample rows the agreement was measured on."""
    reason: str


def use_int8(voter: Voter, keep_fp32: bool = False) -> None:
    """Swap a transformer voter's model for its int8 version: converted in place, unless
    ``keep_fp32`` (the fp32 model is still wanted: :func:`try_int8` may go back to it)."""
    model = torch_model(voter)
    voter.model = int8_copy(model, in_place=not keep_fp32)  # type: ignore[attr-defined]


def try_int8(
    voter: Voter, sample: Sequence[str], min_agreement: float
) -> tuple[Int8Decision, np.ndarray | None]:
    """Keep int8 for ``voter`` if its labels agree with fp32 on ``min_agreement`` of ``sample``;
    the decision, and the probabilities for ``sample`` of the model kept (None: none run)."""
    name = voter.config.name
    if not sample:
        return Int8Decision(name, False, None, 0, "too few rows for int8 to pay off"), None
    fp32_model = torch_model(voter)
    fp32 = voter.predict(sample)
    try:
        use_int8(voter, keep_fp32=True)
    except Int8Unavailable as error:
        return Int8Decision(name, False, None, 0, str(error)), fp32
    int8 = voter.predict(sample)
    agreement = float(np.mean(fp32.argmax(axis=1) == int8.argmax(axis=1)))
    measured = f"int8 labels agree with fp32 on {agreement:.1%} of {len(sample)} rows"
    if agreement >= min_agreement:
        reason = f"{measured}, at least {min_agreement:.1%} needed"
        return Int8Decision(name, True, agreement, len(sample), reason), int8
    voter.model = fp32_model  # type: ignore[attr-defined]
    reason = f"{measured}, below the {min_agreement:.1%} needed"
    return Int8Decision(name, False, agreement, len(sample), reason), fp32
