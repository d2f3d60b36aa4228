"""search_models: find candidate voters on the Hugging Face Hub.

Each of the plan's search terms is sent to the Hub (text-classification models,
most downloaded first). Models are refused on their metadata first (gated,
remote code, pickle-only weights, library, licence, size, language), then on
their labels, read from ``config.json`` alone at the model's exact commit (the
Hub's model info does not carry ``id2label``): names and synonyms, the LLM for
labels they cannot place, a provisional guess for opaque ``LABEL_i`` names that
the pilot settles. Only the most downloaded survivors are fetched in full, at
that commit, for the pilot. Every refusal is recorded with its reason.
"""

from __future__ import annotations

import dataclasses

from langgraph.runtime import Runtime

from ..catalog import catalog_candidates
from ..context import RunContext
from ..errors import HubUnavailableError, UserInputError
from ..hub import HubModel, ModelUnavailableError
from ..labels import LabelMapping, all_opaque
from ..llm_labels import map_labels_with_llm
from ..models import (
    MULTI_LABEL_REASON,
    REMOTE_CODE_REASON,
    config_labels,
    decide_mapping,
    fetch_hub_candidate,
    hub_precheck,
    is_multi_label,
    voter_name,
)
from ..state import Candidate, Rejection, RunState, TaskPlan

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
    shortlist: list[tuple[HubModel, LabelMapping | None]] = []
    for model in sorted(found.values(), key=lambda m: (-m.downloads, -m.likes, m.id)):
        if len(shortlist) == context.settings.candidates:
            break
        outcome = screen(model, plan, context)
        (rejections if isinstance(outcome, Rejection) else shortlist).append(outcome)
    candidates: list[Candidate] = []
    taken: set[str] = set()
    for model, mapping in shortlist:
        context.reporter.info(f"downloading {model.id} at {model.sha[:12]}")
        try:
            outcome = fetch_hub_candidate(
                context.hub,
                model,
                plan.label_names,
                voter_name(model.id, taken),
                label_map=mapping.mapping if mapping is not None else None,
                max_parameters=context.settings.max_parameters,
            )
        except ModelUnavailableError as error:
            outcome = Rejection(ref=model.id, reason=str(error))
        (rejections if isinstance(outcome, Rejection) else candidates).append(outcome)
    return _outcome(candidates, rejections, context, f"on the Hub for {list(plan.search_queries)}")


def screen(
    model: HubModel, plan: TaskPlan, context: RunContext
) -> tuple[HubModel, LabelMapping | None] | Rejection:
    """The model with its labels and their mapping, or why it is refused; no weights fetched.

    The mapping is None when the hub cannot serve single files (a test double over local
    folders): the labels are then checked after the download.
    """
    settings = context.settings
    reason = hub_precheck(
        model,
        plan.language,
        licenses=settings.licenses,
        max_parameters=settings.max_parameters,
    )
    if reason is not None:
        return Rejection(ref=model.id, reason=reason)
    read_config = getattr(context.hub, "read_config", None)
    if read_config is None:
        labels = tuple(model.id2label[index] for index in sorted(model.id2label))
        if not labels:
            return model, None
    else:
        try:
            config = read_config(model.id, model.sha)
            labels = config_labels(config)
        except UserInputError as error:  # gated after all, no config.json, bad id2label
            return Rejection(ref=model.id, reason=str(error))
        if "auto_map" in config:
            return Rejection(ref=model.id, reason=REMOTE_CODE_REASON)
        if is_multi_label(config):
            return Rejection(ref=model.id, reason=MULTI_LABEL_REASON)
        model = dataclasses.replace(model, id2label=dict(enumerate(labels)), config=config)
    mapping = map_model_labels(model.id, labels, plan, context)
    if not mapping.ok:
        return Rejection(ref=model.id, reason=mapping.reason or "")
    return model, mapping


def map_model_labels(
    model_id: str, labels: tuple[str, ...], plan: TaskPlan, context: RunContext
) -> LabelMapping:
    """Names and synonyms first; the LLM only for labels they could not place."""
    mapping = decide_mapping(labels, plan.label_names)
    if all_opaque(labels) and mapping.ok:
        context.reporter.info(
            f"{model_id}: opaque labels {list(labels)}; the pilot decides what they mean"
        )
    if mapping.ok or not mapping.unresolved or context.llm is None:
        return mapping
    mapping, prompt_id = map_labels_with_llm(context.llm, model_id, labels, plan)
    if mapping.ok:
        context.reporter.info(
            f"{model_id}: labels mapped by the LLM ({prompt_id}): {mapping.mapping}"
        )
    return mapping


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
