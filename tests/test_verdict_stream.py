"""Verdicts merged into the labeled data as streams: the same results as looking each row up
in a dict of every verdict, whether the verdicts fit one sorted run or spill to several."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.nodes.emit_package import write_labeled_data
from agent.verification import stream as verdict_stream
from agent.verification.store import resolve
from agent.verification.stream import keyed_by_row, latest_by_row, with_verdicts


def write_verdicts(path: Path, verdicts: list[dict], torn: str = "") -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts)
        handle.write(torn)


def shuffled_verdicts(rows: int, seed: int = 0) -> list[dict]:
    """Verdicts in no row order, several for some rows (the last one counts)."""
    generator = random.Random(seed)
    verdicts = []
    for number in range(rows * 2):
        row = generator.randrange(rows)
        source = generator.choice(["vote", "llm", "human", "unresolved"])
        label = None if source == "unresolved" else generator.choice(["a", "b"])
        verdicts.append({"row": row, "label": label, "source": source, "reason": f"\t{number}"})
    return verdicts


def as_dict(verdicts: list[dict]) -> dict[int, dict]:
    return {verdict["row"]: verdict for verdict in verdicts}


@pytest.mark.parametrize("run_records", [1, 3, 7, 1000])
def test_latest_by_row_is_the_last_verdict_of_each_row_in_row_order(tmp_path, run_records):
    path = tmp_path / "verdicts.jsonl"
    verdicts = shuffled_verdicts(40)
    write_verdicts(path, verdicts, torn='{"row": 0, "label": "torn"')

    found = list(latest_by_row(path, run_records))

    expected = as_dict(verdicts)
    assert found == [expected[row] for row in sorted(expected)]
    assert not [p for p in tmp_path.iterdir() if p.name != "verdicts.jsonl"]  # runs removed


def test_latest_by_row_of_a_missing_or_empty_file_is_empty(tmp_path):
    assert list(latest_by_row(tmp_path / "none.jsonl")) == []
    (tmp_path / "empty.jsonl").write_text("")
    assert list(latest_by_row(tmp_path / "empty.jsonl")) == []


@pytest.mark.parametrize("run_records", [2, 1000])
def test_verdicts_appended_while_latest_by_row_is_consumed_are_not_seen(tmp_path, run_records):
    path = tmp_path / "verdicts.jsonl"
    verdicts = [{"row": row, "label": "a", "source": "vote", "reason": ""} for row in range(5)]
    write_verdicts(path, verdicts)
    stream = latest_by_row(path, run_records)

    first = next(stream)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"row": 3, "label": "b", "source": "llm", "reason": ""}) + "\n")

    assert [first, *stream] == verdicts


def test_with_verdicts_joins_a_row_stream_as_a_dict_lookup_would():
    verdicts = [{"row": row, "source": "vote"} for row in (1, 2, 5, 9, 12)]
    rows = (f"row {number}" for number in range(10))  # an iterator, read once

    joined = list(with_verdicts(rows, iter(verdicts)))

    lookup = as_dict(verdicts)
    assert joined == [(n, f"row {n}", lookup.get(n)) for n in range(10)]


def test_keyed_by_row_pairs_records_with_their_verdicts_and_refuses_an_unordered_file():
    records = [{"row": row} for row in (0, 3, 4, 8)]
    verdicts = [{"row": row, "source": "vote"} for row in (1, 3, 8, 9)]

    assert list(keyed_by_row(records, verdicts)) == [
        (records[0], None),
        (records[1], verdicts[1]),
        (records[2], None),
        (records[3], verdicts[2]),
    ]
    with pytest.raises(ValueError, match="row order"):
        list(keyed_by_row([{"row": 4}, {"row": 2}], []))


def test_labeled_data_is_the_same_when_the_verdicts_spill_to_sorted_runs(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = 60
    verdicts = shuffled_verdicts(rows, seed=2)
    write_verdicts(run_dir / "verdicts.jsonl", verdicts)
    labeled = tmp_path / "output.csv"
    with open(labeled, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "confidence", "agreement", "needs_review"])
        for row in range(rows):
            flag = "true" if row % 3 == 0 else "false"  # as the labeler writes CSV flags
            writer.writerow([f"text {row}", "ab"[row % 2], 0.5, 0.5, flag])
    state = SimpleNamespace(run_dir=str(run_dir), labeling=SimpleNamespace(output_path=labeled))
    monkeypatch.setattr(verdict_stream, "RUN_RECORDS", 4)

    sources = write_labeled_data(state, tmp_path / "labeled.csv")

    with open(tmp_path / "labeled.csv", newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    latest = as_dict(verdicts)
    expected = [resolve("ab"[row % 2], latest.get(row), row % 3 == 0) for row in range(rows)]
    assert [(r["label"] or None, r["source"]) for r in written] == expected
    assert sum(sources.values()) == rows
