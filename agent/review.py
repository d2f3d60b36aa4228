"""The human verifier: hand the hard rows to a person, read the decisions back, finish the run.

``review export RUN_ID`` writes the rows awaiting review as a Label Studio import
file (``tasks.json``: each row a task with ``data.text``, and each voter's vote
as a prediction), the matching labeling config, and a CSV. ``review import
RUN_ID FILE`` reads decisions from that CSV (``row`` and ``label`` filled in)
or from a Label Studio JSON export, checks every label before writing
anything, records them as ``human`` verdicts and emits the run's labeled data
and package again.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from .context import Reporter, RunContext
from .errors import RunStateError, UserInputError
from .graph import compile_graph
from .nodes.emit_package import emit_package
from .nodes.verify_disagreements import (
    count_verdicts,
    latest_verdicts,
    read_jsonl,
    write_review_file,
)
from .runs import load_request
from .settings import Settings
from .state import RunState, VerificationResult

CONTROL = "label"
"""The Choices control's name in the labeling config (``from_name`` of every result)."""
OBJECT = "text"


@dataclass(frozen=True)
class FinishedRun:
    run_dir: Path
    settings: Settings
    state: RunState


@dataclass(frozen=True)
class ExportedReview:
    rows: int
    tasks_path: Path
    config_path: Path
    csv_path: Path


def load_run(runs_dir: Path, run_id: str) -> FinishedRun:
    """A run whose verification is done, from its checkpoint."""
    run_dir, settings = load_request(runs_dir, run_id)
    graph = compile_graph(run_dir)
    values = graph.get_state({"configurable": {"thread_id": run_id}}).values
    if not values or values.get("verification") is None:
        raise RunStateError(f"run {run_id} has not verified its disagreements yet")
    return FinishedRun(run_dir, settings, RunState.model_validate(values))


