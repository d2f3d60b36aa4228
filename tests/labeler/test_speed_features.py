"""Speed features of the labeler on tiny real models: shared tokenization, batching, int8.

Also the CLI's side of them: ``--quantize``, its decisions as log lines or JSON
events, and a progress bar that shows rows/s.
"""

from __future__ import annotations

import copy
import csv
import importlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from templates.labeler.pkg import transformer
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.engine import Labeler, label_file
from templates.labeler.pkg.voters import Runtime
from tests.support.packages import bundle_labeler
from tests.support.tiny_models import TOXIC_EXAMPLES

LABELS = ("non-toxic", "toxic")
TEXTS = [text for text, _ in TOXIC_EXAMPLES] + [
    "you are so stupid and I hate this",
    "a friendly hello to everyone at the park today",
    "idiot",
    "",
]


@pytest.fixture(scope="module")
def models(tiny_models, tmp_path_factory) -> Path:
    """Three voters under one folder: two share a tokenizer, the third has its own."""
    import torch
    from transformers import AutoModelForSequenceClassification

    root = tmp_path_factory.mktemp("speed-models")
    plain = tiny_models.get({0: "non-toxic", 1: "toxic"}, seed=1, train_examples=TOXIC_EXAMPLES)
    shutil.copytree(plain, root / "plain")
    shutil.copytree(plain, root / "shouty")
    shouty = AutoModelForSequenceClassification.from_pretrained(root / "plain")
    shouty.config.id2label = {0: "NOT_OFFENSIVE", 1: "OFFENSIVE"}
    shouty.config.label2id = {"NOT_OFFENSIVE": 0, "OFFENSIVE": 1}
    with torch.no_grad():
        shouty.classifier.bias.add_(torch.tensor([0.3, -0.3]))
    shouty.save_pretrained(root / "shouty")
    # As bert-base and distilbert-base: one tokenizer.json, different model inputs.
    config_file = root / "shouty" / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    config_file.write_text(json.dumps(config), encoding="utf-8")
    shutil.copytree(plain, root / "cased")
    # Same vocabulary, different tokenizer.json: it no longer lowercases.
    tokenizer_file = root / "cased" / "tokenizer.json"
    tokenizer = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    tokenizer["normalizer"]["lowercase"] = False
    tokenizer_file.write_text(json.dumps(tokenizer), encoding="utf-8")
    return root


def voter(name: str, label_map: dict[str, str]) -> VoterConfig:
    return VoterConfig(name, "hf-sequence-classifier", f"bundled:{name}", "r", label_map)


VOTERS = (
    voter("plain", {"non-toxic": "non-toxic", "toxic": "toxic"}),
    voter("shouty", {"NOT_OFFENSIVE": "non-toxic", "OFFENSIVE": "toxic"}),
    voter("cased", {"non-toxic": "non-toxic", "toxic": "toxic"}),
)


def make_labeler(models: Path, quantize: str = "none", batch_size: int = 4) -> Labeler:
    spec = LabelerSpec("speed-labeler", "label toxicity", LABELS, "text", 1.0, VOTERS)
    return Labeler(spec, Runtime(models, "cpu", batch_size), quantize=quantize)


