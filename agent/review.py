"""The human verifier: hand the hard rows to a person, read the decisions back, finish the run.

``review export RUN_ID`` writes the rows awaiting review, from every round, as a
Label Studio import file (``tasks.json``: each row a task with ``data.text``, its
row, run and text hash, and each voter's vote as a prediction), the matching
labeling config, and a CSV. ``review import RUN_ID FILE`` reads decisions from that
CSV (``label`` filled in) or from a Label Studio JSON export, checks every decision
before writing anything (a label of the set, for a row that awaits review, from this
run, on the text the run recorded), records them as ``human`` verdicts and emits the
run's labeled data and package again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from agent.context import Reporter, RunContext
from agent.errors import RunStateError
from agent.files import write_text_atomically
from agent.graph import compile_graph
from agent.nodes.emit_package import emit_package
from agent.runs import load_request
from agent.settings import Settings
from agent.state import RunState, VerificationResult
from agent.verification.review_files import (
    awaiting_rows,
    disputed_records,
    label_studio_task,
    labeling_config,
    read_decisions,
    write_review_file,
)
from agent.verification.store import (
    VERDICTS_FILE,
    VERIFIED_SOURCES,
    count_verdicts,
    latest_verdicts,
    read_jsonl,
)


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
    if not values or not (values.get("rounds") or values.get("verification")):
        raise RunStateError(f"run {run_id} has not chosen rows to verify yet")
    return FinishedRun(run_dir, settings, RunState.model_validate(values))


def export_review(run: FinishedRun, out_dir: Path | None = None) -> ExportedReview:
    """Write the unresolved rows for a person: Label Studio tasks, labeling config, CSV."""
    state = run.state
    out_dir = Path(out_dir or run.run_dir / "review")
    out_dir.mkdir(parents=True, exist_ok=True)
    verdicts = list(latest_verdicts(Path(state.run_dir) / VERDICTS_FILE).values())
    waiting = awaiting_rows(verdicts, disputed_records(state))
    labels = state.plan.label_names
    tasks = [label_studio_task(record, labels, state.run_id) for record, _ in waiting.values()]
    tasks_path = out_dir / "tasks.json"
    write_text_atomically(tasks_path, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    config_path = out_dir / "labeling_config.xml"
    write_text_atomically(config_path, labeling_config(labels))
    csv_path = out_dir / "review.csv"
    write_review_file(csv_path, verdicts, disputed_records(state), state.run_id)
    return ExportedReview(len(tasks), tasks_path, config_path, csv_path)


def import_review(run: FinishedRun, path: Path, reporter: Reporter) -> VerificationResult:
    """Record the decisions as ``human`` verdicts; then, for a finished run, emit the labeled
    data and package again (a run paused for review continues with ``--resume``)."""
    state = run.state
    paused = state.output_path is None
    if not paused and not Path(state.output_path).exists():
        raise RunStateError(
            f"{state.output_path}: the run's labeled data is not there; run review import "
            "from the folder the run was started in"
        )
    verdicts_path = Path(state.run_dir) / VERDICTS_FILE
    verdicts = {v["row"]: v for v in read_jsonl(verdicts_path)}
    waiting = awaiting_rows(verdicts.values(), disputed_records(state))
    decisions = read_decisions(Path(path), state.plan.label_names, state.run_id, waiting)
    for row, label in decisions.items():
        verdicts[row] = {"row": row, "label": label, "source": "human", "reason": "review"}
    lines = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in verdicts.values())
    write_text_atomically(verdicts_path, lines)
    verification = _recount(state, list(verdicts.values()))
    if paused:
        reporter.info(
            f"{len(decisions)} verdicts recorded; continue the run with --resume {state.run_id}"
        )
        return verification
    _emit_again(run, state.model_copy(update={"verification": verification}), reporter)
    return verification


def _recount(state: RunState, verdicts: list[dict]) -> VerificationResult:
    verified, unresolved = count_verdicts(verdicts)
    labels = {v["label"] for v in verdicts if v["source"] in VERIFIED_SOURCES and v["label"]}
    review_path = Path(state.run_dir) / "review.csv"
    if unresolved:
        write_review_file(review_path, verdicts, disputed_records(state), state.run_id)
    else:
        review_path.unlink(missing_ok=True)
    base = state.verification or VerificationResult(
        verifier="human",
        verdicts_path=str(Path(state.run_dir) / VERDICTS_FILE),
        verified=0,
        unresolved=0,
    )
    return base.model_copy(
        update={
            "verified": verified,
            "verified_labels": len(labels),
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