def export_review(run: FinishedRun, out_dir: Path | None = None) -> ExportedReview:
    """Write the unresolved rows for a person: Label Studio tasks, labeling config, CSV."""
    state = run.state
    out_dir = Path(out_dir or run.run_dir / "review")
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts = list(latest_verdicts(Path(state.verification.verdicts_path)).values())
    waiting = {v["row"] for v in verdicts if v["source"] == "unresolved"}
    records = [
        r for r in read_jsonl(Path(state.labeling.disagreements_path)) if r["row"] in waiting
    ]
    labels = state.plan.label_names
    tasks = [label_studio_task(record, labels) for record in records]
    tasks_path = out_dir / "tasks.json"
    _write_atomically(tasks_path, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    config_path = out_dir / "labeling_config.xml"
    _write_atomically(config_path, labeling_config(labels))
    csv_path = out_dir / "review.csv"
    write_review_file(csv_path, verdicts, Path(state.labeling.disagreements_path))
    return ExportedReview(len(tasks), tasks_path, config_path, csv_path)


def label_studio_task(record: dict[str, Any], labels: tuple[str, ...]) -> dict[str, Any]:
    """One task: the text and its row number as data, each voter's vote as a prediction."""
    predictions = []
    for voter, vote in record["votes"].items():
        if vote not in labels:
            continue  # a vote outside the label set cannot be shown as a choice
        result = {"from_name": CONTROL, "to_name": OBJECT, "type": "choices"}
        prediction = {"model_version": voter, "result": [result | {"value": {"choices": [vote]}}]}
        probability = record.get("probabilities", {}).get(voter)
        if probability is not None:
            prediction["score"] = probability
        predictions.append(prediction)
    data = {OBJECT: record["text"], "row": record["row"], "vote": record["vote"]}
    return {"data": data, "predictions": predictions}


def labeling_config(labels: tuple[str, ...]) -> str:
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return (
        f'<View>\n  <Text name="{OBJECT}" value="${OBJECT}"/>\n'
        f'  <Choices name="{CONTROL}" toName="{OBJECT}" choice="single" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


def read_decisions(path: Path, labels: tuple[str, ...], rows: int) -> dict[int, str]:
    """Row -> label from a review CSV or a Label Studio JSON export; blank rows are skipped.

    Every problem is a one-line :class:`UserInputError`, raised before anything is written.
    """
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        found = _label_studio_decisions(path)
    else:
        found = _csv_decisions(path)
    decisions: dict[int, str] = {}
    for where, row, label in found:
        if label not in labels:
            raise UserInputError(
                f"{path} {where}: {label!r} is not a label of this run; labels are {list(labels)}"
            )
        if not 0 <= row < rows:
            raise UserInputError(f"{path} {where}: row {row} is not a row of this run's data")
        decisions[row] = label
    return decisions


def _csv_decisions(path: Path) -> list[tuple[str, int, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not {"row", "label"} <= set(reader.fieldnames or ()):
                raise UserInputError(f"{path}: needs the columns row and label")
            return [
                (f"line {reader.line_num}", _row_number(path, entry["row"]), entry["label"].strip())
                for entry in reader
                if (entry["label"] or "").strip()
            ]
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserInputError(f"{path}: unreadable CSV ({error})") from None


def _label_studio_decisions(path: Path) -> list[tuple[str, int, str]]:
    """Label Studio's JSON export (``annotations``) or JSON-MIN (the choice under ``label``)."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UserInputError(f"{path}: unreadable JSON ({error})") from None
    if not isinstance(tasks, list):
        raise UserInputError(f"{path}: expected a list of Label Studio tasks")
    found = []
    for index, task in enumerate(tasks):
        where = f"task {index + 1}"
        if not isinstance(task, dict):
            raise UserInputError(f"{path} {where}: not a Label Studio task")
        data = task.get("data", task)
        if "row" not in data:
            raise UserInputError(f"{path} {where}: no data.row (export the tasks review wrote)")
        label = _annotated_choice(task)
        if label is not None:
            found.append((where, _row_number(path, data["row"]), label))
    return found


def _annotated_choice(task: dict[str, Any]) -> str | None:
    """The latest submitted annotation's choice, or None when nobody annotated the task."""
    if "annotations" not in task:
        value = task.get(CONTROL)  # JSON-MIN: a string, or {"choices": [...]}
        if isinstance(value, dict):
            value = (value.get("choices") or [None])[0]
        return None if value in (None, "") else str(value)
    for annotation in reversed(task["annotations"]):
        if annotation.get("was_cancelled"):
            continue
        for result in annotation.get("result", []):
            choices = result.get("value", {}).get("choices")
            if result.get("type") == "choices" and choices:
                return str(choices[0])
    return None


def _row_number(path: Path, value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise UserInputError(f"{path}: row {value!r} is not a row number") from None


def import_review(run: FinishedRun, path: Path, reporter: Reporter) -> VerificationResult:
    """Record the decisions as ``human`` verdicts, then emit the labeled data and package."""
    state = run.state
    if state.output_path is None or state.package_dir is None:
        raise RunStateError(
            f"run {state.run_id} has not finished: continue it with --resume {state.run_id}"
        )
    if not Path(state.output_path).exists():
        raise RunStateError(
            f"{state.output_path}: the run's labeled data is not there; run review import "
            "from the folder the run was started in"
        )
    decisions = read_decisions(Path(path), state.plan.label_names, state.labeling.rows)
    verdicts_path = Path(state.verification.verdicts_path)
    verdicts = {v["row"]: v for v in read_jsonl(verdicts_path)}
    for row, label in decisions.items():
        verdicts[row] = {"row": row, "label": label, "source": "human", "reason": "review"}
    lines = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts.values())
    _write_atomically(verdicts_path, lines)
    verification = _recount(state, list(verdicts.values()))
    _emit_again(run, state.model_copy(update={"verification": verification}), reporter)
    return verification


def _recount(state: RunState, verdicts: list[dict]) -> VerificationResult:
    verified, unresolved = count_verdicts(verdicts)
    review_path = Path(state.run_dir) / "review.csv"
    if unresolved:
        write_review_file(review_path, verdicts, Path(state.labeling.disagreements_path))
    else:
        review_path.unlink(missing_ok=True)
    return state.verification.model_copy(
        update={
            "verified": verified,
            "unresolved": unresolved,
            "review_path": str(review_path) if unresolved else None,
        }
    )


class _RecordedModel:
    """The LLM as the run's manifest names it (review needs no endpoint)."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name


def _emit_again(run: FinishedRun, state: RunState, reporter: Reporter) -> None:
    """Run ``emit_package`` again, to the places the run emitted to."""
    settings = run.settings.model_copy(
        update={"output": Path(state.output_path), "out": Path(state.package_path).parent}
    )
    manifest = Path(state.package_dir) / "manifest.json"
    llm_info = json.loads(manifest.read_text(encoding="utf-8"))["provenance"].get("llm")
    llm = _RecordedModel(llm_info["model"]) if llm_info else None
    context = RunContext(settings=settings, sandbox=None, reporter=reporter, llm=llm)
    update = emit_package(state, _Runtime(context))
    graph = compile_graph(run.run_dir)
    config = {"configurable": {"thread_id": state.run_id}}
    graph.update_state(config, {"verification": state.verification, **update}, "emit_package")


@dataclass(frozen=True)
class _Runtime:
    context: RunContext


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
