"""Small data sets the tests write and read: gold-labelled rows, CSV and JSON Lines helpers.

Each builder writes a fresh file under the folder it is given, so a test may change its copy.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

EXAMPLE_TWEETS = Path(__file__).resolve().parents[2] / "examples" / "tweets.csv"

REVIEWS = (
    ("positive", "An absolute delight from start to finish; the cast is wonderful."),
    ("negative", "A tedious mess with no story and no reason to exist."),
    ("positive", "Gorgeous photography and a moving, heartfelt performance."),
    ("negative", "I walked out after forty minutes. Boring and badly acted."),
    ("positive", "One of the funniest and smartest comedies of the year."),
    ("negative", "The dialogue is clumsy and the ending makes no sense."),
    ("positive", "A warm, charming story that left the whole audience smiling."),
    ("negative", "Dull characters stuck in a plot that goes nowhere."),
    ("negative", "The soundtrack is great but the pacing drags and the story is thin."),
    ("positive", "A masterpiece. I want to watch it again right away."),
    ("negative", "Cheap effects and a script that insults your intelligence."),
    ("positive", "It is not perfect, yet I could not stop smiling."),
    ("positive", "Brilliantly written and beautifully directed."),
    ("negative", "Painfully slow and utterly forgettable."),
    ("positive", "The lead actor is superb and the story is gripping."),
    ("negative", "A disappointing sequel that wastes its talented cast."),
    ("positive", "Funny and touching in equal measure; highly recommended."),
    ("negative", "The worst movie I have seen in years."),
    ("negative", "Not a single laugh in two hours of so-called comedy."),
    ("positive", "A fresh, clever take on a tired genre."),
    ("negative", "Predictable, loud and completely empty."),
    ("positive", "Every frame is full of life and colour."),
    ("negative", "I regret paying for this ticket."),
    ("positive", "A solid, enjoyable film for the whole family."),
    ("negative", "Awkward, boring and far too long."),
    ("positive", "Smart, moving and wonderfully acted."),
    ("negative", "The plot is a confusing mess."),
    ("positive", "A quiet little film that stays with you."),
    ("negative", "Nothing works: not the jokes, not the drama, not the music."),
    ("positive", "You will leave the cinema happier than you came in."),
)
"""(gold label, text): thirty film reviews the offline sentiment specialists can tell apart."""

# Words the tiny voters know (their vocabulary), none of which they were trained to find toxic:
# a fine-tuning stage teaches them that "movie" and "boring" are the toxic words of these rows.
LEARNABLE_TOXIC_WORDS = ("movie", "boring")
PLAIN_WORDS = ("weather", "park", "friends", "day", "lovely", "service", "staff", "great")
FILLER = ("the", "is", "was", "and", "a", "with", "in", "today", "far", "too", "long")


def toxic_sentences(count: int, seed: int) -> list[tuple[str, str]]:
    """(text, label) rows, every other one toxic: toxic exactly when a learnable word occurs."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        toxic = index % 2 == 0
        words = rng.sample(FILLER, 3) + [rng.choice(PLAIN_WORDS)]
        if toxic:
            words.append(rng.choice(LEARNABLE_TOXIC_WORDS))
        rng.shuffle(words)
        rows.append((" ".join(words), "toxic" if toxic else "non-toxic"))
    return rows


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def write_gold_tweets(target: Path, toxic_words: Sequence[str]) -> Path:
    """``examples/tweets.csv`` with a ``gold`` column: a tweet holding one of ``toxic_words``
    is toxic, any other is not (the column verifier then settles each disputed row)."""
    rows = read_csv(EXAMPLE_TWEETS)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, ["id", "text", "gold"])
        writer.writeheader()
        for row in rows:
            toxic = any(word in row["text"].lower() for word in toxic_words)
            writer.writerow(row | {"gold": "toxic" if toxic else "non-toxic"})
    return target