def write_table(path: Path, rows: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([index, TEXTS[index % len(TEXTS)]] for index in range(rows))
    return path


def test_voters_with_the_same_tokenizer_tokenize_the_texts_once(models, monkeypatch):
    labeler = make_labeler(models)
    separate = []
    for alone in labeler.voters:
        monkeypatch.setattr(transformer, "ENCODINGS", transformer.EncodingCache())
        separate.append(alone.predict(TEXTS))
    encoded: list[str] = []

    def counting(tokenizer, *args):
        encoded.append(transformer.tokenizer_fingerprint(tokenizer))
        return original(tokenizer, *args)

    original = transformer.encode_batches
    monkeypatch.setattr(transformer, "encode_batches", counting)
    monkeypatch.setattr(transformer, "ENCODINGS", transformer.EncodingCache())
    shared = [v.predict(list(TEXTS)) for v in labeler.voters]

    plain, shouty, cased = (v.tokenizer for v in labeler.voters)
    assert "token_type_ids" in shouty.model_input_names
    assert "token_type_ids" not in plain.model_input_names
    assert transformer.tokenizer_fingerprint(plain) == transformer.tokenizer_fingerprint(shouty)
    assert transformer.tokenizer_fingerprint(plain) != transformer.tokenizer_fingerprint(cased)
    assert len(encoded) == 2 and len(set(encoded)) == 2
    for alone, together in zip(separate, shared, strict=True):
        np.testing.assert_array_equal(alone, together)


def test_new_texts_are_tokenized_afresh(models):
    labeler = make_labeler(models)
    plain = labeler.voters[0]
    first = plain.predict(["you are an idiot", "have a lovely day"])
    second = plain.predict(["have a lovely day", "you are an idiot"])
    np.testing.assert_array_equal(first, second[::-1])


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_matches_the_tokenizers_own(models, side):
    tokenizer = make_labeler(models).voters[0].tokenizer
    tokenizer.padding_side = side
    encoded = dict(tokenizer(TEXTS, truncation=True, max_length=64))
    rows = [3, 0, 11, 13]
    ours = transformer.pad_batch(tokenizer, encoded, rows).features
    theirs = tokenizer.pad(
        {k: [v[i] for i in rows] for k, v in encoded.items()}, return_tensors="np"
    )
    assert sorted(ours) == sorted(theirs.keys())
    for name, array in ours.items():
        np.testing.assert_array_equal(array, theirs[name])


def test_sorted_padded_batches_give_what_one_text_at_a_time_gives(models):
    import torch

    plain = make_labeler(models, batch_size=3).voters[0]
    batched = plain.predict(TEXTS)
    with torch.inference_mode():
        one_by_one = np.concatenate(
            [
                plain.model(**plain.tokenizer([text], return_tensors="pt")).logits.softmax(-1)
                for text in TEXTS
            ]
        )
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)
    assert batched.argmax(axis=1).tolist() == one_by_one.argmax(axis=1).tolist()


def test_int8_linear_layers_stay_close_to_fp32_despite_an_outlier_token():
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32)
    quantized = transformer.int8_copy(torch.nn.Sequential(layer))
    inputs = torch.randn(2, 5, 64)
    inputs[0, 0] *= 1000  # one token far out of range, as [SEP] often is
    with torch.inference_mode():
        exact, approximate = layer(inputs), quantized(inputs)
    assert approximate.shape == exact.shape
    error = (approximate - exact).norm(dim=-1) / exact.norm(dim=-1)
    assert error.max() < 0.02


def quantized_layers(model) -> int:
    return sum(type(module).__name__ == "Int8Linear" for module in model.modules())


def test_int8_mode_quantizes_every_transformer_voter_and_stays_close_to_fp32(models):
    fp32 = make_labeler(models)
    int8 = make_labeler(models, quantize="int8")

    decisions = int8.settle_precision([])

    assert [(d.voter, d.int8) for d in decisions] == [(v.name, True) for v in VOTERS]
    assert all(quantized_layers(v.model) > 0 for v in int8.voters)
    assert int8.precisions() == {v.name: "int8" for v in VOTERS}
    for full, reduced in zip(fp32.voters, int8.voters, strict=True):
        # Probabilities, not labels: a tiny model has rows on the decision boundary.
        np.testing.assert_allclose(reduced.predict(TEXTS), full.predict(TEXTS), atol=0.05)


def flip_labels(model):
    """A copy of a classifier that swaps its two labels: int8 that went badly wrong."""
    flipped = copy.deepcopy(model)
    flipped.classifier.weight.data = flipped.classifier.weight.data.flip(0)
    flipped.classifier.bias.data = flipped.classifier.bias.data.flip(0)
    return flipped


def test_auto_keeps_int8_only_for_voters_whose_labels_agree_with_fp32(
    models, tmp_path, monkeypatch
):
    labeler = make_labeler(models, quantize="auto")
    broken = labeler.voters[1].model
    # Stand-ins for int8 whose agreement is known: exact for two voters, wrong for one.
    monkeypatch.setattr(
        transformer,
        "int8_copy",
        lambda model, in_place=False: (
            flip_labels(model) if model is broken else copy.deepcopy(model)
        ),
    )
    table = write_table(tmp_path / "input.csv", 120)
    decisions = []

    label_file(
        labeler,
        table,
        tmp_path / "labeled.csv",
        text_column="text",
        chunk_size=50,
        min_agreement=1.0,
        on_int8=decisions.append,
    )

    by_voter = {decision.voter: decision for decision in decisions}
    assert by_voter["plain"].int8 and by_voter["plain"].agreement == 1.0
    assert by_voter["plain"].rows == 50
    assert not by_voter["shouty"].int8 and by_voter["shouty"].agreement < 0.5
    assert labeler.voters[1].model is broken
    assert labeler.precisions() == {"plain": "int8", "shouty": "fp32", "cased": "int8"}


