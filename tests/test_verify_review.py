"""The human verifier round trip: the run pauses, ``review export``, a person decides,
``review import``, ``--resume``.

One run with ``--verifier human`` pauses (exit status 3) once it has chosen round 1's rows;
the tests export them (Label Studio tasks with each voter's vote as a prediction, and a
CSV, each row with the run id and its text's hash), refuse every file the run did not ask
for (an unknown label, a row not awaiting review, another run's file, a changed text, a
duplicated or malformed row, a malformed file) in one line with nothing written, then import
decisions from a Label Studio export, a JSON-MIN export and the CSV, and check that the
resumed run finishes with the person's labels.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from agent.cli import main
from agent.dataset import iter_rows
from agent.learning import LEARNED_KINDS
from agent.review import load_run
from agent.verification.review_files import COLUMNS, text_sha256
from agent.verification.store import latest_verdicts, read_jsonl

# One review run (an agent run that sends its chosen rows to people) for the module: 10 s.
pytestmark = pytest.mark.slow

LABELS = ("non-toxic", "toxic")


@pytest.fixture(scope="module")
def human_run(tmp_path_factory, toxic_voters) -> dict:
    """A run paused at round 1: its chosen rows await a person."""
    folder = tmp_path_factory.mktemp("human-run")
    data = folder / "tweets.csv"
    data.write_bytes((Path(__file__).parent.parent / "examples" / "tweets.csv").read_bytes())
    runs, output = folder / "runs", folder / "labeled.csv"
    args = ["label tweets for toxicity", "--data", str(data), "--sandbox", "none", "--offline"]
    args += ["--verifier", "human", "--runs-dir", str(runs), "--out", str(folder / "out")]
    args += ["--output", str(output)]
    for path in toxic_voters.values():
        args += ["--model", str(path)]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENAI_API_KEY", raising=False)
        assert main(args) == 3  # paused: round 1 awaits review
    (run_dir,) = runs.iterdir()
    return {"run_id": run_dir.name, "runs": runs, "run_dir": run_dir, "output": output}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def review(human_run: dict, *args: str) -> int:
    command, rest = args[0], args[1:]
    return main(
        ["review", command, human_run["run_id"], *rest, "--runs-dir", str(human_run["runs"])]
    )


def waiting_rows(human_run: dict) -> list[int]:
    verdicts = latest_verdicts(human_run["run_dir"] / "verdicts.jsonl")
    return sorted(row for row, v in verdicts.items() if v["source"] == "unresolved")


def exported(human_run: dict) -> dict[int, dict[str, str]]:
    """Row -> its line of the review.csv the paused run wrote."""
    return {int(line["row"]): line for line in read_csv(human_run["run_dir"] / "review.csv")}


def settled_row(human_run: dict) -> int:
    """A row the vote settled (it never awaited review)."""
    verdicts = latest_verdicts(human_run["run_dir"] / "verdicts.jsonl")
    return next(row for row in range(40) if row not in verdicts)


def resume(human_run: dict) -> int:
    return main(["--resume", human_run["run_id"], "--runs-dir", str(human_run["runs"])])


def test_export_writes_label_studio_tasks_with_each_voters_vote_and_a_csv(human_run):
    assert not human_run["output"].exists()  # paused before anything was emitted
    state = load_run(human_run["runs"], human_run["run_id"]).state
    chosen = list(read_jsonl(Path(state.rounds[-1].records_path)))
    assert sorted(record["row"] for record in chosen) == waiting_rows(human_run) != []
    labeled = list(iter_rows(state.labeling.output_path))

    assert review(human_run, "export") == 0
    folder = human_run["run_dir"] / "review"
    tasks = json.loads((folder / "tasks.json").read_text())
    assert len(tasks) == len(chosen)
    named = {voter.name for voter in state.voters if voter.kind not in LEARNED_KINDS}
    assert len(named) == 3 < len(state.voters)
    for task, record in zip(tasks, chosen, strict=True):
        row = labeled[record["row"]]
        assert task["data"]["text"] == record["text"] == row["text"]
        assert task["data"]["row"] == record["row"]
        assert task["data"]["run"] == human_run["run_id"]
        assert task["data"]["text_sha256"] == text_sha256(row["text"])
        predictions = {p["model_version"]: p for p in task["predictions"]}
        assert named <= set(predictions)  # learned voters abstain until trained
        for voter, prediction in predictions.items():
            (result,) = prediction["result"]
            assert result["value"] == {"choices": [row[f"label_{voter}"]]}
            assert (result["from_name"], result["to_name"], result["type"]) == (
                "label",
                "text",
                "choices",
            )
    config = ElementTree.fromstring((folder / "labeling_config.xml").read_text())
    assert [choice.get("value") for choice in config.iter("Choice")] == list(LABELS)
    assert config.find("Choices").get("name") == "label"
    with open(folder / "review.csv", newline="", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == list(COLUMNS)
    lines = read_csv(folder / "review.csv")
    assert [row["text"] for row in lines] == [record["text"] for record in chosen]
    assert {row["label"] for row in lines} == {""}
    assert {row["run"] for row in lines} == {human_run["run_id"]}
    assert [row["text_sha256"] for row in lines] == [text_sha256(r["text"]) for r in chosen]


def refuse(human_run: dict, capsys, path: Path) -> str:
    """Import ``path``, which must be refused in one line with nothing written; the line."""
    verdicts = (human_run["run_dir"] / "verdicts.jsonl").read_bytes()
    pending = (human_run["run_dir"] / "review.csv").read_bytes()
    capsys.readouterr()

    assert review(human_run, "import", str(path)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert (human_run["run_dir"] / "verdicts.jsonl").read_bytes() == verdicts
    assert (human_run["run_dir"] / "review.csv").read_bytes() == pending
    assert not human_run["output"].exists()
    return lines[0]


def decisions_csv(path: Path, *lines: tuple) -> Path:
    """A filled-in review file of (row, label, run, text_sha256) lines."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "label", "run", "text_sha256"])
        writer.writerows(lines)
    return path


