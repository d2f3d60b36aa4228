"""Whole processes, start to exit: the labeler's console script against a plain pipeline script.

The three base-size voters of :mod:`benchmarks.throughput` (random weights) are bundled into a
labeler package as the agent builds one: its pilot runs the labeler with ``--quantize
measure`` on a 200-row sample and each voter's precision is pinned in the spec from the
labeler's own ``quantize`` events. Then, back to back and interleaved, each round runs

- the console script (what ``pip install`` writes for the package: ``from <module>.cli import
  main; sys.exit(main())``) labeling the rows of a CSV into a CSV, at its defaults;
- a plain script: ``transformers.pipeline("text-classification")`` per voter,
  ``batch_size=32``, over the same CSV, writing each voter's label to a CSV.

Both are timed by the wall clock around the process. The labeler's time is split by when its
JSON events arrive (interpreter and imports, loading the voters, labeling, writing), and a
process that only imports the labeler is timed too.

    python -m benchmarks.throughput --whole-process [--rows 400] [--repeat 3]
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.throughput import LABEL_MAP, VOTERS, build_voters, synthetic_tweets, write_table
from tests.support.packages import bundle_labeler

MODULE = "bench_labeler"
PILOT_ROWS = 200

PIPELINE_SCRIPT = """\
import csv, sys
import transformers
from transformers import pipeline

transformers.logging.set_verbosity_error()
models, source, target = sys.argv[1], sys.argv[2], sys.argv[3]
with open(source, newline="", encoding="utf-8") as handle:
    rows = list(csv.DictReader(handle))
texts = [row["text"] for row in rows]
labels = {}
for name in ("bert", "roberta", "distilbert"):
    classify = pipeline("text-classification", model=f"{models}/{name}", device="cpu")
    outputs = classify(texts, batch_size=32, truncation=True)
    labels[name] = [output["label"] for output in outputs]
with open(target, "w", newline="", encoding="utf-8") as handle:
    writer = csv.writer(handle)
    writer.writerow(["id", "text"] + [f"label_{name}" for name in labels])
    for index, row in enumerate(rows):
        writer.writerow([row["id"], row["text"]] + [labels[n][index] for n in labels])
"""

CONSOLE_SCRIPT = """\
import sys

from {module}.cli import main

