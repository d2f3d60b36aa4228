"""search_models: find candidate voters on the Hugging Face Hub.

Each of the plan's search terms is sent to the Hub (text-classification models,
most downloaded first). Models are refused on their metadata first (gated,
remote code, pickle-only weights, library, licence, size, language), then on
their labels, read from ``config.json`` alone at the model's exact commit (the
Hub's model info does not carry ``id2label``): names and synonyms, the LLM for
labels they cannot place (or the map it gave in an earlier run, recorded), a
provisional guess for opaque ``LABEL_i`` names that the pilot settles. Only the
most downloaded survivors are fetched in full, at that commit, for the pilot.
Every refusal is recorded with its reason.
"""

from __future__ import annotations

from typing import NamedTuple

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.discovery.catalog import catalog_candidates
from agent.discovery.label_names import LabelMapping
from agent.discovery.llm_label_maps import map_model_labels
from agent.discovery.vetting import (
    fetch_hub_candidate,
    hub_labels,
    hub_precheck,
    read_hub_labels,
    voter_name,
)
from agent.errors import HubUnavailableError, UserInputError
from agent.hub.client import HubModel, ModelUnavailableError
from agent.state import Candidate, Rejection, RunState, TaskPlan

RESULTS_PER_QUERY = 20


def search_models(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    plan = state.plan
    if context.hub is None:
        return search_catalog(state, context, "the Hub is off (--offline)")
    context.reporter.stage("search_models", ", ".join(plan.search_queries))
    found: dict[str, HubModel] = {}
    try:
        for query in plan.search_queries:
            for model in context.hub.search(query, RESULTS_PER_QUERY):
                found.setdefault(model.id, model)
    except HubUnavailableError as error:
        context.reporter.warn(f"{error}; using the offline catalog instead")
        return search_catalog(state, context, "the Hub is unreachable")
    if any(model.cached for model in found.values()):
        context.reporter.warn(
            "the Hub is unreachable; replaying the search results and files an earlier run cached"
        )
    rejections: list[Rejection] = []
    shortlist: list[Screened] = []
    for model in sorted(found.values(), key=lambda m: (-m.downloads, -m.likes, m.id)):
        if len(shortlist) == context.settings.candidates:
            break
        outcome = screen(model, plan, context)
        (rejections if isinstance(outcome, Rejection) else shortlist).append(outcome)
    candidates: list[Candidate] = []
    taken: set[str] = set()
    for model, mapping, note in shortlist:
        context.reporter.info(f"downloading {model.id} at {model.sha[:12]}")
        try:
            outcome = fetch_hub_candidate(
                context.hub,
                model,
                plan.label_names,
                voter_name(model.id, taken),
                label_map=mapping.mapping if mapping is not None else None,
                label_map_note=note,
                max_parameters=context.settings.max_parameters,
            )
        except ModelUnavailableError as error:
            outcome = Rejection(ref=model.id, reason=str(error))
        (rejections if isinstance(outcome, Rejection) else candidates).append(outcome)
    return _outcome(candidates, rejections, context, f"on the Hub for {list(plan.search_queries)}")


class Screened(NamedTuple):
    """A model that passed screening, with its labels' mapping and how it was decided."""

    model: HubModel
    mapping: LabelMapping | None
    """None when the hub cannot serve single files: the labels are checked after the download."""
    note: str = ""


def screen(model: HubModel, plan: TaskPlan, context: RunContext) -> Screened | Rejection:
    """The model with its labels and their mapping, or why it is refused; no weights fetched."""
    settings = context.settings
    reason = hub_precheck(
        model,
        plan.language,
        licenses=settings.licenses,
        max_parameters=settings.max_parameters,
    )
    if reason is not None:
        return Rejection(ref=model.id, reason=reason)
    model = read_hub_labels(context.hub, model)
    if isinstance(model, Rejection):
        return model
    labels = hub_labels(model)
    if not labels:
        return Screened(model, None)
    mapping, note = map_model_labels(model.id, labels, plan, context)
    if not mapping.ok:
        return Rejection(ref=model.id, reason=mapping.reason or "")
    return Screened(model, mapping, note)


def search_catalog(state: RunState, context: RunContext, why: str) -> dict:
    """Specialists, cached models and ``--models-dir`` folders that fit the task."""
    context.reporter.stage("search_models", f"offline catalog ({why})")
    candidates, rejections = catalog_candidates(state.plan, context.settings.models_dir)
    return _outcome(candidates, rejections, context, "in the offline catalog")


def _outcome(candidates, rejections, context: RunContext, where: str) -> dict:
    for rejection in rejections:
        context.reporter.info(f"refused {rejection.ref}: {rejection.reason}")
    if not candidates:
        raise UserInputError(
            f"no usable voters found {where} ({len(rejections)} refused); pass --model"
        )
    return {"candidates": tuple(candidates), "rejections": tuple(rejections)}
