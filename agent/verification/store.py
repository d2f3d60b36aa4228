"""The verdict store: ``verdicts.jsonl`` in the run folder, and the one rule that turns a
row's vote and verdict into its final label.

Every verdict of a run (the pilot's verified rows, each pass's LLM, column, review and
``vote`` verdicts) is appended here, flushed and fsynced in batches; a crash can only tear
the last line, which readers skip and writers cut. A row may have several verdicts; the last
counts. :mod:`agent.verification.stream` walks them in row order without holding them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.files import replace_durably
from agent.state import RunState
from agent.verification.stream import keyed_by_row, latest_by_row

VERIFIED_SOURCES = ("llm", "human")
"""Verdicts that settle a row for good (and may teach the voters)."""


def resolve(
    vote_label: str | None, verdict: dict | None, needs_review: bool
) -> tuple[str | None, str]:
    """(label, source) of a row: a verified label wins; a row put to a verifier that has not
    answered stays unresolved; every other row keeps the latest pass's vote, as ``vote`` when
    its voters disputed it and as ``consensus`` when they agreed.

    A verdict of source ``vote`` (a row left to the vote) takes the row's current vote,
    ``vote_label``, not the label stored when it was written: a later, better-informed
    labeling pass decides it.
    """
    if verdict is not None and verdict["source"] in VERIFIED_SOURCES:
        return verdict["label"], verdict["source"]
    if verdict is not None and verdict["source"] == "unresolved":
        return None, "unresolved"
    return vote_label, "vote" if needs_review else "consensus"


VERDICTS_FILE = "verdicts.jsonl"
"""Every verdict of the run, the pilot's included, in the run folder."""


APPEND_LINES = 10_000
"""Verdict lines written at once (a pass may leave millions of rows to the vote)."""


@dataclass(frozen=True)
class Disputed:
    """The last pass's disputed rows, each with its latest verdict, read from the run's files
    at every call: a run may dispute millions of rows, too many to hold."""

    disagreements: Path
    verdicts: Path

    def pairs(self) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(disagreement record, the row's latest verdict or None), in row order. The verdicts
        are read to the end before the first pair comes, so appending to them while this is
        consumed does not change what it gives."""
        return keyed_by_row(read_jsonl(self.disagreements), latest_by_row(self.verdicts))

    def pending(self) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """The pairs of rows that may still be verified."""
        return ((record, verdict) for record, verdict in self.pairs() if _open(verdict))

    def rows(self) -> Iterator[int]:
        return (record["row"] for record in read_jsonl(self.disagreements))


def latest_verdicts(path: Path) -> dict[int, dict[str, Any]]:
    """Row -> its latest verdict (a row left to the vote may be verified in a later pass)."""
    return {verdict["row"]: verdict for verdict in read_jsonl(path)}


def count_verdicts(latest) -> tuple[int, int]:
    """(rows verified by an LLM or a person, the pilot's included; rows awaiting review)."""
    verified = unresolved = 0
    for verdict in latest:
        verified += verdict["source"] in VERIFIED_SOURCES
        unresolved += verdict["source"] == "unresolved"
    return verified, unresolved


def _open(verdict: dict | None) -> bool:
    """Whether a row may still be verified: it has no verdict, or was left to the vote."""
    return verdict is None or verdict["source"] == "vote"


def spent_rows(latest: Iterable[dict]) -> int:
    """Rows the verification budget has paid for: every row whose latest verdict is not ``vote``
    (verified, the pilot's included, or put to a verifier and unresolved)."""
    return sum(1 for verdict in latest if verdict["source"] != "vote")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return  # torn by a crash mid-write: that record was never acknowledged
            if line.strip():
                yield json.loads(line)


def drop_torn_tail(path: Path) -> None:
    """Cut a last line that a crash left half-written, before appending after it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def append_verdicts(sink, verdicts) -> None:
    """Append verdicts as records (row, label, source, reason), on disk when it returns."""
    lines = []
    for verdict in verdicts:
        record = {"row": verdict.row, "label": verdict.label, "source": verdict.source}
        record["reason"] = verdict.reason
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if len(lines) == APPEND_LINES:
            sink.write("".join(lines))
            lines = []
    sink.write("".join(lines))
    sink.flush()
    os.fsync(sink.fileno())


def verified_labels(state: RunState) -> dict[int, str]:
    """Row -> label for rows an LLM or a person settled (the pilot's verified rows too)."""
    return {
        v["row"]: v["label"]
        for v in read_jsonl(Path(state.run_dir) / VERDICTS_FILE)
        if v["source"] in VERIFIED_SOURCES and v["label"] is not None
    }


HELDOUT_FILE = "heldout.json"
"""The held-out rows (their labels never trained on) and whether each is marked, in the run
folder."""


def read_heldout(run_dir: Path) -> dict[int, bool]:
    """Held-out row -> marked (the gain rule would have picked it): the rows the estimate of
    the labels rests on, which no learning pass may train on."""
    path = Path(run_dir) / HELDOUT_FILE
    if not path.exists():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    return {int(row): bool(marked) for row, marked in record["rows"].items()}


def write_heldout(run_dir: Path, heldout: dict[int, bool]) -> None:
    path = Path(run_dir) / HELDOUT_FILE
    temporary = path.with_suffix(".tmp")
    rows = {str(row): heldout[row] for row in sorted(heldout)}
    temporary.write_text(json.dumps({"rows": rows}) + "\n", encoding="utf-8")
    replace_durably(temporary, path)


PILOT_REASON = "pilot"
"""How a verified pilot row's verdict reason starts: those rows are the first held-out slice."""


def training_labels(state: RunState) -> dict[int, str]:
    """:func:`verified_labels` less the held-out rows (the pilot's verified rows and each
    round's held-out slice): what learning passes may train on."""
    heldout = read_heldout(Path(state.run_dir))
    training = {}
    for verdict in read_jsonl(Path(state.run_dir) / VERDICTS_FILE):
        row = verdict["row"]
        if row in heldout or str(verdict.get("reason", "")).startswith(PILOT_REASON):
            training.pop(row, None)
            heldout[row] = True
        elif verdict["source"] in VERIFIED_SOURCES and verdict["label"] is not None:
            training[row] = verdict["label"]
    return training
