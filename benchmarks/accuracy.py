"""Accuracy, rows verified and the honesty of the estimate, on real data nobody here wrote.

Runs the agent, offline, with its default flags, on seeded samples of a labelled corpus
(``--dataset``: the Pang & Lee sentence polarity data by default; CoNLL-2010 uncertain
sentences; SpamAssassin e-mails; see :mod:`benchmarks.datasets`) with
``--verifier column:label`` (the paper's human-verifier setting: the gold label settles
each verified row), and reports for each seed: the true
accuracy of the final labels, the share of rows verified, the run's own estimate with its
95% interval (does it hold the truth?), and the time; then the mean accuracy, the
interval's coverage and the estimate's mean absolute error over the seeds, and a learning
curve (estimated and true accuracy against rows verified, per round).

    python benchmarks/accuracy.py --rows 2000 --seeds 5
    python benchmarks/accuracy.py --rows 2000 --seeds 5 --model specialist:minilm
    python benchmarks/accuracy.py --dataset uncertainty --rows 2000 --seeds 3
    python benchmarks/accuracy.py --dataset pang-lee-skewed --rows 2000 --first-seed 5 --seeds 5
    python benchmarks/accuracy.py --dataset sentiment-3 --rows 2000 --first-seed 5 --seeds 5
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.cli import main  # noqa: E402
from agent.labeler_runtime import voter_label_column, voter_probability_column  # noqa: E402
from benchmarks.datasets import DATASETS, corpus_sample  # noqa: E402


def read(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def share(flags) -> float:
    flags = list(flags)
    return sum(flags) / max(len(flags), 1)


def agent_args(
    data: Path,
    work: Path,
    min_agreement: float | None = None,
    voters: int | None = None,
    min_confidence: float | None = None,
    max_verified: str | None = None,
    extra: tuple[str, ...] = (),
    dataset: str = "pang-lee",
) -> list[str]:
    """The agent's command line for these benchmarks: offline, gold labels as the verifier,
    everything written under ``work`` (the labeled data to ``work/labeled.csv``); a flag left
    None keeps the agent's default."""
    flags = {
        "--min-agreement": min_agreement,
        "--min-confidence": min_confidence,
        "--max-verified": max_verified,
        "--voters": voters,
    }
    chosen = [
        str(part) for name, value in flags.items() if value is not None for part in (name, value)
    ]
    corpus = DATASETS[dataset]
    return [
        corpus.task, "--data", str(data), "--offline", "--labels", ",".join(corpus.labels),
        "--verifier", "column:label", *chosen, *extra, "--out", str(work / "out"),
        "--output", str(work / "labeled.csv"), "--runs-dir", str(work / "runs"), "--yes",
    ]  # fmt: skip


def true_curve(run_dir: Path, gold: list[str], rounds: list[dict]) -> list[float]:
    """The true accuracy of the labels after each assessed pass: rows verified by then take
    their verified label, the rest the pass's label."""
    verified: dict[int, str] = {}
    with open(run_dir / "verdicts.jsonl", encoding="utf-8") as handle:
        pilot = [json.loads(line) for line in handle]
    verified.update({v["row"]: v["label"] for v in pilot if v["reason"].startswith("pilot")})
    curve = []
    for record in rounds:
        labeled = read(
            next((run_dir / "labeled" / f"pass-{record['labeling_pass']}").glob("output.*"))
        )
        labels = [verified.get(i, row["label"]) for i, row in enumerate(labeled)]
        curve.append(share(a == b for a, b in zip(labels, gold, strict=True)))
        if record["records_path"]:
            for entry in map(json.loads, Path(record["records_path"]).read_text().splitlines()):
                verified[entry["row"]] = gold[entry["row"]]
    return curve


