"""Reading and writing tables in chunks: CSV, TSV, JSON Lines and Parquet.

The format comes from the file's extension. Reading streams rows as plain
dicts, a chunk at a time, so memory stays flat for any file size. Writing goes
to a temporary sibling that is flushed to the disk and renamed over the target
only when complete, so a reader never sees half a file.

Text to label is made safe where it is read (:func:`safe_text`): a lone surrogate (which
JSON can carry and UTF-8 cannot) becomes U+FFFD and a NUL is dropped, so one poison text
cannot stop a run or fail a batch. Every other value is written as read: a JSON Lines line
that UTF-8 cannot hold is written with ASCII escapes, a CSV cell with backslash escapes.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .columns import flag_text

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}
Row = dict[str, Any]

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class DataError(ValueError):
    """A file cannot be read or written as a table; the message is one line for the user."""


_UNSAFE = re.compile("[\x00\ud800-\udfff]")
"""NUL, and UTF-16 surrogates: in a Python string a surrogate is always a lone one (a JSON
pair decodes to its one character), which no UTF-8 encoder or tokenizer takes."""


def safe_text(value: Any) -> tuple[str, bool]:
    """A text value as every consumer takes it ("" for a missing one), and whether it had to
    change: lone surrogates become U+FFFD, NULs are dropped."""
    text = "" if value is None else str(value)
    if _UNSAFE.search(text) is None:
        return text, False
    return _UNSAFE.sub(lambda found: "" if found.group() == "\x00" else "\ufffd", text), True


def unsafe_texts_note(count: int, where: str) -> str:
    """The one warning line for texts :func:`safe_text` changed."""
    plural = "s" if count != 1 else ""
    return (
        f"warning: {count} text{plural} in {where} held lone surrogates or NUL characters; "
        "labeled with those replaced by U+FFFD (surrogates) or dropped (NULs)"
    )


def json_line(record: Row) -> str:
    """One JSON Lines line: UTF-8 where it can be, ASCII escapes for a value that holds a
    lone surrogate (still the same JSON value)."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record)
    return line + "\n"


def detect_format(path: Path | str) -> str:
    """The table format of ``path``, from its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {known}")
    return FORMATS[suffix]


def read_columns(path: Path | str) -> list[str]:
    """Column names of a table, in file order (for JSON Lines: order of first appearance)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "parquet":
        return list(_parquet_file(path).schema_arrow.names)
    if fmt == "jsonl":
        columns: dict[str, None] = {}
        for chunk in iter_chunks(path, 10_000):
            for row in chunk:
                columns.update(dict.fromkeys(row))
        return list(columns)
    with _open_text(path) as handle:
        return _csv_header(path, csv.reader(handle, delimiter=_delimiter(fmt)))


