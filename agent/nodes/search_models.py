"""search_models: find candidate voters on the Hugging Face Hub.

Each of the plan's search terms is sent to the Hub; models are refused on
their metadata first (gated, remote code, pickle-only weights, wrong pipeline
or language, labels that do not map), and only the most downloaded survivors
are fetched, at their exact commit, for the pilot.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from ..catalog import catalog_candidates
from ..context import RunContext
from ..errors import HubUnavailableError, UserInputError
from ..hub import HubModel
from ..labels import map_labels
from ..models import fetch_hub_candidate, hub_precheck, voter_name
from ..state import Candidate, Rejection, RunState

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
    rejections: list[Rejection] = []
    shortlist: list[HubModel] = []
    for model in sorted(found.values(), key=lambda m: (-m.downloads, -m.likes, m.id)):
        reason = hub_precheck(model, plan.language)
        if reason is None and model.id2label:
            labels = [model.id2label[index] for index in sorted(model.id2label)]
            reason = map_labels(labels, plan.label_names).reason
        if reason is not None:
            rejections.append(Rejection(ref=model.id, reason=reason))
        else:
            shortlist.append(model)
    candidates: list[Candidate] = []
    taken: set[str] = set()
    for model in shortlist[: context.settings.candidates]:
        context.reporter.info(f"downloading {model.id} at {model.sha[:12]}")
        name = voter_name(model.id, taken)
        outcome = fetch_hub_candidate(context.hub, model, plan.label_names, name)
        if isinstance(outcome, Rejection):
            rejections.append(outcome)
        else:
            candidates.append(outcome)
    return _outcome(candidates, rejections, context, f"on the Hub for {list(plan.search_queries)}")


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
