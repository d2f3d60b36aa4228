"""Labeling on a Ray cluster: the same voters and vote, spread over actors on many machines.

``--engine ray`` reads the input with ``ray.data`` (CSV, TSV, JSON Lines or Parquet; a file or a
folder, local or an object-store URI such as ``s3://bucket/data/``), labels blocks of rows on a
pool of actors that each hold one :class:`~.engine.Labeler` (one actor per GPU, or one per CPU),
and writes one output file with the columns the single-process engine writes, rows in input
order.

A worker that dies mid-run costs only the block it held: Ray restarts the actor and retries the
block, and the driver writes finished blocks in input order, so no row is lost or written twice.
There are no part files: a run whose driver dies starts over.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tabular
from .config import LabelerSpec
from .engine import (
    INT8_SAMPLE_ROWS,
    Int8Callback,
    Labeler,
    LabelingSummary,
    ProgressCallback,
    added_columns,
    input_renames,
    text_of,
)
from .transformer import Int8Decision, use_int8
from .voters import Runtime, VoterLoadError

PACKAGE_ROOT = Path(__file__).resolve().parent
DEFAULT_BLOCK_ROWS = 1024
"""Rows per actor call: the unit of work a lost worker redoes."""
EXTENSIONS = {"csv": ["csv"], "tsv": ["tsv"], "jsonl": ["jsonl", "ndjson"], "parquet": ["parquet"]}


class RayEngineError(tabular.DataError):
    """Ray is missing, or the cluster cannot run the request; the message is one line."""


@dataclass(frozen=True)
class RayOptions:
    """How to run on Ray; the voters' own settings are those of the single-process engine."""

    address: str | None = None
    """``auto``, ``HOST:PORT`` or ``ray://HOST:10001``; None starts a local cluster."""
    actors: int | None = None
    """Size of the actor pool; None: one per GPU on CUDA, else one per CPU of the cluster."""
    block_rows: int = DEFAULT_BLOCK_ROWS
    device: str = "auto"
    """``auto`` (CUDA when the cluster has GPUs), ``cpu`` or ``cuda``."""
    batch_size: int = 32
    quantize: str = "none"
    package_root: Path | None = None
    """Folder of bundled models on the workers; None: this package, where each worker has it."""


