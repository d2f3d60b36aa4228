"""Command line: ``<labeler> INPUT --output OUTPUT``.

Exit status: 0 on success, 2 on bad input (unreadable file, unknown column) or when
``--engine ray`` cannot run (Ray not installed, cluster unreachable), 1 when a voter's
model cannot be loaded. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import ray_engine, tabular, weights
from .commands import PACKAGE_ROOT, guarded, load_spec, resolve_device
from .config import LabelerSpec
from .engine import Labeler, LabelingSummary, label_file
from .feature_cache import FeatureCache
from .precision import DEFAULT_QUANTIZE, INT8_MIN_AGREEMENT, INT8_SAMPLE_ROWS, QUANTIZE_MODES
from .transformer import Int8Decision
from .voters import Runtime


def build_parser(spec: LabelerSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=spec.name, description=f"Label a table for this task: {spec.task}"
    )
    parser.add_argument(
        "input",
        help="CSV, TSV, JSON Lines or Parquet file; with --engine ray also a folder of them, "
        "or an object-store URI (s3://, gs://, ...)",
    )
    parser.add_argument("--output", "-o", required=True, help="labeled file to write")
    parser.add_argument("--text-column", default=spec.text_column, help="column holding the text")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per model batch")
    parser.add_argument("--chunk-size", type=int, default=10_000, help="rows read per chunk")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_MODES,
        default=DEFAULT_QUANTIZE,
        help=QUANTIZE_HELP,
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=spec.min_agreement,
        help="rows whose winning vote share is below this need review",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=spec.min_confidence,
        help="rows whose voters give the winning label a mean probability below this need "
        "review too",
    )
    add_engine_options(parser, spec)
    parser.add_argument(
        "--cache",
        help="folder keeping the voters' probabilities and embeddings between runs: a "
        "relabeling computes only what changed (local engine only)",
    )
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress display on stderr; json prints one event per line",
    )
    return parser


QUANTIZE_HELP = (
    "CPU precision of the transformer voters (CUDA runs bf16 whatever this says). pinned "
    "(default): the precision chosen for each voter when the package was built (int8 where "
    "its int8 labels agreed with fp32 on the pilot rows, else fp32; fp32 for a voter with none "
    "pinned): nothing is measured, so a text gets the same label in every file; auto: measure "
    f"int8 against fp32 on the file's first {INT8_SAMPLE_ROWS} rows (when it is longer) and "
    f"keep int8 for each voter whose labels agree on {INT8_MIN_AGREEMENT:.1%}%; measure: the "
    "same check on every row of the first chunk, however few (what the agent's pilot runs; "
    "local engine only); int8: every voter in int8; none: every voter in fp32"
)


def add_engine_options(parser: argparse.ArgumentParser, spec: LabelerSpec) -> None:
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process, resumable; ray: actors on a Ray cluster (pip install "
        f"'{spec.name}[ray]')",
    )
    parser.add_argument(
        "--ray-address",
        help="Ray cluster to join: auto, HOST:PORT or ray://HOST:10001 (default: a new local one)",
    )
    parser.add_argument(
        "--ray-actors",
        type=int,
        help="actors labeling at once (default: one per GPU on CUDA, else one per CPU)",
    )
    parser.add_argument(
        "--ray-batch-size",
        type=int,
        help="rows per actor call, the work a lost worker redoes "
        f"(default {ray_engine.DEFAULT_BLOCK_ROWS})",
    )


class Progress:
    """Rows done so far, as a bar with rows/s or as JSON events; int8 decisions as log lines."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.started = time.monotonic()
        self.first: tuple[int, float] | None = None
        self.bar = None

    def rate(self, done: int) -> float | None:
        """Rows/s since the first report (rows of resumed chunks do not count)."""
        now = time.monotonic()
        if self.first is None:
            self.first = (done, now)
        rows, seconds = done - self.first[0], now - self.first[1]
        return rows / seconds if rows > 0 and seconds > 0 else None

    def __call__(self, done: int, total: int) -> None:
        rate = self.rate(done)
        if self.style == "json":
            event = {"event": "progress", "rows": done, "total": total}
            event["rows_per_s"] = None if rate is None else round(rate, 2)
            print(json.dumps(event), file=sys.stderr, flush=True)
        elif self.style == "bar":
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=total,
                    initial=done,
                    desc="labeling",
                    file=sys.stderr,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
                    "[{elapsed}<{remaining}, {postfix}]",
                )
            # Our own rate, so it always reads rows/s (tqdm turns slow rates into s/rows).
            self.bar.set_postfix_str("? rows/s" if rate is None else f"{rate:.1f} rows/s")
            self.bar.update(done - self.bar.n)

    def int8(self, decision: Int8Decision) -> None:
        """One precision decision: a ``quantize`` event (the agent's pilot reads these) or a
        log line."""
        chosen = "int8" if decision.int8 else "fp32"
        if self.style == "json":
            event = {"event": "quantize", "voter": decision.voter, "precision": chosen}
            event.update(agreement=decision.agreement, int8=decision.int8, rows=decision.rows)
            event["reason"] = decision.reason
            print(json.dumps(event), file=sys.stderr, flush=True)
            return
        print(f"voter {decision.voter}: {chosen} ({decision.reason})", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def label_on_ray(spec: LabelerSpec, args: argparse.Namespace, progress: Progress):
    """``--engine ray``: the same voters and output, on the actors of a Ray cluster."""
    options = ray_engine.RayOptions(
        address=args.ray_address,
        actors=args.ray_actors,
        block_rows=args.ray_batch_size or ray_engine.DEFAULT_BLOCK_ROWS,
        device=args.device,
        batch_size=args.batch_size,
        quantize=args.quantize,
    )
    return ray_engine.label_file_ray(
        spec,
        args.input,
        args.output,
        text_column=args.text_column,
        min_agreement=args.min_agreement,
        options=options,
        on_progress=progress,
        on_int8=progress.int8,
        min_confidence=args.min_confidence,
    )


def flag_error(args: argparse.Namespace) -> str | None:
    """Why the options cannot go together, or None."""
    if args.batch_size < 1 or args.chunk_size < 1:
        return "--batch-size and --chunk-size must be at least 1"
    ray_flags = (args.ray_address, args.ray_actors, args.ray_batch_size)
    if args.engine == "ray" and args.cache is not None:
        return "--cache works with --engine local only"
    if args.engine == "ray" and args.quantize == "measure":
        return "--quantize measure works with --engine local only"
    if args.engine != "ray" and any(flag is not None for flag in ray_flags):
        return "--ray-address, --ray-actors and --ray-batch-size need --engine ray"
    if any(count is not None and count < 1 for count in ray_flags[1:]):
        return "--ray-actors and --ray-batch-size must be at least 1"
    return None


def main(argv: list[str] | None = None) -> int:
    spec = load_spec()
    if (sys.argv[1:] if argv is None else argv)[:1] == ["verify"]:  # weights vs the lock
        return weights.main((sys.argv[1:] if argv is None else argv)[1:])
    if (sys.argv[1:] if argv is None else argv)[:1] == ["serve"]:  # the HTTP service
        from .serve import main as serve  # starlette and uvicorn load only for it

        return serve((sys.argv[1:] if argv is None else argv)[1:])
    args = build_parser(spec).parse_args(argv)
    error = flag_error(args)
    if error is not None:
        print(f"error: {error}", file=sys.stderr)
        return 2
    progress = Progress(args.progress)
    outcome: dict[str, LabelingSummary] = {}

    def command() -> int:
        if args.engine == "ray":
            outcome["summary"] = label_on_ray(spec, args, progress)
            return 0
        device = resolve_device(args.device)
        if args.quantize == "int8" and device != "cpu":
            print("error: --quantize int8 runs on CPU only (CUDA uses bf16)", file=sys.stderr)
            return 2
        cache = None if args.cache is None else FeatureCache(Path(args.cache))
        runtime = Runtime(PACKAGE_ROOT, device, args.batch_size, cache)
        labeler = Labeler(spec, runtime, args.quantize)
        outcome["summary"] = label_file(
            labeler,
            Path(args.input),
            Path(args.output),
            text_column=args.text_column,
            chunk_size=args.chunk_size,
            min_agreement=args.min_agreement,
            on_progress=progress,
            on_int8=progress.int8,
            min_confidence=args.min_confidence,
        )
        return 0

    try:
        code = guarded(command)
    finally:
        progress.close()
    if code == 0:
        summary = outcome["summary"]
        if summary.unsafe_texts:
            print(tabular.unsafe_texts_note(summary.unsafe_texts, args.input), file=sys.stderr)
        report_done(args.progress, summary, time.monotonic() - progress.started)
    return code


def report_done(style: str, summary: LabelingSummary, seconds: float) -> None:
    """The run's last line on stderr: rows, rows that need review, time and throughput."""
    if style == "json":
        event = {"event": "done", "rows": summary.rows, "needs_review": summary.needs_review}
        event.update(seconds=round(seconds, 3), resumed_chunks=summary.resumed_chunks)
        event.update(unsafe_texts=summary.unsafe_texts)
        print(json.dumps(event), file=sys.stderr, flush=True)
    elif style == "bar":
        print(
            f"labeled {summary.rows} rows ({summary.needs_review} need review) "
            f"in {seconds:.1f}s ({summary.rows / max(seconds, 1e-9):.1f} rows/s) "
            f"-> {summary.output}",
            file=sys.stderr,
        )
