"""The human verifier round trip: the run pauses, ``review export``, a person decides,
``review import``, ``--resume``.

One run with ``--verifier human`` pauses (exit status 3) once it has chosen round 1's rows;
the tests export them (Label Studio tasks with each voter's vote as a prediction, and a
CSV), refuse a file with an unknown label, then import decisions from a Label Studio export
and from the CSV, and check that the resumed run finishes with the person's labels.
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
    exported = read_csv(folder / "review.csv")
    assert [row["text"] for row in exported] == [record["text"] for record in chosen]
    assert {row["label"] for row in exported} == {""}


def test_import_refuses_an_unknown_label_with_one_line_and_writes_nothing(
    human_run, tmp_path, capsys
):
    verdicts = (human_run["run_dir"] / "verdicts.jsonl").read_bytes()
    pending = (human_run["run_dir"] / "review.csv").read_bytes()
    row = waiting_rows(human_run)[0]
    decisions = tmp_path / "decisions.csv"
    decisions.write_text(f"row,label\n{row},toxic\n{row},maybe-toxic\n")
    capsys.readouterr()

    assert review(human_run, "import", str(decisions)) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "line 3: 'maybe-toxic' is not a label of this run" in lines[0]
    assert (human_run["run_dir"] / "verdicts.jsonl").read_bytes() == verdicts
    assert (human_run["run_dir"] / "review.csv").read_bytes() == pending
    assert not human_run["output"].exists()


def test_import_from_label_studio_then_csv_then_resume_finishes_the_run(human_run, tmp_path):
    waiting = waiting_rows(human_run)
    first, rest = waiting[: len(waiting) // 2], waiting[len(waiting) // 2 :]
    label_for = {row: LABELS[row % 2] for row in waiting}
    exported = [
        {
            "id": index + 1,
            "data": {"text": "...", "row": row},
            "annotations": [
                {"was_cancelled": True, "result": []},
                {
                    "was_cancelled": False,
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": [label_for[row]]},
                        }
                    ],
                },
            ],
        }
        for index, row in enumerate(first)
    ]
    exported.append({"id": 999, "data": {"text": "...", "row": rest[0]}, "annotations": []})
    studio = tmp_path / "project-1-export.json"
    studio.write_text(json.dumps(exported))

    assert review(human_run, "import", str(studio)) == 0
    verdicts = latest_verdicts(human_run["run_dir"] / "verdicts.jsonl")
    decided = {row: (verdicts[row]["label"], verdicts[row]["source"]) for row in first}
    assert decided == {row: (label_for[row], "human") for row in first}
    assert waiting_rows(human_run) == rest
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
