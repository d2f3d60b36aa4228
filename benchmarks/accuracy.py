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


def pilot_rows(run_dir: Path) -> set[int]:
    """Rows the pilot verified and the run kept."""
    with open(run_dir / "verdicts.jsonl", encoding="utf-8") as handle:
        verdicts = [json.loads(line) for line in handle]
    return {v["row"] for v in verdicts if v["reason"].startswith("pilot")}


def first_pass_verified(run_dir: Path, first: list[dict[str, str]]) -> set[int]:
    """Rows verified by the end of the first pass: the pilot's, then the first pass's own (the
    budget's choice when there is one, else every row it flagged)."""
    rows = pilot_rows(run_dir)
    budget = run_dir / "budget" / "pass-1.json"
    if budget.exists():
        return rows | set(json.loads(budget.read_text(encoding="utf-8"))["verify"])
    return rows | {i for i, row in enumerate(first) if row["needs_review"] == "true"}


def evaluate(run_dir: Path, output: Path, gold: list[str]) -> dict:
    first = read(next((run_dir / "labeled" / "pass-1").glob("output.*")))
    final = read(output)
    voters = [c[len("label_") :] for c in first[0] if c.startswith("label_") and c != "label_input"]
    flagged = [row["needs_review"] == "true" for row in first]
    unanimous = [len({row[f"label_{v}"] for v in voters}) == 1 for row in first]
    verified = first_pass_verified(run_dir, first)
    after_first = [
        g if i in verified else row["label"]
        for i, (row, g) in enumerate(zip(first, gold, strict=True))
    ]
    pilot = len(pilot_rows(run_dir))
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
        "verified in the pilot": pilot / len(gold),
        "flagged on the first pass": share(flagged),
        "verified by the end of the first pass": len(verified) / len(gold),
        "after the first pass's verification": share(
            label == g for label, g in zip(after_first, gold, strict=True)
        ),
        "verified in all": share(row["source"] == "human" for row in final),
        "final": share(row["label"] == g for row, g in zip(final, gold, strict=True)),
    }


def agent_args(
    data: Path,
    work: Path,
    min_agreement: float,
    voters: int,
    min_confidence: float = 0.0,
    max_verified: str | None = None,
) -> list[str]:
    """The agent's command line for these benchmarks: offline, gold labels as the verifier,
    everything written under ``work`` (the labeled data to ``work/labeled.csv``)."""
    budget = ["--max-verified", max_verified] if max_verified else []
    return [
        "label these movie review sentences by sentiment polarity",
        "--data", str(data), "--offline", "--labels", "negative,positive",
        "--verifier", "column:label", "--min-agreement", str(min_agreement),
        "--min-confidence", str(min_confidence), *budget,
        "--voters", str(voters), "--out", str(work / "out"),
        "--output", str(work / "labeled.csv"), "--runs-dir", str(work / "runs"), "--yes",
    ]  # fmt: skip


def run(rows: int, rule: dict, voters: int, seed: int) -> dict:
    data = pang_lee_sample(rows, seed)
    gold = [row["label"] for row in read(data)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        output = work / "labeled.csv"
        args = agent_args(data, work, voters=voters, **rule)
        started = time.monotonic()
        code = main(args)
        if code != 0:
            raise SystemExit(f"the agent failed with exit {code}")
        seconds = time.monotonic() - started
        run_dir = next((work / "runs").iterdir())
        figures = evaluate(run_dir, output, gold)
        figures["seconds"] = seconds
        lock = json.loads((work / "out" / "sentiment-labeler" / "models.lock.json").read_text())
        figures["learned vote"] = lock.get("learned_vote")
    return figures


def table(figures: dict, rows: int, rule: dict) -> str:
    flags = f"--min-agreement {rule['min_agreement']} --min-confidence {rule['min_confidence']}"
    if rule["max_verified"]:
        flags += f" --max-verified {rule['max_verified']}"
    lines = [
        f"Pang & Lee sentence polarity, {rows} rows, `{flags}`, column verifier; "
        f"{platform.processor() or platform.machine()}, {figures['seconds']:.0f} s end to end",
        "",
        "| measure | value |",
        "|---|---|",
    ]
    for voter, accuracy in figures["voters"].items():
        abstained = figures["abstained"][voter]
        lines.append(f"| accuracy of {voter} (abstains on {abstained:.1%}) | {accuracy:.3f} |")
    for name in (
        "majority vote", "unanimous share", "vote on unanimous rows", "verified in the pilot",
        "flagged on the first pass", "verified by the end of the first pass",
        "after the first pass's verification", "verified in all", "final",
    ):  # fmt: skip
        lines.append(f"| {name} | {figures[name]:.3f} |")
    vote = figures["learned vote"]
    if vote:
        weights = ", ".join(f"{name} {weight:.2f}" for name, weight in vote["weights"].items())
        lines.append(
            f"| learned vote ({vote['examples']} verified rows; cross-validated "
            f"{vote['cross_validated_accuracy']:.3f}, plain vote {vote['plain_vote_accuracy']:.3f})"
            f" | {weights} |"
        )
    return "\n".join(lines)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--min-agreement", type=float, default=0.75)
    parser.add_argument("--min-confidence", type=float, default=0.9)
    parser.add_argument("--max-verified", default="35%", help="'' for no budget")
    parser.add_argument("--voters", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rule = {
        "min_agreement": args.min_agreement,
        "min_confidence": args.min_confidence,
        "max_verified": args.max_verified or None,
    }
    figures = run(args.rows, rule, args.voters, args.seed)
    print(table(figures, args.rows, rule))


if __name__ == "__main__":
    main_cli()
