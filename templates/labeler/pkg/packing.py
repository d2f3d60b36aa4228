"""How texts are batched for a model pass, so that a text's outputs never depend on its batch.

A text runs padded to a length decided by its own token count (:func:`padded_length`), in
batches of texts of that same length only. On CPU the kernels' results for a token depend on
the shape they run at, not only on the token: attention reduces over the padded length in
vector lanes and blocks whose split moves with that length, and a float matmul of fewer than
12 rows takes another kernel. Measured on all-MiniLM-L6-v2 (issue 30): the same text alone and
beside longer batch-mates differed by ~2e-7 after the first attention in fp32; int8 rounds
each token's activations to 127 steps, so such a difference now and then flips a step, and
probabilities moved by up to 0.03. At one shape per text, every pass is bit-identical
whatever the batch, its size, its batch-mates, the engine or the thread count; the int8
matmuls themselves are exact (int32 sums).

Texts are no longer packed several to a row (as issue 19 had them): a packed row's length, and
where a text sits in it, depend on its row-mates, and no mask makes attention's reductions
forget that.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_TOKENS = 16
"""The shortest padded length: a pass then has at least 16 token rows, so every float matmul
of the encoder runs the kernel of large matrices (fewer than 12 rows take another, and
round otherwise; measured with torch 2.13 on x86-64)."""

HEAD_ROWS = 16
"""Rows a classifier head runs on at least (zero rows added to a small batch's first tokens),
for the same reason."""


def padded_length(tokens: int, longest: int) -> int:
    """The length a text of ``tokens`` tokens is always padded to (``longest``: the model's
    limit): steps of 8 tokens for tweets, coarser for long texts, where a step is a smaller
    share of the text."""
    step = 8 if tokens <= 64 else 16 if tokens <= 128 else 32 if tokens <= 256 else 64
    return min(max(MIN_TOKENS, -(-tokens // step) * step), max(longest, tokens))


def length_batches(lengths: Sequence[int], longest: int, batch_size: int) -> list[list[int]]:
    """Positions of the texts in batches of at most ``batch_size``, each batch holding texts of
    one padded length only (shortest first; within a length, in input order)."""
    groups: dict[int, list[int]] = {}
    for index, tokens in enumerate(lengths):
        groups.setdefault(padded_length(tokens, longest), []).append(index)
    return [
        group[start : start + batch_size]
        for _, group in sorted(groups.items())
        for start in range(0, len(group), batch_size)
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


@dataclass(frozen=True)
class Family:
    head: Callable
    """(model, first-token states) -> logits."""


FAMILIES = {
    "BertForSequenceClassification": Family(_bert),
    "DistilBertForSequenceClassification": Family(_distilbert),
    "RobertaForSequenceClassification": Family(_first_token),
    "XLMRobertaForSequenceClassification": Family(_first_token),
    "ElectraForSequenceClassification": Family(_first_token),
}
"""Sequence classifiers whose head reads the first token's state: it runs on at least
:data:`HEAD_ROWS` rows (:func:`head_logits`). Others run their own head, on the batch's rows,
which is exact in int8 (integer sums) but not in fp32 for batches of fewer than 12 texts."""


def classifier_family(model) -> Family | None:
    return FAMILIES.get(type(model).__name__)


def head_logits(model, family: Family, inputs: dict):
    """Logits of a classifier of a known family: its encoder, then its head on the first
    tokens, padded with zero rows to :data:`HEAD_ROWS`."""
    import torch

    first = model.base_model(**inputs).last_hidden_state[:, 0]
    count = len(first)
    if count < HEAD_ROWS:
        first = torch.cat([first, first.new_zeros(HEAD_ROWS - count, first.shape[-1])])
    return family.head(model, first)[:count]
