"""The output contract: the added columns, and flags read back from every output format."""

from __future__ import annotations

import pytest

from templates.labeler.pkg.columns import (
    NEEDS_REVIEW,
    added_columns,
    arrow_type,
    input_renames,
    read_flag,
)
from templates.labeler.pkg.tabular import TableWriter, iter_chunks


def test_added_columns_are_the_result_then_each_voters_label_and_probability():
    assert added_columns(["roberta", "vader"]) == [
        "label",
        "confidence",
        "agreement",
        "needs_review",
        "label_roberta",
        "prob_roberta",
        "label_vader",
        "prob_vader",
    ]


def test_clashing_input_columns_are_renamed_without_taking_another_name():
    renames = input_renames(["label", "label_input", "text"], added_columns(["a"]))
    assert renames == {"label": "label_input_"}


def test_arrow_types_follow_the_columns():
    types = {column: arrow_type(column) for column in added_columns(["a"])}
    assert types == {
        "label": "string",
        "confidence": "float64",
        "agreement": "float64",
        "needs_review": "bool",
        "label_a": "string",
        "prob_a": "float64",
    }


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_flags_read_back_as_written_in_every_output_format(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    path = tmp_path / f"labeled{suffix}"
    with TableWriter(path, ["text", NEEDS_REVIEW]) as writer:
        writer.write([{"text": "a", NEEDS_REVIEW: True}, {"text": "b", NEEDS_REVIEW: False}])
    rows = [row for chunk in iter_chunks(path, 10) for row in chunk]
    assert [read_flag(row[NEEDS_REVIEW]) for row in rows] == [True, False]


@pytest.mark.parametrize("value", ["1", "0", "True", "yes", "", None, 1])
def test_a_flag_the_labeler_does_not_write_is_refused(value):
    with pytest.raises(ValueError, match="not a flag the labeler writes"):
        read_flag(value)
