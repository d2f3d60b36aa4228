"""run_pilot: run every candidate on a pilot sample, with the real labeler.

The pilot is the labeler itself, rendered with all candidates and run in the sandbox on a
reproducible sample of the data (``--pilot-rows``, seeded by the data's content), so the
candidates are judged by the code that will label the data. Its output holds every
candidate's label and probability on each pilot row; the nodes after it read them there.

It also decides, once, each transformer candidate's CPU precision: the labeler runs with
``--quantize measure`` (int8 against fp32 on every pilot row) and the precision it reports
for each voter, as a ``quantize`` event, is kept; the chosen voters carry it into the spec
and the lock, so the labeler applies it without measuring again.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import sample_rows
from agent.labeler_runtime import TableWriter
from agent.packaging.build import build_package, build_spec, package_names, provenance
from agent.packaging.runner import LabelerJob, run_labeler_job
from agent.state import PilotRun, RunState

PILOT_FOLDER = "pilot"


def run_pilot(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    plan, settings, candidates = state.plan, context.settings, state.candidates
    sample = sample_rows(state.dataset, settings.pilot_rows, seed=state.dataset.sha256)
    # The four pilot nodes report as one stage, under the name the run log and the report's
    # timings have always given it.
    context.reporter.stage("vet_models", f"{len(candidates)} candidates on {len(sample)} rows")
    pilot_dir = Path(state.run_dir) / PILOT_FOLDER
    pilot_input = pilot_dir / "input.jsonl"
    with TableWriter(pilot_input, [plan.text_column]) as writer:
        writer.write({plan.text_column: row.get(plan.text_column)} for _, row in sample)
    spec = build_spec(plan, candidates, settings)
    package_dir = build_package(
        pilot_dir / "package", spec, provenance(state, settings, None), candidates
    )
    job = LabelerJob(
        package_dir=package_dir,
        module=package_names(plan)[1],
        input_path=pilot_input,
        output_path=pilot_dir / "work" / "output.jsonl",
        workdir=pilot_dir / "work",
        text_column=plan.text_column,
        quantize="measure",
    )
    outcome = run_labeler_job(
        context.sandbox,
        job,
        settings,
        lambda done, total: context.reporter.progress("pilot", done, total),
    )
    names = {candidate.name for candidate in candidates}
    measured = [e for e in outcome.precisions if e.get("voter") in names]
    pilot = PilotRun(
        rows=len(sample),
        input_path=str(pilot_input),
        output_path=str(job.output_path),
        precisions={e["voter"]: "int8" if e.get("int8") is True else "fp32" for e in measured},
        precision_notes={e["voter"]: str(e.get("reason", "")) for e in measured},
    )
    return {"pilot_run": pilot}
