"""Tables on a Ray cluster: finding the input's files, reading them as a dataset the way the
single-process engine reads them, and writing the labeled blocks to one output file.

The input is a file or a folder of files of one format, local or an object-store URI;
the output is written locally, then uploaded when it is a URI.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import tabular
from .columns import NEEDS_REVIEW

EXTENSIONS = {"csv": ["csv"], "tsv": ["tsv"], "jsonl": ["jsonl", "ndjson"], "parquet": ["parquet"]}


def input_files(source: str) -> tuple[str, list[str]]:
    """The format of ``source`` (a file, or a folder of files of one format) and its files."""
    import pyarrow.fs

    try:
        filesystem, path = (
            pyarrow.fs.FileSystem.from_uri(source)
            if "://" in source
            else (pyarrow.fs.LocalFileSystem(), os.path.abspath(source))
        )
        info = filesystem.get_file_info(path)
        folder = info.type == pyarrow.fs.FileType.Directory
        found = (
            filesystem.get_file_info(pyarrow.fs.FileSelector(path, recursive=True))
            if folder
            else []
        )
    except (OSError, ValueError) as error:
        raise tabular.DataError(f"{source}: cannot open ({first_line(error)})") from None
    if info.type == pyarrow.fs.FileType.NotFound:
        raise tabular.DataError(f"{source}: no such file or folder")
    if not folder:
        return tabular.detect_format(source), [source if "://" in source else path]
    names = sorted(f.path for f in found if f.is_file and not f.base_name.startswith((".", "_")))
    formats = {tabular.FORMATS[Path(name).suffix.lower()] for name in names if _known(name)}
    if len(formats) != 1:
        listed = ", ".join(sorted(formats)) or "none"
        raise tabular.DataError(f"{source}: a folder needs files of one format (found: {listed})")
    fmt = formats.pop()
    files = [name for name in names if _known(name) and tabular.detect_format(name) == fmt]
    if "://" in source:
        scheme = source.split("://", 1)[0]
        files = [f"{scheme}://{name}" for name in files]
    return fmt, files


def _known(name: str) -> bool:
    return Path(name).suffix.lower() in tabular.FORMATS


def _open(location: str):
    import pyarrow.fs

    if "://" in location:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(location)
        return filesystem.open_input_stream(path)
    return pyarrow.fs.LocalFileSystem().open_input_stream(location)


def csv_header(location: str, fmt: str) -> list[str]:
    """The header of a CSV/TSV file, read as the single-process engine reads it."""
    with _open(location) as stream:
        head = stream.read(1 << 20).decode("utf-8-sig", errors="replace")
    try:
        header = next(csv.reader(io.StringIO(head), delimiter="\t" if fmt == "tsv" else ","))
    except StopIteration:
        raise tabular.DataError(f"{location}: the file is empty") from None
    if len(set(header)) != len(header):
        duplicates = sorted({name for name in header if header.count(name) > 1})
        raise tabular.DataError(f"{location}: duplicate column names {duplicates}")
    return header


def read_table(ray, fmt: str, source: str, columns: list[str] | None):
    """The input as a dataset, its columns and its number of rows; DataError if unreadable."""
    try:
        dataset = _read(ray, fmt, source, columns)
        columns = columns or list(dataset.schema().names)
        return dataset, columns, dataset.count()
    except tabular.DataError:
        raise
    except Exception as error:
        reason = first_line(worker_error(error))
        raise tabular.DataError(f"{source}: cannot be read as a table ({reason})") from error


def _read(ray, fmt: str, source: str, columns: Sequence[str] | None):
    common: dict[str, Any] = dict(file_extensions=EXTENSIONS[fmt])
    if fmt in ("csv", "tsv"):
        import pyarrow
        import pyarrow.csv

        # Every value stays the text it was, as the single-process engine reads it ("007", "").
        return ray.data.read_csv(
            source,
            parse_options=pyarrow.csv.ParseOptions(
                delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True
            ),
            convert_options=pyarrow.csv.ConvertOptions(
                column_types={column: pyarrow.string() for column in columns or ()},
                strings_can_be_null=False,
            ),
            **common,
        )
    if fmt == "jsonl":
        return ray.data.read_json(source, **common)
    return ray.data.read_parquet(source, **common)


def write_labeled(labeled, output: str, header, total: int, on_progress) -> tuple[int, int]:
    """Write the labeled blocks, in input order, to ``output`` (uploaded if it is a URI)."""
    report = on_progress or (lambda done, total: None)
    done = needs_review = 0
    report(done, total)
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / Path(output).name if "://" in output else Path(output)
        with tabular.TableWriter(local, header) as writer:
            for block in labeled.iter_batches(batch_size=None, batch_format="pyarrow"):
                rows = block.to_pylist()
                writer.write(rows)
                done += len(rows)
                needs_review += sum(1 for row in rows if row[NEEDS_REVIEW])
                report(done, total)
            if done != total:
                raise RuntimeError(f"labeled {done} rows, but the input has {total}")
        if "://" in output:
            _upload(local, output)
    return done, needs_review


def _upload(local: Path, uri: str) -> None:
    import pyarrow.fs

    filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
    pyarrow.fs.copy_files(str(local), path, destination_filesystem=filesystem)


def worker_error(error: BaseException) -> BaseException:
    """The exception a worker raised, out of the Ray task errors that carry it."""
    while isinstance(getattr(error, "cause", None), BaseException) and error.cause is not error:
        error = error.cause
    return error


def first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__