sys.exit(main())
"""


@dataclass
class Timed:
    seconds: float
    marks: dict[str, float] = field(default_factory=dict)
    """Seconds from the start to the first event of each kind (labeler only)."""
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


def build_package(root: Path, models: Path) -> dict[str, str]:
    """The labeler package, its voters bundled; precisions pinned by a measured pilot (what
    the pilot reported per voter)."""
    voters = [(name, "hf-sequence-classifier", LABEL_MAP) for name in VOTERS]
    bundle_labeler(root, MODULE, models, voters, ("negative", "positive"), family="sentiment")
    pilot = write_table(root / "pilot.csv", synthetic_tweets(PILOT_ROWS, seed=7))
    command = [sys.executable, "-m", MODULE, str(pilot), "-o", str(root / "pilot-out.csv")]
    command += ["--quantize", "measure", "--progress", "json", "--device", "cpu"]
    result = subprocess.run(
        command, env=environment(root), capture_output=True, text=True, check=True
    )
    events = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    pins = {e["voter"]: e["precision"] for e in events if e["event"] == "quantize"}
    notes = {e["voter"]: f"{e['precision']} ({e['reason']})" for e in events if "reason" in e}
    spec_file = root / MODULE / "spec.py"
    text = spec_file.read_text(encoding="utf-8")
    for name, precision in pins.items():
        # bundle_labeler's spec: VoterConfig('name', kind, source, revision, label_map)
        marker = f"VoterConfig({name!r}, "
        start = text.index(marker)
        end = text.index("})", start) + 1
        text = text[:end] + f", precision={precision!r}" + text[end:]
    spec_file.write_text(text, encoding="utf-8")
    (root / "label.py").write_text(CONSOLE_SCRIPT.format(module=MODULE), encoding="utf-8")
    (root / "pipeline_script.py").write_text(PIPELINE_SCRIPT, encoding="utf-8")
    return notes


def environment(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1"}


def run_labeler(root: Path, table: Path) -> Timed:
    """The console script at its defaults, timed by its events as they arrive."""
    command = [sys.executable, str(root / "label.py"), str(table), "-o", str(root / "out.csv")]
    command += ["--progress", "json"]
    started = time.monotonic()
    process = subprocess.Popen(
        command, env=environment(root), stderr=subprocess.PIPE, text=True, cwd=root
    )
    marks: dict[str, float] = {}
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("{"):
            event = json.loads(line)
            name = event["event"]
            if name == "progress" and event["rows"] == event["total"]:
                name = "labeled"
            marks.setdefault(name, time.monotonic() - started)
    if process.wait() != 0:
        raise RuntimeError("the labeler failed")
    return Timed(time.monotonic() - started, marks)


def run_pipeline_script(root: Path, models: Path, table: Path) -> Timed:
    command = [sys.executable, str(root / "pipeline_script.py"), str(models), str(table)]
    command.append(str(root / "pipeline-out.csv"))
    started = time.monotonic()
    subprocess.run(command, env=environment(root), check=True, capture_output=True, cwd=root)
    return Timed(time.monotonic() - started)


def run_import_only(root: Path) -> Timed:
    command = [sys.executable, "-c", f"import {MODULE}.cli, {MODULE}.spec"]
    started = time.monotonic()
    subprocess.run(command, env=environment(root), check=True, cwd=root)
    return Timed(time.monotonic() - started)


def agreement(root: Path) -> str:
    """Share of voter labels where the labeler and the pipeline script agree."""
    with open(root / "out.csv", newline="", encoding="utf-8") as handle:
        ours = list(csv.DictReader(handle))
    with open(root / "pipeline-out.csv", newline="", encoding="utf-8") as handle:
        theirs = list(csv.DictReader(handle))
    same = total = 0
    for mine, other in zip(ours, theirs, strict=True):
        for name in VOTERS:
            total += 1
            same += mine[f"label_{name}"] == LABEL_MAP[other[f"label_{name}"]]
    return f"{same / total:.2%}"


def measure(rows: int, repeat: int, workdir: Path) -> list[str]:
    """Build, then ``repeat`` interleaved rounds; a markdown report."""
    models = workdir / "models"
    build_voters(models, synthetic_tweets(30_000, seed=2))
    started = time.monotonic()
    notes = build_package(workdir, models)
    pilot_seconds = time.monotonic() - started
    table = write_table(workdir / "tweets.csv", synthetic_tweets(rows, seed=1))
    labeler, script, imports, loads = [], [], [], []
    for _ in range(repeat):
        loads.append(os.getloadavg()[0])
        labeler.append(run_labeler(workdir, table))
        script.append(run_pipeline_script(workdir, models, table))
        imports.append(run_import_only(workdir))
    pilot = f"{pilot_seconds:.1f} s; pinned " + "; ".join(f"{k} {v}" for k, v in notes.items())
    return report(rows, labeler, script, imports, loads, pilot, workdir)


def report(rows, labeler, script, imports, loads, pilot: str, workdir) -> list[str]:
    ours = statistics.median(t.seconds for t in labeler)
    theirs = statistics.median(t.seconds for t in script)
    lines = [
        f"Pilot (build time, not timed below): {PILOT_ROWS} rows with --quantize measure in "
        f"{pilot}.",
        f"1-minute load average before each round: {', '.join(f'{x:.1f}' for x in loads)}.",
        "",
        "| round | console script s | pipeline script s | speed-up |",
        "|---|---|---|---|",
    ]
    for index, (mine, other) in enumerate(zip(labeler, script, strict=True), start=1):
        lines.append(
            f"| {index} | {mine.seconds:.1f} | {other.seconds:.1f} "
            f"| {other.seconds / mine.seconds:.2f}x |"
        )
    lines.append(f"| median | {ours:.1f} | {theirs:.1f} | {theirs / ours:.2f}x |")
    lines += ["", f"Labels: the two agree on {agreement(workdir)} of voter labels.", ""]
    lines += breakdown(rows, labeler, imports)
    return lines


def breakdown(rows: int, labeler: list[Timed], imports: list[Timed]) -> list[str]:
    """Where the console script's time goes (medians over the rounds)."""

    def median_mark(name: str) -> float:
        return statistics.median(t.marks.get(name, float("nan")) for t in labeler)

    total = statistics.median(t.seconds for t in labeler)
    importing = statistics.median(t.seconds for t in imports)
    ready = median_mark("progress")  # the first progress event: voters loaded, precision set
    labeled, done = median_mark("labeled"), median_mark("done")
    return [
        "| console script, median | seconds |",
        "|---|---|",
        f"| interpreter and imports (a process that only imports it) | {importing:.1f} |",
        f"| start to voters loaded and precision set | {ready:.1f} |",
        f"| labeling {rows} rows | {labeled - ready:.1f} ({rows / (labeled - ready):.1f} rows/s) |",
        f"| writing the output | {done - labeled:.1f} |",
        f"| exit | {total - done:.1f} |",
        f"| whole process | {total:.1f} |",
    ]
