"""Accuracy of the offline specialists on real data nobody here wrote.

Runs the agent, offline, on a sample of the Pang & Lee sentence polarity data
with ``--verifier column:label`` (the paper's human-verifier setting: the gold
label settles each escalated row) and reports, from the run's own files:
each specialist's accuracy, the majority vote's, the vote's on unanimous rows,
the share of rows escalated, and the accuracy after verification, before and
after the few-shot head fitted on the verified rows.

    python benchmarks/accuracy.py --rows 2000
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.cli import main  # noqa: E402
from benchmarks.datasets import pang_lee_sample  # noqa: E402


def read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def share(flags) -> float:
    flags = list(flags)
    return sum(flags) / max(len(flags), 1)


def evaluate(run_dir: Path, output: Path, gold: list[str]) -> dict:
    first = read(next((run_dir / "labeled" / "pass-1").glob("output.*")))
    final = read(output)
    voters = [c[len("label_") :] for c in first[0] if c.startswith("label_") and c != "label_input"]
    escalated = [row["needs_review"] == "true" for row in first]
    unanimous = [len({row[f"label_{v}"] for v in voters}) == 1 for row in first]
    verified_first = [
        g if esc else row["label"] for row, esc, g in zip(first, escalated, gold, strict=True)
    ]
    return {
        "voters": {
            v: share(row[f"label_{v}"] == g for row, g in zip(first, gold, strict=True))
            for v in voters
        },
        "abstained": {v: share(row[f"label_{v}"] == "" for row in first) for v in voters},
        "majority vote": share(row["label"] == g for row, g in zip(first, gold, strict=True)),
        "unanimous share": share(unanimous),
        "vote on unanimous rows": share(
            row["label"] == g for row, g, u in zip(first, gold, unanimous, strict=True) if u
        ),
        "escalated (first pass)": share(escalated),
        "after verification, before head": share(
            label == g for label, g in zip(verified_first, gold, strict=True)
        ),
        "verified in all": share(row["source"] == "human" for row in final),
        "after verification and head": share(
            row["label"] == g for row, g in zip(final, gold, strict=True)
        ),
    }


def agent_args(data: Path, work: Path, min_agreement: float, voters: int) -> list[str]:
    """The agent's command line for these benchmarks: offline, gold labels as the verifier,
    everything written under ``work`` (the labeled data to ``work/labeled.csv``)."""
    return [
        "label these movie review sentences by sentiment polarity",
        "--data", str(data), "--offline", "--labels", "negative,positive",
        "--verifier", "column:label", "--min-agreement", str(min_agreement),
        "--voters", str(voters), "--out", str(work / "out"),
        "--output", str(work / "labeled.csv"), "--runs-dir", str(work / "runs"), "--yes",
    ]  # fmt: skip


def run(rows: int, min_agreement: float, voters: int, seed: int) -> dict:
    data = pang_lee_sample(rows, seed)
    gold = [row["label"] for row in read(data)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        output = work / "labeled.csv"
        args = agent_args(data, work, min_agreement, voters)
        started = time.monotonic()
        code = main(args)
        if code != 0:
            raise SystemExit(f"the agent failed with exit {code}")
        seconds = time.monotonic() - started
        run_dir = next((work / "runs").iterdir())
        figures = evaluate(run_dir, output, gold)
        figures["seconds"] = seconds
        manifest = json.loads((work / "out" / "sentiment-labeler" / "manifest.json").read_text())
        figures["voter sources"] = [v["origin"] for v in manifest["package"]["voters"]]
    return figures


def table(figures: dict, rows: int, min_agreement: float) -> str:
    lines = [
        f"Pang & Lee sentence polarity, {rows} rows, `--min-agreement {min_agreement}`, "
        f"column verifier; {platform.processor() or platform.machine()}, "
        f"{figures['seconds']:.0f} s end to end",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    for voter, accuracy in figures["voters"].items():
        abstained = figures["abstained"][voter]
        lines.append(f"| accuracy of {voter} (abstains on {abstained:.1%}) | {accuracy:.3f} |")
    for name in (
        "majority vote", "unanimous share", "vote on unanimous rows", "escalated (first pass)",
        "after verification, before head", "verified in all", "after verification and head",
    ):  # fmt: skip
        lines.append(f"| {name} | {figures[name]:.3f} |")
    return "\n".join(lines)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--min-agreement", type=float, default=0.75)
    parser.add_argument("--voters", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    figures = run(args.rows, args.min_agreement, args.voters, args.seed)
    print(table(figures, args.rows, args.min_agreement))


if __name__ == "__main__":
    main_cli()
