"""The run's verdicts in row order, for passes that walk the labeled data row by row.

``verdicts.jsonl`` is appended to in the order rows were settled (the pilot's first, then
each pass's, least confident first under a budget), and a row may have several verdicts of
which the last counts. Merging them into a file of millions of rows by looking them up in a
dict would hold every verdict at once; instead they are sorted on disk in bounded runs and
merged (:func:`latest_by_row`), then joined to the rows as both streams go
(:func:`with_verdicts`). Memory stays that of one run, whatever the number of rows.
"""

from __future__ import annotations

import heapq
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

RUN_RECORDS = 20_000
"""Verdicts sorted in memory at once; more spill to sorted files that are then merged."""

Row = TypeVar("Row")


def _lines(path: Path) -> Iterator[str]:
    """The complete, non-blank lines, as ``read_jsonl`` reads them (a torn last line ends it)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return
            if line.strip():
                yield line


def latest_by_row(path: Path, run_records: int | None = None) -> Iterator[dict[str, Any]]:
    """Each row's latest verdict, in ascending row order.

    The file is read to its end (into memory, or into sorted runs on disk) before the first
    verdict comes, so lines appended while the result is consumed are not seen.
    """
    path = Path(path)
    if not path.exists():
        return
    run_records = run_records or RUN_RECORDS
    lines = _lines(path)
    first = _sorted_run(lines, 0, run_records)
    if len(first) < run_records:
        yield from _last_of_each_row((row, line) for row, _, line in first)
        return
    with tempfile.TemporaryDirectory(prefix=".verdicts-sort-", dir=path.parent) as folder:
        runs = []
        run, start = first, 0
        while run:
            spill = Path(folder) / f"run-{len(runs):06d}"
            with open(spill, "w", encoding="utf-8") as handle:
                # A JSON line holds no raw tab (control characters are escaped), so a tab
                # separates the sort key from the record safely.
                handle.writelines(f"{row}\t{sequence}\t{line}" for row, sequence, line in run)
            runs.append(spill)
            start += len(run)
            run = _sorted_run(lines, start, run_records)
        handles = [open(spill, encoding="utf-8") for spill in runs]  # noqa: SIM115
        try:
            merged = heapq.merge(*(map(_spilled, handle) for handle in handles))
            yield from _last_of_each_row((row, line) for row, _, line in merged)
        finally:
            for handle in handles:
                handle.close()


def _sorted_run(lines: Iterator[str], start: int, size: int) -> list[tuple[int, int, str]]:
    """The next ``size`` lines as (row, file position, line), by row then position."""
    run = []
    for sequence, line in enumerate(lines, start):
        run.append((int(json.loads(line)["row"]), sequence, line))
        if len(run) == size:
            break
    run.sort(key=lambda entry: entry[:2])
    return run


def _spilled(text: str) -> tuple[int, int, str]:
    row, sequence, line = text.split("\t", 2)
    return int(row), int(sequence), line


def _last_of_each_row(entries: Iterable[tuple[int, str]]) -> Iterator[dict[str, Any]]:
    """From (row, line) in row order, later lines last: each row's last record."""
    previous: tuple[int, str] | None = None
    for entry in entries:
        if previous is not None and previous[0] != entry[0]:
            yield json.loads(previous[1])
        previous = entry
    if previous is not None:
        yield json.loads(previous[1])


def with_verdicts(
    rows: Iterable[Row], verdicts: Iterable[dict[str, Any]]
) -> Iterator[tuple[int, Row, dict[str, Any] | None]]:
    """(row number, row, its verdict or None) for each of ``rows``, numbered from 0.

    ``verdicts`` must come in ascending row order, one per row at most (as from
    :func:`latest_by_row`); verdicts of rows past the end are ignored.
    """
    pending = iter(verdicts)
    verdict = next(pending, None)
    for number, row in enumerate(rows):
        while verdict is not None and verdict["row"] < number:
            verdict = next(pending, None)
        if verdict is not None and verdict["row"] == number:
            yield number, row, verdict
            verdict = next(pending, None)
        else:
            yield number, row, None


def keyed_by_row(
    records: Iterable[dict[str, Any]], verdicts: Iterable[dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(record, its row's verdict or None) for records with a ``row`` field in ascending
    order (as in ``disagreements.jsonl``), against verdicts in ascending row order."""
    pending = iter(verdicts)
    verdict = next(pending, None)
    previous = -1
    for record in records:
        row = record["row"]
        if row <= previous:
            raise ValueError(f"records out of row order: row {row} after row {previous}")
        previous = row
        while verdict is not None and verdict["row"] < row:
            verdict = next(pending, None)
        yield record, verdict if verdict is not None and verdict["row"] == row else None