def test_import_refuses_an_unknown_label_with_one_line_and_writes_nothing(
    human_run, tmp_path, capsys
):
    first, second = list(exported(human_run).values())[:2]
    decisions = decisions_csv(
        tmp_path / "decisions.csv",
        (first["row"], "toxic", first["run"], first["text_sha256"]),
        (second["row"], "maybe-toxic", second["run"], second["text_sha256"]),
    )

    line = refuse(human_run, capsys, decisions)
    assert "line 3: 'maybe-toxic' is not a label of this run" in line


@pytest.mark.parametrize(
    "case, expected",
    [
        ("not awaiting", "does not await review"),
        ("another run", "exported from run '20000101-000000-abcdef'"),
        ("changed text", "text_sha256 does not match the run's text"),
        ("duplicate", "appears twice"),
        ("underscore", "row ' 1_0 ' is not a row number"),
        ("signed", "row '+1' is not a row number"),
        ("missing columns", "needs the columns row, label, run, text_sha256"),
    ],
)
def test_import_refuses_a_csv_row_the_run_did_not_ask_for(
    human_run, tmp_path, capsys, case, expected
):
    line = exported(human_run)[waiting_rows(human_run)[0]]
    row, run, digest = line["row"], line["run"], line["text_sha256"]
    path = tmp_path / "decisions.csv"
    if case == "not awaiting":
        settled = settled_row(human_run)
        decisions_csv(path, (settled, "toxic", run, "0" * 64))
    elif case == "another run":
        decisions_csv(path, (row, "toxic", "20000101-000000-abcdef", digest))
    elif case == "changed text":
        decisions_csv(path, (row, "toxic", run, text_sha256("another text")))
    elif case == "duplicate":
        decisions_csv(path, (row, "toxic", run, digest), (f" {row} ", "non-toxic", run, digest))
    elif case == "underscore":
        decisions_csv(path, (" 1_0 ", "toxic", run, digest))
    elif case == "signed":
        decisions_csv(path, ("+1", "toxic", run, digest))
    else:
        path.write_text(f"row,label\n{row},toxic\n")

    assert expected in refuse(human_run, capsys, path)


def studio_task(line: dict[str, str], annotations: object) -> dict:
    data = {"text": "...", "row": int(line["row"]), "run": line["run"]}
    return {
        "id": 1,
        "data": data | {"text_sha256": line["text_sha256"]},
        "annotations": annotations,
    }


