"""plan_task: decide the label set, the text column and the Hub search terms.

With an LLM the plan comes from a structured answer, validated against the
data (the column must exist, labels must be distinct) and retried once with
the problem spelled out; without one, the rule-based planner decides. Flags
(``--labels``, ``--text-column``) always win: given both, a plan the LLM cannot
get right falls back to the rule-based one, with a warning.
"""

from __future__ import annotations

import json
from typing import Literal

from langgraph.runtime import Runtime
from pydantic import BaseModel, Field

from agent.context import RunContext
from agent.dataset import guess_text_column, head
from agent.errors import ModelOutputError, UserInputError
from agent.llm.client import Message
from agent.llm.prompts import load_prompt
from agent.planning import plan_by_rules
from agent.state import DatasetInfo, RunState, TaskLabel, TaskPlan

ATTEMPTS = 2
SAMPLE_ROWS = 3
SAMPLE_CHARS = 200


class ProposedLabel(BaseModel):
    name: str = Field(description="short lowercase label name")
    description: str = Field(description="one-sentence definition")
    examples: list[str] = Field(default_factory=list, description="2 to 4 short example texts")
    synonyms: list[str] = Field(default_factory=list, description="up to 4 other words for it")


class PlanProposal(BaseModel):
    """The LLM's plan for a labeling task."""

    family: Literal["sentiment", "toxicity", "spam", "hate", "topic", "other"]
    labels: list[ProposedLabel]
    text_column: str
    search_queries: list[str]
    language: str = "en"


def plan_task(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    context.reporter.stage("plan_task", state.task)
    plan = None
    if context.llm is not None:
        try:
            plan = _plan_with_llm(state, context)
        except ModelOutputError as error:
            if not (settings.labels and settings.text_column):
                raise
            context.reporter.warn(f"{error}; using the rule-based plan with your labels")
    if plan is None:
        plan = _plan_by_rules(state, settings.labels, settings.text_column)
    plan = _apply_flags(plan, settings.labels, settings.text_column)
    if plan.text_column not in state.dataset.columns:
        raise UserInputError(
            f"no column {plan.text_column!r} in {state.dataset.path}; "
            f"columns are {list(state.dataset.columns)}"
        )
    context.reporter.info(
        f"plan ({plan.planner}): {plan.family}, labels {list(plan.label_names)}, "
        f"text column {plan.text_column!r}"
    )
    return {"plan": plan}


def _plan_by_rules(state: RunState, labels: tuple[str, ...], text_column: str | None) -> TaskPlan:
    family, planned, queries = plan_by_rules(state.task, labels)
    return TaskPlan(
        task=state.task,
        family=family,
        labels=planned,
        text_column=text_column or guess_text_column(state.dataset),
        search_queries=queries,
        planner="rules",
    )


def _apply_flags(plan: TaskPlan, labels: tuple[str, ...], text_column: str | None) -> TaskPlan:
    updates: dict = {}
    if labels and plan.label_names != labels:
        known = {label.name: label for label in plan.labels}
        updates["labels"] = tuple(known.get(name, TaskLabel(name=name)) for name in labels)
    if text_column and plan.text_column != text_column:
        updates["text_column"] = text_column
    if updates and not plan.planner.endswith("+user"):
        updates["planner"] = plan.planner + "+user"
    return plan.model_copy(update=updates)


def _columns_preview(dataset: DatasetInfo) -> str:
    rows = head(dataset, SAMPLE_ROWS)
    preview = {
        column: [str(row.get(column, ""))[:SAMPLE_CHARS] for row in rows]
        for column in dataset.columns
    }
    return json.dumps(preview, ensure_ascii=False, indent=1)


def _plan_with_llm(state: RunState, context: RunContext) -> TaskPlan:
    settings = context.settings
    feedback = ""
    for _ in range(ATTEMPTS):
        prompt = load_prompt(
            "plan_task",
            task_json=json.dumps(state.task, ensure_ascii=False),
            columns_json=_columns_preview(state.dataset),
            required_labels=bool(settings.labels),
            required_labels_json=json.dumps(list(settings.labels), ensure_ascii=False),
            feedback=feedback,
        )
        messages = [Message("system", prompt.system), Message("user", prompt.user)]
        try:
            proposal = context.llm.structured(messages, PlanProposal).value
        except ModelOutputError as error:
            feedback = str(error)
            context.reporter.warn(f"planner answer unusable ({feedback}); asking again")
            continue
        problem = _problem(proposal, state.dataset, settings.text_column)
        if problem is None:
            return TaskPlan(
                task=state.task,
                family=proposal.family,
                labels=tuple(
                    TaskLabel(
                        name=label.name.strip(),
                        description=label.description.strip(),
                        examples=tuple(e.strip() for e in label.examples[:4] if e.strip()),
                        synonyms=tuple(s.strip() for s in label.synonyms[:4] if s.strip()),
                    )
                    for label in proposal.labels
                ),
                text_column=settings.text_column or proposal.text_column,
                search_queries=tuple(q.strip() for q in proposal.search_queries if q.strip()),
                language=proposal.language.strip().lower()[:2] or "en",
                planner=f"llm:{context.llm.model_name}",
            )
        feedback = problem
        context.reporter.warn(f"planner proposed an invalid plan ({problem}); asking again")
    raise ModelOutputError(
        f"the LLM could not produce a valid plan ({feedback})"
        + ("" if settings.labels and settings.text_column else "; pass --labels and --text-column")
    )


def _problem(proposal: PlanProposal, dataset: DatasetInfo, text_column: str | None) -> str | None:
    names = [label.name.strip() for label in proposal.labels]
    if not 2 <= len(names) <= 20:
        return f"{len(names)} labels; between 2 and 20 are needed"
    if any(not name for name in names) or len(set(names)) != len(names):
        return f"label names must be distinct and non-empty, got {names}"
    if text_column is None and proposal.text_column not in dataset.columns:
        return f"text_column {proposal.text_column!r} is not one of {list(dataset.columns)}"
    if not any(query.strip() for query in proposal.search_queries):
        return "no search queries"
    return None
