"""Accuracy against escalation: how the review rule trades verified rows for accuracy.

Runs the agent once, offline, on a sample of the Pang & Lee sentence polarity data
(the offline voters, ``--verifier column:label``: gold labels settle each escalated
row, the paper's human-verifier setting), then applies the labeler's review rule,
``agreement < min_agreement or confidence < min_confidence``, to the first labeling
pass's own ``agreement`` and ``confidence`` columns over a grid of thresholds. Each
point is the share of rows escalated and the accuracy once those rows are verified.
The agent's default rule and the rule the run used are marked.

    python -m benchmarks.quality --rows 2000 --plot benchmarks/quality.png
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.cli import main  # noqa: E402
from agent.settings import Settings  # noqa: E402
from benchmarks.accuracy import agent_args, read  # noqa: E402
from benchmarks.datasets import pang_lee_sample  # noqa: E402

AGREEMENTS = (0.5, 0.67, 0.75, 0.9, 1.0)
CONFIDENCES = (0.0, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85)


def first_pass(rows: int, seed: int, min_agreement: float, voters: int) -> list[dict[str, str]]:
    data = pang_lee_sample(rows, seed)
    gold = [row["label"] for row in read(data)]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if main(agent_args(data, work, min_agreement, voters)) != 0:
            raise SystemExit("the agent failed")
        run_dir = next((work / "runs").iterdir())
        output = read(next((run_dir / "labeled" / "pass-1").glob("output.*")))
    return [row | {"gold": label} for row, label in zip(output, gold, strict=True)]


def point(rows: list[dict[str, str]], min_agreement: float, min_confidence: float) -> dict:
    escalated = [
        float(row["agreement"]) < min_agreement or float(row["confidence"]) < min_confidence
        for row in rows
    ]
    correct = [esc or row["label"] == row["gold"] for row, esc in zip(rows, escalated, strict=True)]
    return {
        "min_agreement": min_agreement,
        "min_confidence": min_confidence,
        "escalated": sum(escalated) / len(rows),
        "accuracy": sum(correct) / len(rows),
    }


def curve(rows: list[dict[str, str]]) -> list[dict]:
    return [point(rows, a, c) for a in AGREEMENTS for c in CONFIDENCES]


def frontier(points: list[dict]) -> list[dict]:
    """The points no other point beats on both escalation and accuracy."""
    best = []
    for p in sorted(points, key=lambda p: (p["escalated"], -p["accuracy"])):
        if not best or p["accuracy"] > best[-1]["accuracy"]:
            best.append(p)
    return best


def plot(points: list[dict], marked: dict[str, dict], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for a in AGREEMENTS:
        line = [p for p in points if p["min_agreement"] == a]
        axes.plot(
            [100 * p["escalated"] for p in line],
            [p["accuracy"] for p in line],
            marker="o",
            markersize=3,
            label=f"min agreement {a:g}, confidence 0 -> {CONFIDENCES[-1]:g}",
        )
    for name, p in marked.items():
        axes.scatter([100 * p["escalated"]], [p["accuracy"]], s=120, facecolors="none",
                     edgecolors="black", zorder=5)  # fmt: skip
        axes.annotate(name, (100 * p["escalated"], p["accuracy"]), textcoords="offset points",
                      xytext=(6, -12), fontsize=8)  # fmt: skip
    axes.set_xlabel("rows escalated to the verifier (%)")
    axes.set_ylabel("accuracy after verification")
    axes.set_title("Pang & Lee, offline voters, column verifier")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(target, dpi=110)


def table(points: list[dict], marked: dict[str, dict], rows: int) -> str:
    lines = [
        f"Pang & Lee sentence polarity, {rows} rows, offline voters, column verifier; "
        f"{platform.machine()}. Accuracy after verifying the escalated rows:",
        "",
        "| min agreement \\ min confidence | " + " | ".join(f"{c:g}" for c in CONFIDENCES) + " |",
        "|---|" + "---|" * len(CONFIDENCES),
    ]
    for a in AGREEMENTS:
        cells = []
        for c in CONFIDENCES:
            p = next(p for p in points if p["min_agreement"] == a and p["min_confidence"] == c)
            cells.append(f"{p['accuracy']:.3f} @ {p['escalated']:.1%}")
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    lines += ["", "Marked: " + "; ".join(
        f"{name}: min agreement {p['min_agreement']:g}, min confidence {p['min_confidence']:g} "
        f"-> {p['accuracy']:.3f} @ {p['escalated']:.1%} escalated"
        for name, p in marked.items()
    )]  # fmt: skip
    lines.append(
        "Frontier: "
        + ", ".join(
            f"{p['accuracy']:.3f} @ {p['escalated']:.1%} ({p['min_agreement']:g}/"
            f"{p['min_confidence']:g})"
            for p in frontier(points)
        )
    )
    return "\n".join(lines)


def main_cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--voters", type=int, default=4)
    parser.add_argument("--plot", type=Path, help="write the curve as a PNG here")
    parser.add_argument("--json", type=Path, help="also write the points here")
    args = parser.parse_args()
    defaults = Settings()
    rows = first_pass(args.rows, args.seed, 0.75, args.voters)
    points = curve(rows)
    marked = {
        "agent default": point(rows, defaults.min_agreement, defaults.min_confidence),
        "accuracy benchmark (0.75)": point(rows, 0.75, 0.0),
    }
    if args.plot:
        plot(points, marked, args.plot)
    if args.json:
        args.json.write_text(json.dumps({"points": points, "marked": marked}, indent=2) + "\n")
    print(table(points, marked, args.rows))


if __name__ == "__main__":
    main_cli()
