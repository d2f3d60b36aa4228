"""How texts are batched for a model pass: padded batches cut by length, and several short
texts in one row of a pass, kept apart by the attention mask.

Padding costs a CPU as much as text: a batch of unrelated texts (the service's, gathered
from concurrent requests) padded to its longest wastes much of each pass. Packed, texts sit
end to end in rows of at most :data:`ROW_TOKENS` tokens; each token attends only to its own
text (a block-diagonal mask), positions restart at each text, and the classifier reads each
text's first token. The outputs are those of the padded pass to float rounding; each voter
checks this on its own model when it loads (:func:`packed_head`) and runs padded otherwise.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

ROW_TOKENS = 128
"""Longest packed row. Attention over a packed row costs its length squared, so rows stay
short: on a 2-core CPU with three base-size models, 32 shuffled tweets (36 tokens on
average) ran at 0.92-1.00 of the rate of a length-sorted file in rows of 96-128 tokens,
0.65 in rows of 512, and 0.77-0.81 padded (BENCHMARKS.md, issue 19)."""


PASS_OVERHEAD = 1.3
"""What one forward pass costs beyond its padded tokens, in rows of its length. Measured on a
2-core CPU with three base-size models: 4-row batches ran at 0.78-0.82 of the rate of 32-row
ones (the same sorted texts), which an overhead of 1.3 rows per pass reproduces; 1.3 to 4
gave the same service throughput, larger values pad more (BENCHMARKS.md, issue 19)."""


def batch_bounds(
    lengths: Sequence[int], batch_size: int, sizes: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """[start, end) of each batch over rows sorted by ``lengths`` (ascending), at most
    ``batch_size`` texts each (``sizes``: texts per row, 1 each unless given; packed rows
    hold several), cut where the padded tokens plus each pass's overhead
    (:data:`PASS_OVERHEAD`) are least (dynamic programming; a batch's longest row is its
    last). Over a whole file's sorted chunk neighbours have nearly equal lengths, so batches
    stay full; a few rows of mixed lengths run as several tighter batches instead of one
    padded to its longest row."""
    count = len(lengths)
    sizes = [1] * count if sizes is None else sizes
    best = [0.0] + [float("inf")] * count
    cut = [0] * (count + 1)
    for end in range(1, count + 1):
        longest = lengths[end - 1]
        texts = 0
        for start in range(end - 1, -1, -1):
            texts += sizes[start]
            if texts > batch_size and start < end - 1:
                break
            cost = best[start] + longest * (end - start + PASS_OVERHEAD)
            if cost <= best[end]:  # on a tie, the longer batch
                best[end], cut[end] = cost, start
    bounds = []
    end = count
    while end > 0:
        bounds.append((cut[end], end))
        end = cut[end]
    return bounds[::-1]


@dataclass(frozen=True)
class PackedBatch:
    rows: list[int]
    """Positions of the batch's texts in the input, in the order of ``firsts``."""
    features: dict[str, np.ndarray]
    """Model inputs, (packed rows, longest) int64 each: the texts end to end, then padding."""
    positions: np.ndarray
    """Each token's position within its own text, (packed rows, longest)."""
    firsts: np.ndarray
    """(texts, 2): packed row and column of each text's first token."""
    owners: np.ndarray
    """Which text (its place in ``rows``) each token belongs to, (packed rows, longest); -1
    padding."""


