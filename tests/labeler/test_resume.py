"""Incremental results and resume: an interrupted run picks up where it stopped, exactly."""

from __future__ import annotations

import csv
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from templates.labeler.pkg import kinds
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.engine import Labeler, label_file
from templates.labeler.pkg.voters import Runtime

ROWS = 35
CHUNK = 10
LABELS = ("negative", "positive")


class VoterCrashed(RuntimeError):
    pass


class FakeVoter:
    """Deterministic probabilities from a hash of (voter, text); records every call."""

    calls: list[list[str]] = []
    """Texts of every ``predict`` call, all voters, in order."""
    crash_on_call: int | None = None
    """1-based call number that raises, as a model running out of memory would."""

    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.config = config

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        FakeVoter.calls.append(list(texts))
        if FakeVoter.crash_on_call == len(FakeVoter.calls):
            raise VoterCrashed(f"voter {self.config.name} crashed")
        scores = [zlib.crc32(f"{self.config.name}|{text}".encode()) % 1000 for text in texts]
        positive = np.array([(score + 0.5) / 1000 for score in scores])
        return np.stack([1 - positive, positive], axis=1)


@pytest.fixture
def fake_voters(monkeypatch) -> type[FakeVoter]:
    monkeypatch.setitem(kinds.ADAPTERS, "fake", f"{FakeVoter.__module__}:FakeVoter")
    monkeypatch.setattr(FakeVoter, "calls", [])
    monkeypatch.setattr(FakeVoter, "crash_on_call", None)
    return FakeVoter


def make_labeler(tmp_path: Path) -> Labeler:
    spec = LabelerSpec(
        name="fake-labeler",
        task="label sentiment",
        labels=LABELS,
        text_column="text",
        min_agreement=1.0,
        voters=tuple(
            VoterConfig(name, "fake", "fake:none", "r", {label: label for label in LABELS})
            for name in ("first", "second")
        ),
    )
    return Labeler(spec, Runtime(tmp_path, "cpu", 4))


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "input.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([index, f"row {index} says {index * 7 % 11}"] for index in range(ROWS))
    return path


def run(tmp_path, table, output_name, *, min_agreement=1.0, on_progress=None):
    return label_file(
        make_labeler(tmp_path),
        table,
        tmp_path / output_name,
        text_column="text",
        chunk_size=CHUNK,
        min_agreement=min_agreement,
        on_progress=on_progress,
    )


def labeled_texts(calls: list[list[str]]) -> list[str]:
    """Texts the first voter labeled (each slice goes to both voters in turn)."""
    return [text for texts in calls[::2] for text in texts]


def test_a_run_interrupted_by_a_crash_resumes_without_losing_or_repeating_rows(
    tmp_path, table, fake_voters
):
    reference = run(tmp_path, table, "reference.csv")
    fake_voters.calls.clear()
    # Two voters, one call each per chunk: the 5th call is the first voter on chunk 2.
    fake_voters.crash_on_call = 5
    with pytest.raises(VoterCrashed):
        run(tmp_path, table, "labeled.csv")
    assert not (tmp_path / "labeled.csv").exists()
    parts = sorted(p.name for p in (tmp_path / "labeled.csv.parts").glob("part-*"))
    assert parts == ["part-000000.jsonl", "part-000001.jsonl"]
    assert max(len(texts) for texts in fake_voters.calls) <= CHUNK

    fake_voters.calls.clear()
    fake_voters.crash_on_call = None
    resumed = run(tmp_path, table, "labeled.csv")

    assert resumed.resumed_chunks == 2 and resumed.rows == ROWS
    assert labeled_texts(fake_voters.calls) == [f"row {i} says {i * 7 % 11}" for i in range(20, 35)]
    assert (tmp_path / "labeled.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()
    assert resumed.needs_review == reference.needs_review
    assert not (tmp_path / "labeled.csv.parts").exists()


def test_a_run_stopped_with_ctrl_c_resumes_to_the_same_output(tmp_path, table, fake_voters):
    run(tmp_path, table, "reference.csv")
    seen: list[tuple[int, int]] = []

    def stop_after_three_chunks(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 3 * CHUNK:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, table, "labeled.csv", on_progress=stop_after_three_chunks)
    assert seen == [(0, ROWS), (10, ROWS), (20, ROWS), (30, ROWS)]

    fake_voters.calls.clear()
    seen.clear()
    resumed = run(tmp_path, table, "labeled.csv", on_progress=lambda d, t: seen.append((d, t)))

    assert resumed.resumed_chunks == 3
    assert seen == [(30, ROWS), (35, ROWS)]
    assert len(labeled_texts(fake_voters.calls)) == ROWS - 3 * CHUNK
    assert (tmp_path / "labeled.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_parts_of_a_run_with_other_settings_are_discarded(tmp_path, table, fake_voters):
    fake_voters.crash_on_call = 5
    with pytest.raises(VoterCrashed):
        run(tmp_path, table, "labeled.csv", min_agreement=1.0)
    fake_voters.crash_on_call = None
    run(tmp_path, table, "reference.csv", min_agreement=0.5)
    fake_voters.calls.clear()

    rerun = run(tmp_path, table, "labeled.csv", min_agreement=0.5)

    assert rerun.resumed_chunks == 0
    assert len(labeled_texts(fake_voters.calls)) == ROWS
    assert (tmp_path / "labeled.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_parts_of_a_changed_input_are_discarded(tmp_path, table, fake_voters):
    run(tmp_path, table, "reference.csv")
    stale = tmp_path / "labeled.csv.parts"
    stale.mkdir()
    (stale / "fingerprint").write_text("another run", encoding="utf-8")
    (stale / "part-000000.jsonl").write_text('{"label": "stale"}\n' * CHUNK, encoding="utf-8")

    rerun = run(tmp_path, table, "labeled.csv")

    assert rerun.resumed_chunks == 0
    assert (tmp_path / "labeled.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()


def test_min_confidence_flags_unanimous_rows_the_voters_are_unsure_of(tmp_path, fake_voters):
    labeler = make_labeler(tmp_path)
    texts = [f"row {index}" for index in range(ROWS)]
    by_agreement = labeler.label_texts(texts, 0.5)
    assert not any(row["needs_review"] for row in by_agreement)  # two voters: share >= 0.5
    threshold = sorted(row["confidence"] for row in by_agreement)[ROWS // 2]
    both = labeler.label_texts(texts, 0.5, min_confidence=threshold)
    assert [row["needs_review"] for row in both] == [
        row["confidence"] < threshold for row in by_agreement
    ]
    assert [row["label"] for row in both] == [row["label"] for row in by_agreement]
    assert 0 < sum(row["needs_review"] for row in both) < ROWS


def test_label_file_applies_min_confidence(tmp_path, table, fake_voters):
    first = run(tmp_path, table, "out.csv")
    labeler = make_labeler(tmp_path)
    again = label_file(
        labeler, table, tmp_path / "out.csv", text_column="text", chunk_size=CHUNK,
        min_agreement=1.0, min_confidence=0.99,
    )  # fmt: skip
    assert again.rows == first.rows and again.needs_review == ROWS