def import_ray(distribution: str):
    """The ``ray`` module with ``ray.data``, or a one-line error naming the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayEngineError(f"--engine ray needs: pip install '{distribution}[ray]'") from None
    return ray


def label_file_ray(
    spec: LabelerSpec,
    source: str | Path,
    output: str | Path,
    *,
    text_column: str,
    min_agreement: float,
    options: RayOptions,
    on_progress: ProgressCallback | None = None,
    on_int8: Int8Callback | None = None,
    min_confidence: float = 0.0,
) -> LabelingSummary:
    """Label every row of ``source`` into the single file ``output`` on a Ray cluster.

    Joins the running Ray session if there is one, else ``options.address`` (a new local
    cluster when None), and leaves a cluster it started itself shut down.
    """
    ray = import_ray(spec.name)
    source, output = str(source), str(output)
    fmt, files = input_files(source)
    tabular.detect_format(output)
    columns = _csv_header(files[0], fmt) if fmt in ("csv", "tsv") else None
    _check_text_column(source, columns, text_column)
    started = connect(ray, options.address)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.raise_original_map_exception = True  # a voter's error, not "UDF failed"
        dataset, columns, total = _read_table(ray, fmt, source, columns)
        _check_text_column(source, columns, text_column)
        device, actors, cpus_per_actor = _pool_size(ray, options)
        decisions = _settle_precision(ray, spec, options, device, dataset, text_column, total)
        for decision in decisions:
            if on_int8 is not None:
                on_int8(decision)
        # Blocks small enough that every actor has work, streamed as they are read.
        rows_per_block = max(1, min(options.block_rows, math.ceil(total / actors)))
        added = added_columns([voter.name for voter in spec.voters])
        renames = input_renames(columns, added)
        actor = dict(
            spec=spec,
            runtime=(options.package_root, device, options.batch_size),
            int8_voters=tuple(decision.voter for decision in decisions if decision.int8),
            text_column=text_column,
            min_agreement=min_agreement,
            renames=renames,
            min_confidence=min_confidence,
        )
        labeled = dataset.repartition(target_num_rows_per_block=rows_per_block).map_batches(
            BlockLabeler,
            fn_constructor_kwargs=actor,
            batch_size=rows_per_block,
            batch_format="pyarrow",
            # Ray Data's actors restart without limit and retry their blocks (max_restarts and
            # max_task_retries -1): a killed worker costs its block's time, never its rows.
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=1 if device == "cuda" else None,
        )
        header = [renames.get(column, column) for column in columns] + added
        done, needs_review = _write(labeled, output, header, total, on_progress)
    except Exception as error:
        shown = _user_error(error)
        if shown is error:
            raise
        raise shown from error
    finally:
        if started:
            ray.shutdown()
    blocks = math.ceil(total / rows_per_block)
    return LabelingSummary(done, needs_review, blocks, 0, output)


def _check_text_column(source: str, columns: list[str] | None, text_column: str) -> None:
    if columns is not None and text_column not in columns:
        raise tabular.DataError(f"{source}: no column {text_column!r}; columns are {columns}")


def connect(ray, address: str | None) -> bool:
    """Join ``address`` (a new local cluster when None); True when this call started Ray."""
    if ray.is_initialized():
        return False
    settings: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        settings.update(address="local", include_dashboard=False)
    else:
        settings.update(address=address)
    try:
        ray.init(**settings)
    except (ConnectionError, ImportError, RuntimeError, ValueError) as error:
        raise RayEngineError(f"cannot join the Ray cluster at {address}: {_line(error)}") from None
    return True


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
        raise tabular.DataError(f"{source}: cannot open ({_line(error)})") from None
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


def _csv_header(location: str, fmt: str) -> list[str]:
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


def _read_table(ray, fmt: str, source: str, columns: list[str] | None):
    """The input as a dataset, its columns and its number of rows; DataError if unreadable."""
    try:
        dataset = _read(ray, fmt, source, columns)
        columns = columns or list(dataset.schema().names)
        return dataset, columns, dataset.count()
    except tabular.DataError:
        raise
    except Exception as error:
        reason = _line(_worker_error(error))
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


def _pool_size(ray, options: RayOptions) -> tuple[str, int, float]:
    """The device the actors use, how many there are, and the CPUs each one reserves.

    Ray Data lists and reads files in tasks that need a CPU of their own: the actors share
    all CPUs but one (at most one each), or those tasks would wait for ever behind them.
    """
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    if options.device == "cuda" and gpus == 0:
        raise RayEngineError("--device cuda was requested but the Ray cluster has no GPU")
    device = "cuda" if options.device == "cuda" or (options.device == "auto" and gpus) else "cpu"
    if options.quantize == "int8" and device == "cuda":
        raise RayEngineError("--quantize int8 runs on CPU only (CUDA uses bf16)")
    capacity, unit = (gpus, "GPU") if device == "cuda" else (cpus, "CPU")
    actors = options.actors or capacity
    if not 1 <= actors <= capacity:
        raise RayEngineError(f"{actors} actors need a {unit} each; the Ray cluster has {capacity}")
    # Ray takes fractions of a resource to 4 decimals.
    cpus_per_actor = math.floor(min(1.0, max(cpus - 1, 0) / actors) * 10_000) / 10_000
    return device, actors, cpus_per_actor


def _settle_precision(ray, spec, options, device, dataset, text_column, total):
    """Decide int8 once, on one worker, so that every actor labels at the same precision.

    As the single-process engine does: on the first rows, unless the input is that short.
    """
    if options.quantize == "none" or device != "cpu":
        return []
    sample = []
    if total > INT8_SAMPLE_ROWS:
        first = dataset.select_columns([text_column]).take(INT8_SAMPLE_ROWS)
        sample = [text_of(row[text_column]) for row in first]
    decide = ray.remote(num_cpus=1)(_decide_int8)
    runtime = (options.package_root, device, options.batch_size)
    return ray.get(decide.remote(spec, runtime, options.quantize, sample))


def _decide_int8(spec, runtime, quantize, sample) -> list[Int8Decision]:
    return Labeler(spec, _runtime(*runtime), quantize=quantize).settle_precision(sample)


def _runtime(package_root: Path | None, device: str, batch_size: int) -> Runtime:
    return Runtime(package_root or PACKAGE_ROOT, device, batch_size)


COLUMN_TYPES = {
    "label": "string",
    "confidence": "float64",
    "agreement": "float64",
    "needs_review": "bool",
}
"""Arrow types of the added columns (``label_<voter>``: string, ``prob_<voter>``: float64)."""


class BlockLabeler:
    """One actor of the pool: loads the voters once, then labels the blocks it is given."""

    def __init__(
        self, spec, runtime, int8_voters, text_column, min_agreement, renames, min_confidence=0.0
    ) -> None:
        # Ray keeps only the text of an error raised while an actor starts: a voter that cannot
        # load is raised from the first call instead, which hands the error itself to the driver.
        self.load_error: VoterLoadError | None = None
        try:
            self.labeler = Labeler(spec, _runtime(*runtime))
        except VoterLoadError as error:
            self.load_error = error
            return
        for voter in self.labeler.voters:
            if voter.config.name in int8_voters:
                use_int8(voter)
        self.text_column = text_column
        self.min_agreement = min_agreement
        self.min_confidence = min_confidence
        self.renames = renames
        self.added = added_columns([voter.config.name for voter in self.labeler.voters])

    def __call__(self, block):
        import pyarrow

        if self.load_error is not None:
            raise self.load_error
        texts = [text_of(value) for value in block.column(self.text_column).to_pylist()]
        results = self.labeler.label_in_slices(
            texts, self.min_agreement, lambda rows: None, self.min_confidence
        )
        table = block.rename_columns([self.renames.get(n, n) for n in block.column_names])
        for column in self.added:
            kind = COLUMN_TYPES.get(column, "float64" if column.startswith("prob_") else "string")
            values = [result[column] for result in results]
            table = table.append_column(column, pyarrow.array(values, type=kind))
        return table


def _write(labeled, output: str, header, total: int, on_progress) -> tuple[int, int]:
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
                needs_review += sum(1 for row in rows if row["needs_review"])
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


def _user_error(error: BaseException) -> BaseException:
    """A voter or data error raised on a worker, in one line, out of Ray's; else ``error``."""
    raised = _worker_error(error)
    if raised is error or not isinstance(raised, VoterLoadError | tabular.DataError):
        return error
    return type(raised)(_line(raised))  # without the retry advice Ray Data appends


def _worker_error(error: BaseException) -> BaseException:
    """The exception a worker raised, out of the Ray task errors that carry it."""
    while isinstance(getattr(error, "cause", None), BaseException) and error.cause is not error:
        error = error.cause
    return error


def _line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__