def pack_rows(lengths: Sequence[int], most: int, capacity: int = ROW_TOKENS) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows of at most ``capacity`` tokens and ``most``
    texts (a text longer than ``capacity`` gets a row of its own): best fit, longest first,
    so rows fill up and are few; deterministic for the same lengths."""
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    rows: list[list[int]] = []
    # Rows with room left, as (room, row number), sorted: the tightest that fits is found
    # by bisection.
    room: list[tuple[int, int]] = []
    for index in order:
        length = lengths[index]
        place = bisect.bisect_left(room, (length, -1))
        if place < len(room):
            left, row = room.pop(place)
            rows[row].append(index)
            left -= length
        else:
            rows.append([index])
            row, left = len(rows) - 1, capacity - length
        if left > 0 and len(rows[row]) < most:
            bisect.insort(room, (left, row))
    return rows


def pack_batch(encoded: dict[str, list], rows: list[list[int]], pad_id: int) -> PackedBatch:
    """The arrays of one pass over packed ``rows`` (lists of text positions in ``encoded``)."""
    sizes = [sum(len(encoded["input_ids"][text]) for text in row) for row in rows]
    shape = (len(rows), max(sizes))
    names = [name for name in encoded if name != "attention_mask"]
    features = {
        name: np.full(shape, pad_id if name == "input_ids" else 0, dtype=np.int64) for name in names
    }
    positions = np.zeros(shape, dtype=np.int64)
    owners = np.full(shape, -1, dtype=np.int64)
    texts, firsts = [], []
    for number, row in enumerate(rows):
        column = 0
        for text in row:
            length = len(encoded["input_ids"][text])
            span = slice(column, column + length)
            for name in names:
                features[name][number, span] = encoded[name][text]
            positions[number, span] = np.arange(length)
            owners[number, span] = len(texts)
            texts.append(text)
            firsts.append((number, column))
            column += length
    firsts_array = np.array(firsts, dtype=np.int64)
    return PackedBatch(texts, features, positions, firsts_array, owners)


def packed_batches(encoded: dict[str, list], pad_id: int, batch_size: int) -> list[PackedBatch]:
    """All texts of ``encoded`` packed into rows, the rows into passes of at most
    ``batch_size`` texts, cut as padded batches are (:func:`batch_bounds`, over the rows)."""
    lengths = [len(ids) for ids in encoded["input_ids"]]
    rows = sorted(
        pack_rows(lengths, batch_size), key=lambda row: sum(lengths[text] for text in row)
    )
    row_lengths = [sum(lengths[text] for text in row) for row in rows]
    sizes = [len(row) for row in rows]
    return [
        pack_batch(encoded, rows[start:end], pad_id)
        for start, end in batch_bounds(row_lengths, batch_size, sizes)
    ]


def _first_token(model, first):
    """Heads that read the first token's state themselves: give them that token alone."""
    return model.classifier(first[:, None, :])


def _bert(model, first):
    return model.classifier(model.dropout(model.bert.pooler(first[:, None, :])))


def _distilbert(model, first):
    import torch

    hidden = torch.relu(model.pre_classifier(first))
    return model.classifier(model.dropout(hidden))


def _from_zero(model) -> int:
    return 0


def _after_padding(model) -> int:
    return model.config.pad_token_id + 1


@dataclass(frozen=True)
class Family:
    head: Callable
    """(model, first-token states) -> logits."""
    offset: Callable
    """model -> the position id of a text's first token."""


FAMILIES = {
    "BertForSequenceClassification": Family(_bert, _from_zero),
    "DistilBertForSequenceClassification": Family(_distilbert, _from_zero),
    "RobertaForSequenceClassification": Family(_first_token, _after_padding),
    "XLMRobertaForSequenceClassification": Family(_first_token, _after_padding),
    "ElectraForSequenceClassification": Family(_first_token, _from_zero),
}
"""Sequence classifiers whose head reads the first token and whose positions are absolute
(RoBERTa's count from after its padding id)."""

ENCODERS = {
    "BertModel": _from_zero,
    "DistilBertModel": _from_zero,
    "RobertaModel": _after_padding,
    "XLMRobertaModel": _after_padding,
    "ElectraModel": _from_zero,
}
"""Bare encoders (sentence encoders' models) whose positions are absolute, by class: the
position id of a text's first token."""


def packed_states(model, offset: Callable, inputs: dict, batch: PackedBatch, **options):
    """The encoder's outputs over the packed rows of ``batch`` (``options``: the model's own,
    e.g. ``output_hidden_states``)."""
    import torch

    owners = torch.from_numpy(batch.owners)
    if len(batch.rows) == len(owners):  # one text per row (long texts): the model's own mask
        mask = (owners >= 0).long()
    else:
        # Each token sees its own text; padding sees padding only, so no row is all masked.
        allowed = owners[:, None, :, None] == owners[:, None, None, :]
        dtype = model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype)
        mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    positions = torch.from_numpy(batch.positions) + offset(model)
    return model.base_model(**inputs, attention_mask=mask, position_ids=positions, **options)


