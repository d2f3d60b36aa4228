"""render_labeler: render the labeler package for the chosen voters into staging.

Only the spec varies per task; the templates hold no logic beyond loops over
it. The staged files are not used until lint_labeler has passed them.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from ..context import RunContext
from ..packaging import build_spec, provenance, selection_notes, write_tree
from ..state import RunState


def llm_info(context: RunContext) -> dict | None:
    """The LLM settings recorded in the manifest (never the key)."""
    if context.llm is None:
        return None
    settings = context.settings
    return {
        "model": context.llm.model_name,
        "base_url": settings.llm_base_url,
        "structured_method": getattr(context.llm, "structured_method", None)
        or settings.llm_structured_method,
    }


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
