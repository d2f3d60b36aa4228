"""The files a person reviews: the review CSV, Label Studio tasks and labeling config, and
reading their decisions back (CSV or a Label Studio export), every decision checked first.

Every exported row carries the run id and the sha256 of its text, and an import takes only
rows that still await review whose run and text hash match the run's record: a stale export,
or one of another run, cannot overwrite a label the run already settled.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from agent.errors import UserInputError
from agent.files import replace_durably
from agent.state import RunState
from agent.verification.cache import text_key
from agent.verification.store import read_jsonl

RUN = "run"
TEXT_HASH = "text_sha256"
COLUMNS = ("row", "text", "vote", "votes", "reason", "label", RUN, TEXT_HASH)
"""The review CSV's columns: the person fills in ``label``; ``run`` and ``text_sha256`` tie
each row to the run's record of it, and are checked on import."""

REQUIRED = ("row", "label", RUN, TEXT_HASH)

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""How a cell a spreadsheet runs as a formula starts (OWASP's CSV injection rule)."""


def text_sha256(text: str) -> str:
    """The hash an exported row carries, of the text the run recorded for it: the verdict
    cache's key of that text."""
    return text_key(text)


def disputed_records(state: RunState) -> list[Path]:
    """The files of the rows put to a verifier: each round's choice (the last pass's
    disagreements for a run that verified without rounds)."""
    files = [Path(r.records_path) for r in state.rounds if r.records_path]
    if not files and state.labeling is not None:
        files.append(Path(state.labeling.disagreements_path))
    return files


def awaiting_rows(
    verdicts: Iterable[dict], record_files: Iterable[Path]
) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """Row -> (record, latest verdict) of every row whose latest verdict is ``unresolved``,
    from every file: a row left unresolved in round 1 still waits after round 2. A row in
    several files keeps its first place and its latest record. ``verdicts``: each row's
    latest."""
    unresolved = {v["row"]: v for v in verdicts if v["source"] == "unresolved"}
    found: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    for path in record_files:
        for record in read_jsonl(Path(path)):
            verdict = unresolved.get(record["row"])
            if verdict is not None:
                found[record["row"]] = (record, verdict)
    return found


def write_review_file(
    path: Path, verdicts: Iterable[dict], record_files: Iterable[Path], run_id: str
) -> None:
    """A CSV of the rows awaiting review (see :func:`awaiting_rows`): fill in ``label`` and
    import it back. Text cells are made inert, since the file is opened in spreadsheets."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row, (record, verdict) in awaiting_rows(verdicts, record_files).items():
            votes = json.dumps(record["votes"], ensure_ascii=False)
            cells = [record["text"], record["vote"], votes, verdict["reason"]]
            writer.writerow([row, *map(_inert, cells), "", run_id, text_sha256(record["text"])])
    replace_durably(temporary, path)


def _inert(cell: Any) -> Any:
    """The cell with a leading ``'`` when a spreadsheet would run it as a formula: a text or an
    LLM's reason is data, never a command on the reviewer's machine."""
    if isinstance(cell, str) and cell.startswith(FORMULA_START):
        return "'" + cell
    return cell


CONTROL = "label"
"""The Choices control's name in the labeling config (``from_name`` of every result)."""


OBJECT = "text"


def label_studio_task(
    record: dict[str, Any], labels: tuple[str, ...], run_id: str
) -> dict[str, Any]:
    """One task: the raw text, its row number, run and text hash as data, each voter's vote as
    a prediction. Label Studio shows the text as text, so it is not made inert."""
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
    data |= {RUN: run_id, TEXT_HASH: text_sha256(record["text"])}
    return {"data": data, "predictions": predictions}


def labeling_config(labels: tuple[str, ...]) -> str:
    choices = "\n".join(f"    <Choice value={quoteattr(label)}/>" for label in labels)
    return (
        f'<View>\n  <Text name="{OBJECT}" value="${OBJECT}"/>\n'
        f'  <Choices name="{CONTROL}" toName="{OBJECT}" choice="single" showInline="true">\n'
        f"{choices}\n  </Choices>\n</View>\n"
    )


@dataclass(frozen=True)
class Entry:
    """One row of a decisions file, as written: ``label`` None when nobody decided it."""

    where: str
    row: Any
    label: str | None
    run: Any
    text_hash: Any


def read_decisions(
    path: Path,
    labels: tuple[str, ...],
    run_id: str,
    awaiting: Mapping[int, tuple[dict[str, Any], dict[str, Any]]],
) -> dict[int, str]:
    """Row -> label from a review CSV or a Label Studio JSON export; undecided rows are
    skipped. ``awaiting``: :func:`awaiting_rows`, the only rows a decision may name.

    Every problem is a one-line :class:`UserInputError`, raised before anything is written.
    """
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        entries = _label_studio_entries(path)
    else:
        entries = _csv_entries(path)
    decisions: dict[int, str] = {}
    seen: set[int] = set()
    for entry in entries:
        row = _row_number(path, entry)
        if row in seen:  # two answers for one row: neither may silently win
            raise UserInputError(f"{path} {entry.where}: row {row} appears twice")
        seen.add(row)
        if entry.label is not None:
            _check(path, entry, row, labels, run_id, awaiting)
            decisions[row] = entry.label
    return decisions


def _check(
    path: Path,
    entry: Entry,
    row: int,
    labels: tuple[str, ...],
    run_id: str,
    awaiting: Mapping[int, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """Refuse a decision the run did not ask for, or one made on other text than the run's."""
    where = f"{path} {entry.where}"
    if entry.label not in labels:
        raise UserInputError(
            f"{where}: {entry.label!r} is not a label of this run; labels are {list(labels)}"
        )
    if entry.run != run_id:
        raise UserInputError(
            f"{where}: exported from run {entry.run!r}, not {run_id}; "
            f"export this run's rows with `review export {run_id}`"
        )
    if row not in awaiting:
        raise UserInputError(
            f"{where}: row {row} does not await review in run {run_id} "
            "(a stale export? `review export` again)"
        )
    record, _ = awaiting[row]
    if entry.text_hash != text_sha256(record["text"]):
        raise UserInputError(
            f"{where}: row {row}'s text_sha256 does not match the run's text of that row "
            "(a stale or edited export? `review export` again)"
        )


def _csv_entries(path: Path) -> list[Entry]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
            if missing:
                raise UserInputError(
                    f"{path}: needs the columns {', '.join(REQUIRED)} (missing "
                    f"{', '.join(missing)}); fill in the review.csv that `review export` wrote"
                )
            return [_csv_entry(reader.line_num, entry) for entry in reader]
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserInputError(f"{path}: unreadable CSV ({error})") from None


def _csv_entry(line: int, entry: dict[str | None, Any]) -> Entry:
    """One CSV line (a short line's missing cells are None)."""
    label = (entry["label"] or "").strip()
    return Entry(
        f"line {line}",
        entry["row"] or "",
        label or None,
        (entry[RUN] or "").strip(),
        (entry[TEXT_HASH] or "").strip(),
    )


def _label_studio_entries(path: Path) -> list[Entry]:
    """Label Studio's JSON export (``annotations``) or JSON-MIN (data fields at the top level,
    the choice under ``label``)."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UserInputError(f"{path}: unreadable JSON ({error})") from None
    if not isinstance(tasks, list):
        raise UserInputError(f"{path}: expected a list of Label Studio tasks")
    entries = []
    for index, task in enumerate(tasks):
        where = f"task {index + 1}"
        if not isinstance(task, dict):
            raise UserInputError(f"{path} {where}: not a Label Studio task")
        data = task.get("data", task)
        if not isinstance(data, dict):
            raise UserInputError(f"{path} {where}: data is not an object")
        missing = [field for field in ("row", RUN, TEXT_HASH) if field not in data]
        if missing:
            raise UserInputError(
                f"{path} {where}: no data.{', data.'.join(missing)} "
                "(import into Label Studio the tasks.json that `review export` wrote)"
            )
        label = _annotated_choice(path, where, task)
        entries.append(Entry(where, data["row"], label, data[RUN], data[TEXT_HASH]))
    return entries


def _annotated_choice(path: Path, where: str, task: dict[str, Any]) -> str | None:
    """The latest submitted annotation's choice, or None when nobody annotated the task."""
    if "annotations" not in task:
        return _min_choice(path, where, task.get(CONTROL))
    annotations = task["annotations"]
    if not isinstance(annotations, list):
        raise UserInputError(f"{path} {where}: annotations is not a list")
    for annotation in reversed(annotations):
        if not isinstance(annotation, dict):
            raise UserInputError(f"{path} {where}: an annotation is not an object")
        if annotation.get("was_cancelled"):
            continue
        results = annotation.get("result", [])
        if not isinstance(results, list):
            raise UserInputError(f"{path} {where}: an annotation's result is not a list")
        for result in results:
            choice = _result_choice(path, where, result)
            if choice is not None:
                return choice
    return None


def _result_choice(path: Path, where: str, result: Any) -> str | None:
    """A choices result's first choice (None for a result of another type)."""
    if not isinstance(result, dict) or not isinstance(result.get("value", {}), dict):
        raise UserInputError(f"{path} {where}: a result is not a Label Studio result")
    if result.get("type") != "choices":
        return None
    return _first_choice(path, where, result.get("value", {}).get("choices"))


def _min_choice(path: Path, where: str, value: Any) -> str | None:
    """JSON-MIN's choice: a string, or ``{"choices": [...]}``."""
    if isinstance(value, dict):
        return _first_choice(path, where, value.get("choices"))
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserInputError(f"{path} {where}: label {value!r} is not a choice")
    return value.strip() or None


def _first_choice(path: Path, where: str, choices: Any) -> str | None:
    if choices is None or choices == []:
        return None
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise UserInputError(f"{path} {where}: choices {choices!r} is not a list of labels")
    return choices[0]


_DIGITS = re.compile(r"[0-9]+")


def _row_number(path: Path, entry: Entry) -> int:
    """The row number, strictly: a JSON integer or ASCII digits (``int()`` would also take
    ``"1_0"`` as 10, ``"+1"`` or ``"١"``)."""
    value = entry.row
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    raise UserInputError(f"{path} {entry.where}: row {value!r} is not a row number")