def packed_logits(model, family: Family, inputs: dict, batch: PackedBatch):
    """Logits for the texts of ``batch``, in the order of ``batch.rows``."""
    import torch

    states = packed_states(model, family.offset, inputs, batch)
    firsts = torch.from_numpy(batch.firsts)
    return family.head(model, states.last_hidden_state[firsts[:, 0], firsts[:, 1]])


def text_means(hidden, batch: PackedBatch):
    """The mean of each text's token states over packed ``hidden`` (rows, longest, dim),
    (texts, dim) in the order of ``batch.rows``."""
    import torch

    owners = torch.from_numpy(batch.owners)
    real = owners >= 0
    texts = owners[real]
    sums = torch.zeros((len(batch.rows), hidden.shape[-1]), dtype=hidden.dtype)
    sums.index_add_(0, texts, hidden[real])
    counts = torch.bincount(texts, minlength=len(batch.rows)).clamp(min=1)
    return sums / counts[:, None].to(hidden.dtype)


PROBE = (
    "a short one",
    "and a somewhat longer text, so that rows hold texts of different lengths",
    "x",
)


def _probe(model, tokenizer, device: str, compare: Callable) -> bool:
    """Whether a packed pass over :data:`PROBE` gives what the padded pass gives, by
    ``compare(padded inputs, packed inputs, packed batch)``."""
    import torch

    if device != "cpu" or tokenizer.pad_token_id is None:
        return False
    if getattr(model.config, "position_embedding_type", "absolute") != "absolute":
        return False
    encoded = dict(tokenizer(list(PROBE), return_token_type_ids=True))
    wanted = set(tokenizer.model_input_names)
    padded = tokenizer.pad(encoded, return_tensors="pt")
    batch = pack_batch(encoded, [[0, 1, 2]], tokenizer.pad_token_id)
    inputs = {
        name: torch.from_numpy(array)
        for name, array in batch.features.items()
        if name in wanted and name != "attention_mask"
    }
    try:
        with torch.inference_mode():
            return bool(compare({k: v for k, v in padded.items() if k in wanted}, inputs, batch))
    except (TypeError, ValueError, RuntimeError, AttributeError):
        return False


def packed_head(model, tokenizer, device: str) -> Family | None:
    """The packing rules for a sequence classifier, or None where it runs padded: on CUDA
    (padding is cheap there, and fused attention wants no dense mask), for models of other
    families, relative positions, or where a packed pass of a few texts does not give the
    padded pass's probabilities (checked here, once per load)."""
    import torch

    family = FAMILIES.get(type(model).__name__)
    if family is None:
        return None

    def same(padded, inputs, batch):
        expected = model(**padded).logits.softmax(-1)
        packed = packed_logits(model, family, inputs, batch).softmax(-1)
        return torch.allclose(packed, expected, atol=1e-5)

    return family if _probe(model, tokenizer, device, same) else None


def packed_encoder(model, tokenizer, device: str) -> Callable | None:
    """For a bare encoder, the position id of a text's first token when it runs packed, or
    None where it runs padded (as :func:`packed_head`: each text's token states, packed and
    padded, are compared once per load)."""
    import torch

    offset = ENCODERS.get(type(model).__name__)
    if offset is None:
        return None

    def same(padded, inputs, batch):
        expected = model(**padded).last_hidden_state
        packed = packed_states(model, offset, inputs, batch).last_hidden_state
        mask = padded["attention_mask"].bool()
        theirs = [expected[text][mask[text]] for text in range(len(PROBE))]
        owners = torch.from_numpy(batch.owners[0])
        ours = [packed[0][owners == text] for text in range(len(PROBE))]
        return all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ours, theirs, strict=True))

    return offset if _probe(model, tokenizer, device, same) else None
