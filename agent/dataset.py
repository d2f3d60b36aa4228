"""The agent's view of the input data, read with the labeler's own table code.

The agent validates and samples the input but never labels it: it reads
tables through the generated labeler's own ``tabular`` module (reached by
:mod:`agent.labeler_runtime`), so both agree on formats, encodings and row order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import UserInputError
from agent.labeler_runtime import DataError, tabular
from agent.state import DatasetInfo

READ_CHUNK = 10_000
TEXT_COLUMN_NAMES = ("text", "tweet", "comment", "review", "content", "sentence", "body", "message")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inspect_dataset(path: Path, text_column: str | None = None) -> DatasetInfo:
    """Validate the input file; every problem is a one-line :class:`UserInputError`."""
    path = Path(path)
    if not path.exists():
        raise UserInputError(f"{path}: no such file")
    if not path.is_file():
        raise UserInputError(f"{path}: not a file")
    try:
        fmt = tabular.detect_format(path)
        columns = tabular.read_columns(path)
        rows = sum(len(chunk) for chunk in tabular.iter_chunks(path, READ_CHUNK))
    except DataError as error:
        raise UserInputError(str(error)) from None
    if rows == 0:
        raise UserInputError(f"{path}: the file has no data rows")
    if text_column is not None and text_column not in columns:
        raise UserInputError(f"{path}: no column {text_column!r}; columns are {list(columns)}")
    return DatasetInfo(
        path=str(path.resolve()),
        format=fmt,
        columns=tuple(columns),
        rows=rows,
        sha256=file_sha256(path),
        size=path.stat().st_size,
    )


def check_unchanged(dataset: DatasetInfo, run_id: str) -> None:
    """Refuse an input file that is not the one the run started with, in one line naming what
    changed: verdicts are joined to rows by position, so a sorted, appended or edited file
    would put every verified label on another row."""
    path = Path(dataset.path)
    where = f"{path} changed since run {run_id} started"
    advice = "its verdicts would land on other rows; restore the file or start a new run"
    try:
        size = path.stat().st_size
    except OSError as error:
        raise UserInputError(
            f"{path}: the input of run {run_id} is not there ({error.strerror}); "
            "restore the file or start a new run"
        ) from None
    if dataset.size is not None and size != dataset.size:
        raise UserInputError(f"{where} (size {dataset.size} -> {size} bytes): {advice}")
    digest = file_sha256(path)
    if digest != dataset.sha256:
        raise UserInputError(
            f"{where} (same size, content sha256 {dataset.sha256[:12]}... -> "
            f"{digest[:12]}...): {advice}"
        )


def cell_text(value: Any) -> str:
    """A table cell's value as text ("" for a missing one), made safe as the labeler reads
    it: lone surrogates become U+FFFD, NULs are dropped (:func:`tabular.safe_text`)."""
    return tabular.safe_text(value)[0]


def iter_rows(path: Path | str) -> Iterator[dict[str, Any]]:
    for chunk in tabular.iter_chunks(Path(path), READ_CHUNK):
        yield from chunk


def head(dataset: DatasetInfo, count: int) -> list[dict[str, Any]]:
    rows = []
    for row in iter_rows(dataset.path):
        rows.append(row)
        if len(rows) == count:
            break
    return rows


def guess_text_column(dataset: DatasetInfo) -> str:
    """The column most likely to hold the text: a well-known name, else the longest strings."""
    lowered = {column.lower(): column for column in dataset.columns}
    for name in TEXT_COLUMN_NAMES:
        if name in lowered:
            return lowered[name]
    sample = head(dataset, 200)

    def mean_length(column: str) -> float:
        values = [row.get(column) for row in sample]
        return sum(len(v) for v in values if isinstance(v, str)) / max(len(values), 1)

    return max(dataset.columns, key=mean_length)


def sample_rows(dataset: DatasetInfo, count: int, seed: str) -> list[tuple[int, dict[str, Any]]]:
    """A reproducible uniform sample of ``count`` rows (reservoir sampling), in file order."""
    generator = random.Random(seed)
    reservoir: list[tuple[int, dict[str, Any]]] = []
    for index, row in enumerate(iter_rows(dataset.path)):
        if len(reservoir) < count:
            reservoir.append((index, row))
        else:
            slot = generator.randint(0, index)
            if slot < count:
                reservoir[slot] = (index, row)
    return sorted(reservoir, key=lambda item: item[0])
