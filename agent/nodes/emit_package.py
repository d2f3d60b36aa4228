"""emit_package: write the labeled data and the labeler package.

The labeled data is the labeler's own output with each verified row's label
and its source filled in; it is written atomically. The package gets its
model card's metrics from this run, then is copied to ``--out`` atomically.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows
from agent.labeler_runtime import (
    LABEL,
    NEEDS_REVIEW,
    TableWriter,
    installed_learned,
    read_columns,
    read_flag,
)
from agent.learning import finetune_shortfall
from agent.packaging.build import (
    build_spec,
    emit,
    installed_adapters,
    installed_vote,
    llm_info,
    package_names,
    provenance,
    selection_notes,
)
from agent.packaging.render import module_lock, render_package
from agent.reporting.report import write_report
from agent.state import LearnedVoterRecord, RunState
from agent.verification.store import VERDICTS_FILE, resolve
from agent.verification.stream import latest_by_row, with_verdicts

RERENDERED = ("README.md", "models.lock.json", "manifest.json", "pyproject.toml")


def default_output_path(state: RunState, out_dir: Path) -> Path:
    data = Path(state.dataset.path)
    return out_dir / f"{data.stem}.labeled{data.suffix.lower()}"


def emit_package(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    context.reporter.stage("emit_package", str(settings.out))
    shortfall = finetune_shortfall(state, settings)
    if shortfall is not None:
        context.reporter.warn(shortfall)
    output_path = Path(settings.output or default_output_path(state, settings.out))
    sources = write_labeled_data(state, output_path)
    metrics = run_metrics(state, sources)
    package_dir = Path(state.package_dir)
    spec = build_spec(
        state.plan,
        state.voters,
        settings,
        selection_notes=selection_notes(state),
        metrics=metrics,
        adapters=installed_adapters(package_dir / package_names(state.plan)[1]),
        learned_vote=installed_vote(package_dir / package_names(state.plan)[1]),
        learned=installed_learned(package_dir / package_names(state.plan)[1]),
    )
    # What the run learned changes the model card, the pins and the requirements. The
    # manifest leaves out the run's timings, so that the same run gives the same manifest.
    origin = provenance(state, settings, llm_info(context))
    rendered = render_package(spec, origin)
    rendered["manifest.json"] = render_package(spec.model_copy(update={"metrics": {}}), origin)[
        "manifest.json"
    ]
    for name in (*RERENDERED, module_lock(spec.module)):
        (package_dir / name).write_text(rendered[name], encoding="utf-8")
    package_path = emit(package_dir, Path(settings.out) / spec.name)
    report = {"metrics": metrics, "output": str(output_path), "package": str(package_path)}
    (Path(state.run_dir) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    report_path = write_report(state, Path(state.run_dir))
    context.reporter.info(f"run report: {report_path}")
    context.reporter.info(f"labeled data: {output_path}")
    context.reporter.info(f"labeler package: {package_path}")
    return {"output_path": str(output_path), "package_path": str(package_path)}


def write_labeled_data(state: RunState, output_path: Path) -> Counter:
    """Merge the verdicts into the labeler's output; returns the count of rows per source."""
    verdicts = latest_by_row(Path(state.run_dir) / VERDICTS_FILE)
    labeled = Path(state.labeling.output_path)
    columns = [c for c in read_columns(labeled) if c != NEEDS_REVIEW]
    columns.insert(columns.index(LABEL) + 1, "source")
    sources: Counter = Counter()
    with TableWriter(output_path, columns) as writer:
        batch = []
        for _, row, verdict in with_verdicts(iter_rows(labeled), verdicts):
            needs_review = read_flag(row.pop(NEEDS_REVIEW))
            row[LABEL], row["source"] = resolve(row[LABEL], verdict, needs_review)
            sources[row["source"]] += 1
            batch.append(row)
            if len(batch) == 10_000:
                writer.write(batch)
                batch = []
        writer.write(batch)
    return sources


def run_metrics(state: RunState, sources: Counter) -> dict[str, str]:
    """Figures for the model card and the run report, as display strings."""
    labeling = state.labeling
    rows = max(labeling.rows, 1)
    seconds = max(labeling.seconds, 1e-9)
    metrics = {
        "rows labeled": str(labeling.rows),
        "voter disagreements": f"{labeling.disagreements} ({labeling.disagreements / rows:.1%})",
        "labeling time": f"{labeling.seconds:.1f} s ({labeling.rows / seconds:.0f} rows/s)",
    }
    for source in ("consensus", "llm", "human", "vote", "unresolved"):
        if sources.get(source):
            metrics[f"rows from {source}"] = str(sources[source])
    latest: dict[str, LearnedVoterRecord] = {record.voter: record for record in state.learned}
    for record in latest.values():
        metrics[f"learned voter {record.voter}"] = (
            f"{record.version}, trained on {record.examples} verified rows "
            f"({record.cross_validated_accuracy:.1%} out of fold)"
        )
    metrics.update(estimate_metrics(state))
    verification = state.verification
    if verification is not None and verification.llm_calls:
        metrics["LLM calls"] = str(verification.llm_calls)
        metrics["LLM tokens (prompt / completion)"] = (
            f"{verification.prompt_tokens} / {verification.completion_tokens}"
        )
        metrics["LLM cost"] = f"${verification.cost_usd:.4f}"
    if state.pilot is not None:
        for score in state.pilot.scores:
            if score.selected:
                metrics[f"pilot consensus agreement of {score.name}"] = (
                    f"{score.consensus_agreement:.1%}"
                )
    return metrics


def estimate_metrics(state: RunState) -> dict[str, str]:
    """The final labels' estimated accuracy and macro-F1 with their intervals, and how the
    rounds ended."""
    if not state.rounds:
        return {}
    last = state.rounds[-1]
    metrics = {
        "rows verified": f"{last.verified} ({last.verified / max(state.dataset.rows, 1):.1%}; "
        f"{last.heldout} held out)",
        "verification rounds": f"{sum(1 for r in state.rounds if r.chosen)}; stopped: "
        f"{last.stop_note or last.stop}",
    }
    if last.estimate is not None:
        basis = last.estimate["basis"]
        what = "agreement with the LLM verifier" if basis.startswith("llm") else "accuracy"
        for name, key in ((f"estimated {what}", "accuracy"), ("estimated macro-F1", "macro_f1")):
            value = last.estimate[key]
            metrics[name] = (
                f"{value['point']:.3f} (95% interval {value['low']:.3f}-{value['high']:.3f}, "
                f"{last.estimate['heldout_rows']} held-out rows)"
            )
    return metrics