def require_columns(path: Path | str, *names: str) -> list[str]:
    """The table's columns (:func:`read_columns`); a table that lacks one of ``names`` is
    refused (one line)."""
    columns = read_columns(path)
    missing = [name for name in names if name not in columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; columns are {columns}")
    return columns


def iter_chunks(path: Path | str, chunk_size: int) -> Iterator[list[Row]]:
    """Yield the rows of a table as lists of at most ``chunk_size`` dicts."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "parquet":
        for batch in _parquet_file(path).iter_batches(batch_size=chunk_size):
            yield batch.to_pylist()
        return
    rows = _iter_jsonl(path) if fmt == "jsonl" else _iter_csv(path, fmt)
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _open_text(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        # utf-8-sig drops a byte-order mark; strict errors make undecodable bytes a DataError.
        return open(path, encoding="utf-8-sig", errors="strict", newline="")
    except OSError as error:
        raise DataError(f"{path}: cannot open ({error.strerror})") from None


def _delimiter(fmt: str) -> str:
    return "\t" if fmt == "tsv" else ","


def _csv_header(path: Path, reader) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not valid UTF-8 text ({error.reason} in the header)") from None
    if len(set(header)) != len(header):
        duplicates = sorted({name for name in header if header.count(name) > 1})
        raise DataError(f"{path}: duplicate column names {duplicates}")
    return header


def _iter_csv(path: Path, fmt: str) -> Iterator[Row]:
    with _open_text(path) as handle:
        reader = csv.reader(handle, delimiter=_delimiter(fmt))
        header = _csv_header(path, reader)
        try:
            for values in reader:
                if not values:
                    continue
                if len(values) > len(header):
                    raise DataError(
                        f"{path}: line {reader.line_num} has {len(values)} fields "
                        f"but the header has {len(header)}"
                    )
                values += [""] * (len(header) - len(values))
                yield dict(zip(header, values, strict=True))
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path}: not valid UTF-8 text ({error.reason} after line {reader.line_num})"
            ) from None
        except csv.Error as error:
            raise DataError(f"{path}: malformed CSV at line {reader.line_num}: {error}") from None


def _iter_jsonl(path: Path) -> Iterator[Row]:
    with _open_text(path) as handle:
        line_number = 0
        try:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(
                        f"{path}: line {line_number} is not JSON ({error.msg})"
                    ) from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}: line {line_number} is not a JSON object")
                yield row
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path}: not valid UTF-8 text ({error.reason} after line {line_number})"
            ) from None


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError("Parquet files need pyarrow: pip install pyarrow") from None
    return pyarrow


def _parquet_file(path: Path):
    pyarrow = _pyarrow()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return pyarrow.parquet.ParquetFile(path)
    except pyarrow.ArrowException as error:
        raise DataError(f"{path}: not a readable Parquet file ({error})") from None


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return flag_text(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value


class TableWriter:
    """Write rows to ``path`` atomically, in the format its extension names.

    Rows go to a temporary file next to the target; :meth:`commit` renames it
    into place, :meth:`abort` deletes it. Used as a context manager it commits
    on success and aborts on an exception.
    """

    def __init__(self, path: Path | str, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.format = detect_format(self.path)
        self.columns = list(columns)
        self.rows_written = 0
        self._temporary = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet_writer = None
        self._parquet_schema = None
        self._handle = None
        if self.format in ("csv", "tsv", "jsonl"):
            # backslashreplace: a CSV cell copied from a JSON value with a lone surrogate
            # (JSON Lines lines escape theirs, :func:`json_line`).
            self._handle = open(
                self._temporary, "w", encoding="utf-8", errors="backslashreplace", newline=""
            )
        if self.format in ("csv", "tsv"):
            self._csv = csv.writer(self._handle, delimiter=_delimiter(self.format))
            self._csv.writerow(self.columns)

    def write(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        if self.format == "jsonl":
            for row in rows:
                record = {column: row.get(column) for column in self.columns}
                self._handle.write(json_line(record))
        elif self.format == "parquet":
            self._write_parquet(rows)
        else:
            self._csv.writerows([_csv_value(row.get(c)) for c in self.columns] for row in rows)
        self.rows_written += len(rows)

    def _write_parquet(self, rows: list[Row]) -> None:
        if not rows:
            return
        pyarrow = _pyarrow()
        records = [{column: row.get(column) for column in self.columns} for row in rows]
        if self._parquet_schema is None:
            inferred = pyarrow.Table.from_pylist(records).schema
            # A column that is all null in the first chunk is typed as text, not as null.
            self._parquet_schema = pyarrow.schema(
                [
                    pyarrow.field(f.name, pyarrow.string()) if pyarrow.types.is_null(f.type) else f
                    for f in inferred
                ]
            )
            self._parquet_writer = pyarrow.parquet.ParquetWriter(
                self._temporary, self._parquet_schema
            )
        try:
            table = pyarrow.Table.from_pylist(records, schema=self._parquet_schema)
        except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
            raise DataError(f"{self.path}: column types change between rows ({error})") from None
        self._parquet_writer.write_table(table)

    def _close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet_writer is not None:
            self._parquet_writer.close()
        elif self.format == "parquet":
            pyarrow = _pyarrow()
            schema = pyarrow.schema([pyarrow.field(c, pyarrow.string()) for c in self.columns])
            pyarrow.parquet.write_table(schema.empty_table(), self._temporary)

    def commit(self) -> Path:
        self._close()
        with open(self._temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(self._temporary, self.path)
        _sync_folder(self.path.parent)
        return self.path

    def abort(self) -> None:
        try:
            self._close()
        finally:
            self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _sync_folder(folder: Path) -> None:
    """Flush the rename to the disk, where the file system allows it."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
