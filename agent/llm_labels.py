"""Label mapping by the LLM, for model labels that names and synonyms cannot place.

``HATE_SPEECH``/``non-hate`` onto ``toxic``/``non-toxic`` is obvious to a person and
beyond a synonym table. The LLM proposes a mapping, which is accepted only when it
passes :func:`agent.labels.check_mapping` (every model label maps once, to a task label
or ``ignore``, covering at least two task labels); otherwise it is asked once more with
the problem spelled out, then the model is refused. The pilot then checks the mapping
against the other voters like any other (:mod:`agent.label_calibration`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel, Field

from .errors import ModelOutputError
from .labels import IGNORE, LabelMapping, check_mapping
from .llm import LanguageModel, Message
from .prompts import load_prompt
from .state import TaskPlan

PROMPT = "search_models"
ATTEMPTS = 2


class LabelChoice(BaseModel):
    model_label: str = Field(description="one of the classifier's labels, exactly as given")
    task_label: str = Field(description=f"one of the task's labels, or {IGNORE!r}")


class LabelMappingProposal(BaseModel):
    """How each of a classifier's labels maps onto the task's labels."""

    mapping: list[LabelChoice]


def map_labels_with_llm(
    llm: LanguageModel, model_id: str, model_labels: Sequence[str], plan: TaskPlan
) -> tuple[LabelMapping, str]:
    """The LLM's validated mapping (or a refusal with the reason), and the prompt id used."""
    feedback = ""
    prompt_id = ""
    for _ in range(ATTEMPTS):
        prompt = load_prompt(
            PROMPT,
            task_json=json.dumps(plan.task, ensure_ascii=False),
            task_labels_json=json.dumps(
                [{"name": label.name, "description": label.description} for label in plan.labels],
                ensure_ascii=False,
            ),
            model_json=json.dumps(model_id),
            model_labels_json=json.dumps(list(model_labels), ensure_ascii=False),
            feedback=feedback,
        )
        prompt_id = prompt.id
        messages = [Message("system", prompt.system), Message("user", prompt.user)]
        try:
            proposal = llm.structured(messages, LabelMappingProposal).value
        except ModelOutputError as error:
            feedback = str(error)
            continue
        mapping = {choice.model_label: choice.task_label for choice in proposal.mapping}
        if len(mapping) != len(proposal.mapping):
            feedback = "a classifier label was mapped more than once"
            continue
        feedback = check_mapping(mapping, model_labels, plan.label_names) or ""
        if not feedback:
            return LabelMapping(mapping, None), prompt_id
    reason = f"its labels could not be mapped, even by the LLM ({feedback})"
    return LabelMapping({}, reason), prompt_id
