"""Reading and writing tables: formats, encodings, malformed input, atomic writes."""

from __future__ import annotations

import json

import pytest

from templates.labeler.pkg import tabular
from templates.labeler.pkg.tabular import DataError, TableWriter, iter_chunks, read_columns


def rows_of(path, chunk_size=1000):
    return [row for chunk in iter_chunks(path, chunk_size) for row in chunk]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_round_trip_keeps_rows_columns_and_order(tmp_path, suffix):
    path = tmp_path / f"table{suffix}"
    rows = [{"id": str(i), "text": f'line "{i}",\twith, commas\nand newline'} for i in range(25)]
    with TableWriter(path, ["id", "text"]) as writer:
        writer.write(rows[:10])
        writer.write(rows[10:])
    assert read_columns(path) == ["id", "text"]
    assert rows_of(path, chunk_size=7) == rows
    assert [len(c) for c in iter_chunks(path, 7)] == [7, 7, 7, 4]


def test_csv_with_byte_order_mark_reads_clean_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefflabel,text\n1,hello\n".encode())
    assert read_columns(path) == ["label", "text"]
    assert rows_of(path) == [{"label": "1", "text": "hello"}]


def test_undecodable_bytes_are_one_line_error(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match="not valid UTF-8") as caught:
        rows_of(path)
    assert "\n" not in str(caught.value)


def test_ragged_csv_row_names_its_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("id,text\n1,ok\n2,too,many\n")
    with pytest.raises(DataError, match="line 3 has 3 fields"):
        rows_of(path)


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_columns(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("id,text\n")
    assert rows_of(header_only) == []


def test_jsonl_errors_and_columns_in_order_of_appearance(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n{"b": 2, "a": 3}\n')
    assert read_columns(path) == ["a", "b"]
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2 is not a JSON object"):
        rows_of(path)
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not JSON"):
        rows_of(path)


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        tabular.detect_format(tmp_path / "book.xlsx")


def test_aborted_writer_leaves_no_file(tmp_path):
    path = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with TableWriter(path, ["a"]) as writer:
            writer.write([{"a": 1}])
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_csv_writes_booleans_nulls_and_nested_values_readably(tmp_path):
    path = tmp_path / "values.csv"
    with TableWriter(path, ["flag", "missing", "nested"]) as writer:
        writer.write([{"flag": True, "missing": None, "nested": {"k": [1, 2]}}])
    assert rows_of(path) == [{"flag": "true", "missing": "", "nested": json.dumps({"k": [1, 2]})}]
