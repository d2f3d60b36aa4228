"""Packed passes: several texts in one row, kept apart by the mask, give the padded outputs.

Tiny real models of each packed family (random weights, the tiny BERT's word-piece
tokenizer), and the rules that fall back to padded batches.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from templates.labeler.pkg import encoders, packing, transformer
from templates.labeler.pkg.config import VoterConfig
from templates.labeler.pkg.voters import Runtime
from tests.support.tiny_models import build_tokenizer

TEXTS = [
    "you are an idiot",
    "",
    "have a lovely day at the park with everyone you love",
    "idiot",
    "shut up you stupid loser, nobody wants to hear from you again today or ever",
    "what a moron",
    "thanks",
    "a friendly hello to everyone at the park today",
    "I hate you, go away",
    "x",
] * 3


def tiny_config(family: str, tokenizer):
    from transformers import (
        BertConfig,
        DistilBertConfig,
        ElectraConfig,
        RobertaConfig,
        XLMRobertaConfig,
    )

    common = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "num_labels": 3,
        "max_position_embeddings": 80,
    }
    layers = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    return {
        "bert": lambda: BertConfig(**common, **layers),
        "roberta": lambda: RobertaConfig(**common, **layers),
        "xlm-roberta": lambda: XLMRobertaConfig(**common, **layers),
        "electra": lambda: ElectraConfig(**common, **layers, embedding_size=16),
        "distilbert": lambda: DistilBertConfig(
            **common, dim=32, n_layers=2, n_heads=2, hidden_dim=64
        ),
        "bert-relative": lambda: BertConfig(
            **common, **layers, position_embedding_type="relative_key"
        ),
    }[family]()


FAMILIES = ["bert", "roberta", "xlm-roberta", "electra", "distilbert"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification

    root = tmp_path_factory.mktemp("packed-models")
    tokenizer = build_tokenizer(root / "tokenizer")
    for seed, family in enumerate([*FAMILIES, "bert-relative"]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(tiny_config(family, tokenizer))
        model.save_pretrained(root / family)
        for item in (root / "tokenizer").iterdir():
            shutil.copy(item, root / family / item.name)
    return root


def load(models: Path, family: str, batch_size: int = 32, device: str = "cpu"):
    config = VoterConfig(
        family,
        "hf-sequence-classifier",
        f"bundled:{family}",
        "r",
        {"LABEL_0": "a", "LABEL_1": "b", "LABEL_2": "c"},
    )
    return transformer.SequenceClassifierVoter(
        config, ("a", "b", "c"), Runtime(models, device, batch_size)
    )


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_packed_passes_give_the_padded_probabilities(models, family, batch_size, monkeypatch):
    voter = load(models, family, batch_size)
    assert voter.family is not None, f"{family} should run packed"
    monkeypatch.setattr(transformer, "ENCODINGS", transformer.EncodingCache())
    packed = voter.predict(TEXTS)
    batches = transformer.ENCODINGS.batches_for(
        voter.tokenizer, TEXTS, voter.max_length, batch_size, True
    )
    texts_per_row = [len(set(row.tolist()) - {-1}) for b in batches for row in b.owners]
    # One text per row when a pass holds one (the model's own padding mask), else several.
    assert (max(texts_per_row) > 1) == (batch_size > 1)
    assert all(len(batch.rows) <= batch_size for batch in batches)
    voter.family = None
    padded = voter.predict(TEXTS)
    np.testing.assert_allclose(packed, padded, atol=1e-5)
    assert packed.argmax(axis=1).tolist() == padded.argmax(axis=1).tolist()
    # A text's probabilities do not depend on what it was packed with.
    voter.family = packing.FAMILIES[type(voter.model).__name__]
    alone = np.concatenate([voter.predict([text]) for text in TEXTS[:10]])
    np.testing.assert_allclose(alone, packed[:10], atol=1e-5)


def test_packed_passes_in_int8_stay_with_the_padded_ones(models):
    voter = load(models, "roberta")
    transformer.use_int8(voter)
    packed = voter.predict(TEXTS)
    voter.family = None
    np.testing.assert_allclose(packed, voter.predict(TEXTS), atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_packed_encoder_gives_the_padded_embeddings_and_features(models, family):
    config = VoterConfig(family, "embedding", f"bundled:{family}", "r", {})
    encoder = encoders.Encoder(config, Runtime(models, "cpu", 4), None)
    assert encoder.offset is not None, f"{family} should run packed"
    packed = encoder.compute(TEXTS)
    encoder.offset = None
    padded = encoder.compute(TEXTS)
    assert packed.shape == padded.shape == (len(TEXTS), 2 * encoder.dimension)
    np.testing.assert_allclose(packed, padded, atol=1e-5)


def test_models_that_cannot_be_packed_run_padded(models, monkeypatch):
    assert load(models, "bert-relative").family is None
    relative = VoterConfig("bert-relative", "embedding", "bundled:bert-relative", "r", {})
    assert encoders.Encoder(relative, Runtime(models, "cpu", 4), None).offset is None
    voter = load(models, "bert")
    assert packing.packed_head(voter.model, voter.tokenizer, "cuda") is None
    # The load-time check catches a family whose rules do not hold for a model.
    wrong = packing.Family(packing._bert, lambda model: 7)
    monkeypatch.setitem(packing.FAMILIES, "BertForSequenceClassification", wrong)
    assert packing.packed_head(voter.model, voter.tokenizer, "cpu") is None
    assert load(models, "bert").family is None
    monkeypatch.setitem(packing.ENCODERS, "BertModel", lambda model: 7)
    plain = VoterConfig("bert", "embedding", "bundled:bert", "r", {})
    assert encoders.Encoder(plain, Runtime(models, "cpu", 4), None).offset is None


def test_rows_hold_every_text_once_within_the_row_and_batch_limits():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 60, 200).tolist() + [300, 129, 128, 2, 2]
    for most in (1, 3, 32):
        rows = packing.pack_rows(lengths, most)
        assert sorted(text for row in rows for text in row) == list(range(len(lengths)))
        for row in rows:
            assert len(row) <= most
            assert len(row) == 1 or sum(lengths[text] for text in row) <= packing.ROW_TOKENS
        assert rows == packing.pack_rows(lengths, most)
    # Best fit fills rows: few more rows than the tokens need.
    rows = packing.pack_rows(lengths[:200], 32)
    assert len(rows) <= sum(lengths[:200]) / packing.ROW_TOKENS + 3


def test_passes_of_packed_rows_hold_at_most_the_batch_size_in_texts():
    lengths = [120, 120, 125, 126, 128]
    sizes = [4, 3, 4, 4, 2]
    bounds = packing.batch_bounds(lengths, 8, sizes)
    texts = [sum(sizes[start:end]) for start, end in bounds]
    assert sum(texts) == sum(sizes) and max(texts) <= 8 and len(bounds) == 3
    # A row holding more than the batch size still runs (alone).
    assert packing.batch_bounds([50], 2, [5]) == [(0, 1)]
