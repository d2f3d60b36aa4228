"""resolve_models: the user named the voters (``--model``); fetch and vet each one.

Discovery is skipped, but safety is not: every named model must ship
safetensors, need no remote code, and have labels that map onto the task's.
Labels are mapped as discovery maps them: by names and synonyms, else by the
map the LLM gave for this model before (recorded), else by the LLM; so naming a
model that an earlier run discovered reproduces that run's map. A named model
that fails is an error with its reason, not a silent drop.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.discovery.catalog import BY_NAME, specialist_candidate
from agent.discovery.llm_label_maps import map_model_labels
from agent.discovery.vetting import (
    SPECIALIST_PREFIX,
    fetch_hub_candidate,
    hub_labels,
    hub_precheck,
    read_hub_labels,
    vet_folder,
    voter_name,
)
from agent.errors import UserInputError
from agent.hub.model_files import read_model_folder
from agent.state import Candidate, Rejection, RunState


def resolve_models(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    refs = context.settings.models
    context.reporter.stage("resolve_models", ", ".join(refs))
    taken: set[str] = set()
    candidates: list[Candidate] = []
    for ref in refs:
        outcome = resolve_reference(ref, state, context, voter_name(ref, taken))
        if isinstance(outcome, Rejection):
            raise UserInputError(f"--model {ref} cannot be used: {outcome.reason}")
        candidates.append(outcome)
    return {"candidates": tuple(candidates)}


def resolve_reference(
    ref: str, state: RunState, context: RunContext, name: str
) -> Candidate | Rejection:
    """A local folder, or a Hub model downloaded at its current commit."""
    labels = state.plan.label_names
    if ref.startswith(SPECIALIST_PREFIX):
        specialist = BY_NAME.get(ref[len(SPECIALIST_PREFIX) :])
        if specialist is None:
            raise UserInputError(f"--model {ref}: no such specialist; known: {sorted(BY_NAME)}")
        return specialist_candidate(specialist, state.plan)
    path = Path(ref).expanduser()
    if path.is_dir():
        folder = read_model_folder(path)
        mapping, note = map_model_labels(ref, folder.model_labels, state.plan, context)
        decided = mapping.mapping if mapping.ok else None  # else vet_folder says why
        return vet_folder(
            ref, folder, labels, name=name, origin="local", label_map=decided, label_map_note=note
        )
    if context.hub is None:
        raise UserInputError(f"--model {ref}: not a local folder, and the Hub is off (--offline)")
    model = context.hub.info(ref)
    reason = hub_precheck(model, state.plan.language)
    if reason is not None:
        return Rejection(ref=ref, reason=reason)
    model = read_hub_labels(context.hub, model)
    if isinstance(model, Rejection):
        return model
    decided, note = None, ""
    if hub_labels(model):
        mapping, note = map_model_labels(ref, hub_labels(model), state.plan, context)
        if not mapping.ok:
            return Rejection(ref=ref, reason=mapping.reason or "")
        decided = mapping.mapping
    context.reporter.info(f"downloading {ref} at {model.sha[:12]}")
    return fetch_hub_candidate(
        context.hub, model, labels, name, label_map=decided, label_map_note=note
    )
