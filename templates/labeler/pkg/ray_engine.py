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

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tabular
from .columns import added_columns, arrow_type, input_renames
from .commands import PACKAGE_ROOT
from .config import LabelerSpec
from .engine import Int8Callback, Labeler, LabelingSummary, ProgressCallback, text_of
from .precision import DEFAULT_QUANTIZE, INT8_SAMPLE_ROWS, PINNED
from .ray_tables import csv_header, first_line, input_files, read_table, worker_error, write_labeled
from .transformer import Int8Decision, use_int8
from .voters import Runtime, VoterLoadError

DEFAULT_BLOCK_ROWS = 1024
"""Rows per actor call: the unit of work a lost worker redoes."""


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
    quantize: str = DEFAULT_QUANTIZE
    """As the single-process engine's, ``measure`` aside (:mod:`.precision`)."""
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
    columns = csv_header(files[0], fmt) if fmt in ("csv", "tsv") else None
    _check_text_column(source, columns, text_column)
    started = connect(ray, options.address)
    try:
        _configure(ray.data.DataContext.get_current())
        dataset, columns, total = read_table(ray, fmt, source, columns)
        _check_text_column(source, columns, text_column)
        device, actors, cpus_per_actor = _pool_size(ray, options)
        decisions = _settle_precision(ray, spec, options, device, dataset, text_column, total)
        for decision in decisions if on_int8 is not None else ():
            on_int8(decision)
        # Blocks small enough that every actor has work, streamed as they are read.
        rows_per_block = max(1, min(options.block_rows, math.ceil(total / actors)))
        added = added_columns([voter.name for voter in spec.voters])
        renames = input_renames(columns, added)
        actor = dict(
            spec=spec,
            runtime=(options.package_root, device, options.batch_size),
            int8_voters=tuple(decision.voter for decision in decisions if decision.int8),
            pinned=options.quantize == "pinned",
            text_column=text_column,
            min_agreement=min_agreement,
            renames=renames,
            min_confidence=min_confidence,
        )
        pool = (actors, cpus_per_actor, 1 if device == "cuda" else None)
        labeled = _label_blocks(ray, dataset, actor, rows_per_block, pool)
        header = [renames.get(column, column) for column in columns] + added
        done, needs_review = write_labeled(labeled, output, header, total, on_progress)
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


def _configure(context) -> None:
    """Ray Data settings of a run: rows in input order, no bars, workers' own errors."""
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.raise_original_map_exception = True  # a voter's error, not "UDF failed"


def _label_blocks(ray, dataset, actor: dict, rows_per_block: int, pool: tuple):
    """``dataset`` labeled block by block on a pool of :class:`BlockLabeler` actors
    (``pool``: their number, CPUs and GPUs each) built with ``actor``."""
    actors, cpus_per_actor, gpus_per_actor = pool
    return dataset.repartition(target_num_rows_per_block=rows_per_block).map_batches(
        BlockLabeler,
        fn_constructor_kwargs=actor,
        batch_size=rows_per_block,
        batch_format="pyarrow",
        # Ray Data's actors restart without limit and retry their blocks (max_restarts and
        # max_task_retries -1): a killed worker costs its block's time, never its rows.
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=gpus_per_actor,
    )


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
        raise RayEngineError(
            f"cannot join the Ray cluster at {address}: {first_line(error)}"
        ) from None
    return True


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
    ``pinned`` decides nothing: each actor applies the spec's precisions, reported here.
    """
    if options.quantize == "measure":
        raise RayEngineError("--quantize measure works with --engine local only")
    if options.quantize == "none" or device != "cpu":
        return []
    if options.quantize == "pinned":
        return [
            Int8Decision(voter.name, voter.precision == "int8", None, 0, PINNED)
            for voter in spec.voters
            if voter.precision is not None
        ]
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


class BlockLabeler:
    """One actor of the pool: loads the voters once, then labels the blocks it is given."""

    def __init__(
        self,
        spec,
        runtime,
        int8_voters,
        text_column,
        min_agreement,
        renames,
        min_confidence=0.0,
        pinned=False,
    ) -> None:
        # Ray keeps only the text of an error raised while an actor starts: a voter that cannot
        # load is raised from the first call instead, which hands the error itself to the driver.
        self.load_error: VoterLoadError | None = None
        try:
            self.labeler = Labeler(spec, _runtime(*runtime), "pinned" if pinned else "none")
        except VoterLoadError as error:
            self.load_error = error
            return
        if pinned:
            self.labeler.settle_precision()
        for voter in self.labeler.voters:
            if voter.config.name in int8_voters and not pinned:
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
            values = [result[column] for result in results]
            table = table.append_column(column, pyarrow.array(values, type=arrow_type(column)))
        return table


def _user_error(error: BaseException) -> BaseException:
    """A voter or data error raised on a worker, in one line, out of Ray's; else ``error``."""
    raised = worker_error(error)
    if raised is error or not isinstance(raised, VoterLoadError | tabular.DataError):
        return error
    return type(raised)(first_line(raised))  # without the retry advice Ray Data appends
