"""The files a person reviews: the review CSV, Label Studio tasks and labeling config, and
reading their decisions back (CSV or a Label Studio export), every label validated first."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from agent.errors import UserInputError
from agent.verification.store import read_jsonl


def write_review_file(path: Path, verdicts: Iterable[dict], disagreements: Path) -> None:
    """A CSV of the unresolved rows: fill in ``label`` and import it back. ``verdicts``: each
    row's latest (only the unresolved ones are kept)."""
    unresolved = {v["row"]: v for v in verdicts if v["source"] == "unresolved"}
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "text", "vote", "votes", "reason", "label"])
        for record in read_jsonl(disagreements):
            verdict = unresolved.get(record["row"])
            if verdict is not None:
                votes = json.dumps(record["votes"], ensure_ascii=False)
                writer.writerow(
                    [record["row"], record["text"], record["vote"], votes, verdict["reason"], ""]
                )
    temporary.replace(path)


CONTROL = "label"
"""The Choices control's name in the labeling config (``from_name`` of every result)."""


OBJECT = "text"


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