def heldout_groups(run_dir: Path, gold: list[str], final: list[dict], last_pass: int) -> dict:
    """How often the last pass labels each kind of row right: the unmarked held-out rows (what
    the estimate rests on), the marked ones, and the rows left unverified (what it estimates)."""
    output = read(next((run_dir / "labeled" / f"pass-{last_pass}").glob("output.*")))
    marks = json.loads((run_dir / "heldout.json").read_text(encoding="utf-8"))["rows"]
    marks = {int(row): marked for row, marked in marks.items()}
    kinds = {
        "unmarked": [row for row, marked in marks.items() if not marked],
        "marked": [row for row, marked in marks.items() if marked],
        "unverified": [row for row, entry in enumerate(final) if entry["source"] != "human"],
    }
    return {
        kind: {
            "rows": len(rows),
            "right": share(output[row]["label"] == gold[row] for row in rows),
            "confidence": sum(float(output[row]["confidence"]) for row in rows) / max(len(rows), 1),
        }
        for kind, rows in kinds.items()
    }


BUDGET = 0.3
"""The agent's default ``--max-verified`` (30%), the budget the baseline gets too."""


def unanimity_baseline(run_dir: Path, gold: list[str], summary: dict, seed: int) -> dict | None:
    """The paper's rule with the specialists the agent kept (those that carry signal): their
    unanimous label stands, every other row is disputed and verified, up to the same budget
    (the disputed rows in a seeded order; the rest keep the plain vote of the first pass).
    None when no specialist was kept."""
    output = read(next((run_dir / "labeled" / "pass-1").glob("output.*")))
    learned = {record["voter"] for record in summary["learned"]}
    names = [c[len("label_") :] for c in output[0] if c.startswith("label_")]
    columns = [
        voter_label_column(name)
        for name in names
        if name not in learned and voter_probability_column(name) in output[0]
    ]  # a voter has both columns; an input column renamed label_input has one
    if not columns:
        return None
    disputed = []
    for number, row in enumerate(output):
        votes = {row[column] for column in columns if row[column]}
        if len(votes) != 1:
            disputed.append(number)
    random.Random(seed).shuffle(disputed)
    verified = set(disputed[: int(BUDGET * len(gold))])
    at_budget = share(
        (gold[n] if n in verified else row["label"]) == gold[n] for n, row in enumerate(output)
    )
    every = set(disputed)
    return {
        "specialists": len(columns),
        "disputed": len(disputed) / len(gold),
        "accuracy_at_budget": at_budget,
        "accuracy_every_disputed": share(
            (gold[n] if n in every else row["label"]) == gold[n] for n, row in enumerate(output)
        ),
    }


