"""render_labeler: render the labeler package for the chosen voters into staging.

Only the spec varies per task; the templates hold no logic beyond loops over
it. The staged files are not used until lint_labeler has passed them.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.packaging.build import build_spec, llm_info, provenance, selection_notes, write_tree
from agent.state import RunState


def render_labeler(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    context.reporter.stage("render_labeler", ", ".join(v.name for v in state.voters))
    spec = build_spec(
        state.plan, state.voters, context.settings, selection_notes=selection_notes(state)
    )
    staging = Path(state.run_dir) / "staging"
    prov = provenance(state, context.settings, llm_info(context))
    write_tree(staging, spec, prov, state.voters, link=True)
    return {"staging_dir": str(staging)}
