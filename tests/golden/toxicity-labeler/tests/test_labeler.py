"""Tests of this labeler: it runs on a few rows, writes the documented columns, and is deterministic."""

import csv
import importlib

MODULE = "toxicity_labeler"
LABELS = ("non-toxic", "toxic")
TEXT_COLUMN = "text"
VOTERS = ("toxic_bert", "local_model")
MIN_AGREEMENT = 1.0
SAMPLE_TEXTS = ("a kind word", "a rude word")


def label(tmp_path, name):
    source = tmp_path / "input.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", TEXT_COLUMN])
        writer.writerows([index, text] for index, text in enumerate(SAMPLE_TEXTS))
    output = tmp_path / name
    cli = importlib.import_module(MODULE + ".cli")
    assert cli.main([str(source), "--output", str(output), "--progress", "none"]) == 0
    with open(output, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_labels_every_row_with_the_documented_columns(tmp_path):
    rows = label(tmp_path, "labeled.csv")
    assert [row[TEXT_COLUMN] for row in rows] == list(SAMPLE_TEXTS)
    for row in rows:
        assert row["label"] in LABELS
        assert 0.0 <= float(row["confidence"]) <= 1.0
        agreement = float(row["agreement"])
        assert row["needs_review"] == ("true" if agreement < MIN_AGREEMENT else "false")
        for voter in VOTERS:
            assert row["label_" + voter] in LABELS
            assert 0.0 <= float(row["prob_" + voter]) <= 1.0


def test_is_deterministic(tmp_path):
    assert label(tmp_path, "first.csv") == label(tmp_path, "second.csv")