def choices(*labels: str) -> dict:
    result = {"from_name": "label", "to_name": "text", "type": "choices"}
    return result | {"value": {"choices": list(labels)}}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("annotations null", "task 1: annotations is not a list"),
        ("annotations not a list", "task 1: annotations is not a list"),
        ("annotation not an object", "task 1: an annotation is not an object"),
        ("result not a list", "task 1: an annotation's result is not a list"),
        ("result not an object", "task 1: a result is not a Label Studio result"),
        ("choices not a list", "task 1: choices 'toxic' is not a list of labels"),
        ("data not an object", "task 1: data is not an object"),
        ("no run", "task 1: no data.run"),
        ("row a string of digits with underscores", "task 1: row '1_0' is not a row number"),
        ("row a boolean", "task 1: row True is not a row number"),
        ("not a list", "expected a list of Label Studio tasks"),
        ("unreadable", "unreadable JSON"),
        ("json-min label a number", "task 1: label 3 is not a choice"),
        ("duplicate", "task 2: row"),
        ("foreign json-min", "exported from run 'elsewhere'"),
    ],
)
def test_import_refuses_a_malformed_label_studio_export(
    human_run, tmp_path, capsys, case, expected
):
    line = exported(human_run)[waiting_rows(human_run)[0]]
    task = studio_task(line, [{"result": [choices("toxic")]}])
    tasks: object = [task]
    if case == "annotations null":
        task["annotations"] = None
    elif case == "annotations not a list":
        task["annotations"] = "toxic"
    elif case == "annotation not an object":
        task["annotations"] = ["toxic"]
    elif case == "result not a list":
        task["annotations"] = [{"result": {"value": {"choices": ["toxic"]}}}]
    elif case == "result not an object":
        task["annotations"] = [{"result": ["toxic"]}]
    elif case == "choices not a list":
        task["annotations"] = [{"result": [choices() | {"value": {"choices": "toxic"}}]}]
    elif case == "data not an object":
        task["data"] = "text"
    elif case == "no run":
        del task["data"]["run"]
    elif case == "row a string of digits with underscores":
        task["data"]["row"] = "1_0"
    elif case == "row a boolean":
        task["data"]["row"] = True
    elif case == "not a list":
        tasks = {"tasks": [task]}
    elif case == "json-min label a number":
        tasks = [task["data"] | {"id": 1, "label": 3}]
    elif case == "duplicate":
        tasks = [task, task]
    elif case == "foreign json-min":
        tasks = [task["data"] | {"id": 1, "run": "elsewhere", "label": "toxic"}]
    path = tmp_path / "export.json"
    path.write_text("[{" if case == "unreadable" else json.dumps(tasks))

    assert expected in refuse(human_run, capsys, path)


def test_import_from_label_studio_then_csv_then_resume_finishes_the_run(
    human_run, tmp_path, capsys
):
    waiting = waiting_rows(human_run)
    lines = exported(human_run)
    first, rest = waiting[: len(waiting) // 2], waiting[len(waiting) // 2 :]
    label_for = {row: LABELS[row % 2] for row in waiting}
    cancelled = {"was_cancelled": True, "result": []}
    exported_tasks = [
        studio_task(
            lines[row],
            [cancelled, {"was_cancelled": False, "result": [choices(label_for[row])]}],
        )
        for row in first[:-1]
    ]
    exported_tasks.append(studio_task(lines[rest[0]], []))
    studio = tmp_path / "project-1-export.json"
    studio.write_text(json.dumps(exported_tasks))

    assert review(human_run, "import", str(studio)) == 0
    # JSON-MIN: the data fields at the top level, the choice under ``label``
    minimal = {key: lines[first[-1]][key] for key in ("run", "text_sha256")}
    minimal |= {"id": 7, "text": "...", "row": first[-1], "label": label_for[first[-1]]}
    studio_min = tmp_path / "project-1-export-min.json"
    studio_min.write_text(json.dumps([minimal]))
    assert review(human_run, "import", str(studio_min)) == 0
    verdicts = latest_verdicts(human_run["run_dir"] / "verdicts.jsonl")
    decided = {row: (verdicts[row]["label"], verdicts[row]["source"]) for row in first}
    assert decided == {row: (label_for[row], "human") for row in first}
    assert waiting_rows(human_run) == rest
    # the same export again: its rows no longer await review, a person's label stays
    assert "does not await review" in refuse(human_run, capsys, studio)
    assert resume(human_run) == 3  # rows of round 1 still wait: paused again
    assert not human_run["output"].exists()

    filled = tmp_path / "review.csv"
    with open(human_run["run_dir"] / "review.csv", newline="", encoding="utf-8") as handle:
        pending = list(csv.DictReader(handle))
    assert [int(row["row"]) for row in pending] == rest
    with open(filled, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(pending[0]))
        writer.writeheader()
        writer.writerows(row | {"label": label_for[int(row["row"])]} for row in pending)

    assert review(human_run, "import", str(filled)) == 0
    assert not (human_run["run_dir"] / "review.csv").exists()
    assert resume(human_run) == 0  # round 1 spent the verification budget: the run ends
    rows = read_csv(human_run["output"])
    assert [rows[row]["label"] for row in waiting] == [label_for[row] for row in waiting]
    assert {rows[row]["source"] for row in waiting} == {"human"}
    assert {row["source"] for i, row in enumerate(rows) if i not in waiting} <= {
        "consensus",
        "vote",
    }
    assert len(rows) == len(read_csv(human_run["run_dir"].parent.parent / "tweets.csv"))
    state = load_run(human_run["runs"], human_run["run_id"]).state
    assert (state.verification.verified, state.verification.unresolved) == (len(waiting), 0)
    assert state.rounds[-1].stop == "budget"
    report = json.loads((human_run["run_dir"] / "report.json").read_text())
    assert report["metrics"]["rows from human"] == str(len(waiting))
