"""A learning pass holds at most a fixed number of rows: the reservoir it reads them through."""

from __future__ import annotations

from collections import Counter

from agent.learning import Reservoir


def test_a_stream_that_fits_is_kept_whole_and_in_order():
    reservoir = Reservoir(10, "seed").extend(range(7))

    assert reservoir.items == list(range(7))
    assert not reservoir.sampled


def test_a_larger_stream_is_a_seeded_sample_of_the_whole_of_it():
    first = Reservoir(100, "seed").extend(range(100_000))
    again = Reservoir(100, "seed").extend(range(100_000))
    other = Reservoir(100, "other").extend(range(100_000))

    assert len(first.items) == 100 and first.sampled and first.seen == 100_000
    assert first.items == again.items and first.items != other.items
    assert len(set(first.items)) == 100
    # Uniform over the stream: late items are as likely as early ones.
    halves = Counter(item >= 50_000 for item in first.items)
    assert 30 <= halves[True] <= 70


def test_every_item_has_the_same_chance():
    counts: Counter[int] = Counter()
    for seed in range(400):
        counts.update(Reservoir(5, str(seed)).extend(range(20)).items)

    # 400 samples of 5 of 20 items: each item expected 100 times.
    assert min(counts.values()) > 60 and max(counts.values()) < 140