def run(rows: int, seed: int, extra: tuple[str, ...], dataset: str = "pang-lee") -> dict:
    data = corpus_sample(dataset, rows, seed)
    gold = [row["label"] for row in read(data)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        stdout = io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(stdout):
            code = main(agent_args(data, work, extra=(*extra, "--json"), dataset=dataset))
        seconds = time.monotonic() - started
        if code != 0:
            raise SystemExit(f"the agent failed with exit {code}")
        summary = json.loads(stdout.getvalue()[stdout.getvalue().index("{") :])
        final = read(work / "labeled.csv")
        run_dir = next((work / "runs").iterdir())
        curve = true_curve(run_dir, gold, summary["rounds"])
        groups = heldout_groups(run_dir, gold, final, summary["rounds"][-1]["labeling_pass"])
        baseline = unanimity_baseline(run_dir, gold, summary, seed)
    estimate = summary["estimate"]["accuracy"]
    accuracy = share(row["label"] == g for row, g in zip(final, gold, strict=True))
    return {
        "seed": seed,
        "rows": len(gold),
        "majority": max(share(g == label for g in gold) for label in set(gold)),
        "accuracy": accuracy,
        "verified": share(row["source"] == "human" for row in final),
        "estimate": estimate,
        "covered": estimate["low"] <= accuracy <= estimate["high"],
        "macro_f1": summary["estimate"]["macro_f1"],
        "stopped": summary["stopped"],
        "rounds": [
            {
                "verified": r["verified"],
                "estimate": (r["estimate"] or {}).get("accuracy"),
                "true": t,
            }
            for r, t in zip(summary["rounds"], curve, strict=True)
        ],
        "voters": summary["voters"],
        "groups": groups,
        "unanimity": baseline,
        "seconds": seconds,
    }


def table(results: list[dict], dataset: str, extra: tuple[str, ...]) -> str:
    setting = " ".join(extra) or "the full offline catalog"
    rows = sorted({r["rows"] for r in results})
    lines = [
        f"{dataset}, {'/'.join(map(str, rows))} rows, default flags, column verifier, {setting}; "
        f"{platform.processor() or platform.machine()}",
        "",
        "| seed | accuracy | rows verified | estimate (95% interval) | holds the truth | rounds | "
        "stopped | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r["estimate"]
        lines.append(
            f"| {r['seed']} | {r['accuracy']:.3f} | {r['verified']:.1%} | {e['point']:.3f} "
            f"({e['low']:.3f}-{e['high']:.3f}) | {'yes' if r['covered'] else 'no'} | "
            f"{len(r['rounds']) - 1} | {r['stopped']} | {r['seconds']:.0f} |"
        )
    count = len(results)
    baselines = [r["unanimity"] for r in results if r.get("unanimity")]
    mae = sum(abs(r["estimate"]["point"] - r["accuracy"]) for r in results) / count
    seconds = sum(r["seconds"] for r in results) / count
    lines += [
        "",
        f"mean accuracy {sum(r['accuracy'] for r in results) / count:.3f}; mean rows verified "
        f"{sum(r['verified'] for r in results) / count:.1%}; the interval holds the truth in "
        f"{sum(r['covered'] for r in results)} of {count} seeds; mean absolute error of the "
        f"estimate {mae * 100:.1f} points; mean time {seconds:.0f} s; always answering the "
        f"most common label would score {sum(r['majority'] for r in results) / count:.3f}",
    ]
    if baselines:
        n = len(baselines)
        lines.append(
            f"the paper's unanimity vote of the kept specialists, disputed rows verified up to "
            f"the same {BUDGET:.0%}: {sum(b['accuracy_at_budget'] for b in baselines) / n:.3f}; "
            f"with every disputed row verified "
            f"({sum(b['disputed'] for b in baselines) / n:.1%} of the rows): "
            f"{sum(b['accuracy_every_disputed'] for b in baselines) / n:.3f}"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4))
    for r in results:
        points = [p for p in r["rounds"] if p["estimate"] is not None]
        x = [p["verified"] for p in points]
        line = axes.plot(x, [p["estimate"]["point"] for p in points], marker="o")[0]
        axes.fill_between(
            x, [p["estimate"]["low"] for p in points], [p["estimate"]["high"] for p in points],
            color=line.get_color(), alpha=0.12,
        )  # fmt: skip
        axes.plot(x, [p["true"] for p in points], linestyle="--", color=line.get_color())
    axes.set_xlabel("rows verified")
    axes.set_ylabel("accuracy of the labels")
    axes.set_title(f"{title}: estimated (solid, 95% band) and true (dashed)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="pang-lee")
    parser.add_argument("--rows", type=int, default=2000, help="rows per sample (at most all)")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds (one sample each)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first of them (default 0)")
    parser.add_argument("--model", action="append", default=[], help="voters named with --model")
    parser.add_argument("--plot", type=Path, default=None, help="learning-curve PNG to write")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args()
    extra = tuple(part for model in args.model for part in ("--model", model))
    results = []
    if args.seeds < 1 or args.first_seed < 0:
        parser.error("--seeds must be at least 1 and --first-seed at least 0")
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        results.append(run(args.rows, seed, extra, args.dataset))
        print(f"seed {seed}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    print(table(results, args.dataset, extra))
    if args.plot:
        plot(results, args.plot, " ".join(extra) or "full catalog")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main_cli()
