"""run_labeler: run the lint-clean package over the whole input, in the sandbox.

Afterwards the rows the voters disagree on are collected, with their text and
every vote, into ``disagreements.jsonl`` for verification. Rerunning this node
after an interruption resumes the labeler at its first unfinished chunk.
"""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import cell_text, iter_rows
from agent.files import replace_durably
from agent.labeler_runtime import (
    AGREEMENT,
    CONFIDENCE,
    LABEL,
    NEEDS_REVIEW,
    output_text_column,
    read_flag,
    voter_label_column,
    voter_probability_column,
)
from agent.packaging.build import package_names
from agent.packaging.runner import LabelerJob, run_labeler_job
from agent.state import LabelingResult, RunState


def run_labeler(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    plan = state.plan
    labeling_pass = state.labeling_passes + 1
    context.reporter.stage("run_labeler", f"{state.dataset.rows} rows, pass {labeling_pass}")
    # One work folder for every pass: each pass's output in its own folder, and the
    # feature cache they share.
    workdir = Path(state.run_dir) / "labeled"
    input_path = Path(state.dataset.path)
    job = LabelerJob(
        package_dir=Path(state.package_dir),
        module=package_names(plan)[1],
        input_path=input_path,
        output_path=workdir / f"pass-{labeling_pass}" / f"output{input_path.suffix.lower()}",
        workdir=workdir,
        text_column=plan.text_column,
        cache=workdir / "features",
    )
    job.output_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = run_labeler_job(
        context.sandbox,
        job,
        context.settings,
        lambda done, total: context.reporter.progress("labeling", done, total),
    )
    if outcome.unsafe_texts and labeling_pass == 1:
        context.reporter.warn(
            f"{outcome.unsafe_texts} texts held lone surrogates or NUL characters; labeled "
            "with those replaced by U+FFFD (surrogates) or dropped (NULs)"
        )
    disagreements_path = Path(state.run_dir) / "disagreements.jsonl"
    count, agreement = collect_disagreements(job.output_path, disagreements_path, state)
    context.reporter.info(
        f"labeled {outcome.rows} rows in {outcome.seconds:.1f} s; "
        f"{count} disagreements ({count / max(outcome.rows, 1):.1%})"
    )
    update: dict = {
        "labeling_passes": labeling_pass,
        "labeling": LabelingResult(
            output_path=str(job.output_path),
            rows=outcome.rows,
            disagreements=count,
            seconds=outcome.seconds,
            disagreements_path=str(disagreements_path),
            mean_agreement=agreement,
        ),
    }
    if state.finetune and state.finetune[-1].escalated_after is None:
        # This pass relabels with the adapters the last stage promoted: its outcome.
        done = state.finetune[-1].model_copy(
            update={"escalated_after": count, "agreement_after": agreement}
        )
        update["finetune"] = state.finetune[:-1] + (done,)
    return update


def collect_disagreements(labeled: Path, target: Path, state: RunState) -> tuple[int, float]:
    """Write the rows flagged ``needs_review`` (row number, text, vote, its agreement and
    confidence, every voter's vote) as JSON Lines.

    Returns their count and the mean winning vote share over all rows.
    """
    text_column = output_text_column(state)
    temporary = target.with_suffix(".tmp")
    count = rows = 0
    agreement = 0.0
    with open(temporary, "w", encoding="utf-8") as handle:
        for row_number, row in enumerate(iter_rows(labeled)):
            rows += 1
            agreement += float(row[AGREEMENT])
            if not read_flag(row[NEEDS_REVIEW]):
                continue
            record = {
                "row": row_number,
                "text": cell_text(row.get(text_column)),
                "vote": row[LABEL],
                "agreement": float(row[AGREEMENT]),
                "confidence": float(row[CONFIDENCE]),
                "votes": {v.name: row[voter_label_column(v.name)] for v in state.voters},
                "probabilities": {
                    v.name: float(row[voter_probability_column(v.name)]) for v in state.voters
                },
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    replace_durably(temporary, target)
    return count, round(agreement / max(rows, 1), 4)
