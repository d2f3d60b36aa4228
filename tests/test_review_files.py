"""The review files across rounds, and what a spreadsheet does with them.

``verify_round`` runs twice with the column verifier on a hand-made run (a blank ``gold`` cell
leaves its row unresolved): the review.csv written after round 2 still lists the row round 1
left, and ``review export`` writes it too. A text or a reason that a spreadsheet would run
as a formula is made inert in the CSV and kept raw in the Label Studio tasks.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.context import RunContext
from agent.nodes.verify_round import verify_round
from agent.review import FinishedRun, disputed_records, export_review
from agent.settings import Settings
from agent.state import RoundRecord, RunState
from agent.verification.review_files import text_sha256, write_review_file
from tests.support.fakes import TOXICITY_PLAN, RecordingReporter
from tests.support.run_states import gold_run_state

LINK = '=HYPERLINK("http://x","y")'
TEXTS = ["you clown", LINK, "nice day", "what a moron", "hello", "@SUM(A1:A9)", "ok", "+1 idiot"]
GOLD = ["toxic", "", "non-toxic", "toxic", "non-toxic", "", "non-toxic", "toxic"]
VOTES = {"plain": "toxic", "shouty": "non-toxic"}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def chosen(state: RunState, number: int, rows: list[int]) -> RoundRecord:
    """Round ``number``, which chose ``rows``: their records written as a round writes them."""
    path = Path(state.run_dir) / f"round-{number}.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            record = {"row": row, "text": TEXTS[row], "vote": "toxic", "votes": VOTES}
            handle.write(json.dumps(record) + "\n")
    return RoundRecord(
        round=number,
        labeling_pass=number,
        verified=0,
        heldout=0,
        unverified=len(TEXTS),
        chosen=len(rows),
        records_path=str(path),
    )


def run_round(state: RunState, settings: Settings, number: int, rows: list[int]) -> RunState:
    state = state.model_copy(update={"rounds": (*state.rounds, chosen(state, number, rows))})
    context = RunContext(settings=settings, sandbox=None, reporter=RecordingReporter(), llm=None)
    update = verify_round(state, SimpleNamespace(context=context))
    return state.model_copy(update=update)


@pytest.fixture
def two_rounds(tmp_path) -> tuple[RunState, Settings]:
    """A run whose rounds chose rows 0-3, then 4-7; rows 1 and 5 have no gold label."""
    state = gold_run_state(tmp_path / "work", TOXICITY_PLAN, TEXTS, GOLD)
    settings = Settings(verifier="column:gold", sandbox="none", verdict_cache=tmp_path / "c.db")
    state = run_round(state, settings, 1, [0, 1, 2, 3])
    assert [line["row"] for line in read_csv(Path(state.run_dir) / "review.csv")] == ["1"]
    return run_round(state, settings, 2, [4, 5, 6, 7]), settings


def test_a_row_left_unresolved_in_round_1_still_awaits_review_after_round_2(two_rounds):
    state, settings = two_rounds
    assert state.verification.unresolved == 2
    review = read_csv(Path(state.run_dir) / "review.csv")
    assert [line["row"] for line in review] == ["1", "5"]
    assert {line["run"] for line in review} == {state.run_id}
    assert [line["text_sha256"] for line in review] == [
        text_sha256(TEXTS[1]),
        text_sha256(TEXTS[5]),
    ]

    exported = export_review(FinishedRun(Path(state.run_dir), settings, state))
    tasks = json.loads(exported.tasks_path.read_text(encoding="utf-8"))
    assert [task["data"]["row"] for task in tasks] == [1, 5]
    assert [line["row"] for line in read_csv(exported.csv_path)] == ["1", "5"]


def test_a_formula_text_is_inert_in_the_csv_and_raw_in_the_label_studio_tasks(two_rounds):
    state, settings = two_rounds
    exported = export_review(FinishedRun(Path(state.run_dir), settings, state))
    texts = [line["text"] for line in read_csv(exported.csv_path)]
    assert texts == ["'" + LINK, "'@SUM(A1:A9)"]
    tasks = json.loads(exported.tasks_path.read_text(encoding="utf-8"))
    assert [task["data"]["text"] for task in tasks] == [LINK, "@SUM(A1:A9)"]
    assert tasks[0]["data"]["text_sha256"] == text_sha256(LINK)  # of the raw text


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_every_text_cell_that_starts_a_formula_gets_a_quote(tmp_path, start):
    records = tmp_path / "round-1.jsonl"
    record = {"row": 0, "text": f"{start}1+1", "vote": f"{start}vote", "votes": {"a": "x"}}
    records.write_text(json.dumps(record) + "\n", encoding="utf-8")
    verdict = {
        "row": 0,
        "label": None,
        "source": "unresolved",
        "reason": f"{start}cmd|' /C calc'!A0",
    }
    review = tmp_path / "review.csv"

    write_review_file(review, [verdict], [records], "run-1")

    (line,) = read_csv(review)
    assert line["text"] == f"'{start}1+1" and line["vote"] == f"'{start}vote"
    assert line["reason"] == f"'{start}cmd|' /C calc'!A0"
    assert line["votes"] == '{"a": "x"}'
    assert line["text_sha256"] == text_sha256(f"{start}1+1")


def test_a_plain_text_is_written_as_it_is(tmp_path):
    records = tmp_path / "round-1.jsonl"
    record = {"row": 3, "text": "a = b, -not first", "vote": "toxic", "votes": {}}
    records.write_text(json.dumps(record) + "\n", encoding="utf-8")
    review = tmp_path / "review.csv"
    verdict = {"row": 3, "label": None, "source": "unresolved", "reason": "awaits review"}

    write_review_file(review, [verdict], [records], "run-1")

    (line,) = read_csv(review)
    assert (line["text"], line["reason"]) == ("a = b, -not first", "awaits review")


def test_disputed_records_lists_every_rounds_choice(two_rounds):
    state, _ = two_rounds
    assert [path.name for path in disputed_records(state)] == ["round-1.jsonl", "round-2.jsonl"]