def test_auto_stays_fp32_when_the_file_is_too_small_to_gain(models, tmp_path):
    labeler = make_labeler(models, quantize="auto")
    decisions = []
    label_file(
        labeler,
        write_table(tmp_path / "input.csv", 20),
        tmp_path / "labeled.csv",
        text_column="text",
        chunk_size=100,
        min_agreement=1.0,
        on_int8=decisions.append,
    )
    assert [(d.int8, d.agreement) for d in decisions] == [(False, None)] * 3
    assert quantized_layers(labeler.voters[0].model) == 0


def test_parts_labeled_at_another_precision_are_discarded(models, tmp_path):
    table = write_table(tmp_path / "input.csv", 30)
    run = dict(text_column="text", chunk_size=10, min_agreement=1.0)

    def stop(done: int, total: int) -> None:
        if done >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        label_file(make_labeler(models), table, tmp_path / "out.csv", on_progress=stop, **run)
    assert (tmp_path / "out.csv.parts" / "part-000000.jsonl").exists()

    int8 = label_file(make_labeler(models, quantize="int8"), table, tmp_path / "out.csv", **run)
    assert int8.resumed_chunks == 0 and int8.rows == 30


@pytest.fixture(scope="module")
def cli(models, tmp_path_factory):
    """A labeler package like a rendered one, with the three tiny voters bundled."""
    root = tmp_path_factory.mktemp("package")
    voters = [(v.name, v.kind, v.label_map) for v in VOTERS]
    bundle_labeler(root, "speed_labeler", models, voters, LABELS)
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("speed_labeler.cli")
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.startswith("speed_labeler")]:
            del sys.modules[name]


def events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_cli_reports_int8_decisions_as_json_events(cli, tmp_path, capsys):
    table = write_table(tmp_path / "input.csv", 120)
    args = [str(table), "-o", str(tmp_path / "out.csv"), "--chunk-size", "50", "--progress", "json"]
    args += ["--quantize", "auto"]

    assert cli.main(args) == 0

    stream = events(capsys.readouterr().err)
    quantize = [event for event in stream if event["event"] == "quantize"]
    assert [(event["voter"], event["rows"]) for event in quantize] == [(v.name, 50) for v in VOTERS]
    for event in quantize:
        assert event["int8"] == (event["agreement"] >= 0.995)
        assert event["precision"] == ("int8" if event["int8"] else "fp32")
    progress = [event for event in stream if event["event"] == "progress"]
    assert progress[-1]["rows"] == 120 and progress[-1]["rows_per_s"] > 0
    assert stream[-1]["event"] == "done"


def test_cli_quantize_none_logs_nothing_and_labels_in_fp32(cli, tmp_path, capsys):
    table = write_table(tmp_path / "input.csv", 120)
    args = [str(table), "-o", str(tmp_path / "none.csv"), "--chunk-size", "50"]
    assert cli.main(args + ["--quantize", "none", "--progress", "json"]) == 0
    assert not [e for e in events(capsys.readouterr().err) if e["event"] == "quantize"]


@pytest.mark.slow
def test_cli_progress_bar_shows_rows_per_second(cli, tmp_path, capsys):
    table = write_table(tmp_path / "input.csv", 120)
    args = [str(table), "-o", str(tmp_path / "out.csv"), "--chunk-size", "50"]

    assert cli.main(args + ["--progress", "bar", "--quantize", "auto"]) == 0

    err = capsys.readouterr().err
    # The share is the rows where int8 and fp32 agree, whatever was chosen.
    line = (
        r"voter plain: (int8|fp32) \(int8 labels agree with fp32 on ([\d.]+)% of 50 rows, "
        r"(at least|below the) 99.5% needed\)"
    )
    shown = re.search(line, err)
    assert shown is not None
    assert (shown[1] == "int8") == (float(shown[2]) >= 99.5) == (shown[3] == "at least")
    assert "labeling: 100%" in err and " rows/s]" in err
    assert "labeled 120 rows" in err


def test_cli_refuses_int8_on_cuda(cli, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "resolve_device", lambda requested: "cuda")
    table = write_table(tmp_path / "input.csv", 5)
    args = [str(table), "-o", str(tmp_path / "out.csv"), "--quantize", "int8"]
    assert cli.main(args) == 2
    assert "--quantize int8 runs on CPU only" in capsys.readouterr().err
