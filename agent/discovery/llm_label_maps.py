"""Label mapping by the LLM, for model labels that names and synonyms cannot place.

``HATE_SPEECH``/``non-hate`` onto ``toxic``/``non-toxic`` is obvious to a person and
beyond a synonym table. The LLM proposes a mapping, which is accepted only when it
passes :func:`agent.discovery.label_names.check_mapping` (every model label maps once,
to a task label or ``ignore``, covering at least two task labels); otherwise it is asked
once more with the problem spelled out, then the model is refused. The pilot then checks the mapping
against the other voters like any other (:mod:`agent.discovery.calibration`).

Every mapping the LLM decided is recorded next to the Hub records
(:class:`LabelMapRecords`), keyed by what decided it: the model and its labels, the task
sentence, the task's labels with their definitions, the prompt's version and the LLM
(endpoint and model). A recorded mapping is used before the LLM is asked: a rerun or a
``--model ID`` naming a model discovery mapped, with the same LLM, maps the model exactly as
the first run did, and so does a run without an LLM endpoint, from a record of any LLM for
the same task. A task that shares label names with another but not their meaning, or
another LLM, decides afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agent.context import RunContext
from agent.discovery.label_names import IGNORE, LabelMapping, all_opaque, check_mapping
from agent.discovery.vetting import decide_mapping
from agent.errors import ModelOutputError
from agent.files import write_text_atomically
from agent.llm.client import LanguageModel, Message
from agent.llm.prompts import load_prompt, prompt_version
from agent.state import TaskPlan

PROMPT = "search_models"
ATTEMPTS = 2
RECORDS_FOLDER = "label-maps"
"""Under the Hub records' folder (``$HF_HOME/autoannotator/hub-records``)."""


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
        if not feedback:  # in class order, whatever order the answer came in
            return LabelMapping({label: mapping[label] for label in model_labels}, None), prompt_id
    reason = f"its labels could not be mapped, even by the LLM ({feedback})"
    return LabelMapping({}, reason), prompt_id


def decision_key(model_labels: Sequence[str], plan: TaskPlan) -> str:
    """What besides the LLM decides a mapping: the model's labels, the task sentence, the task's
    labels with their definitions, and the prompt's version."""
    task_labels = [[label.name, label.description] for label in plan.labels]
    decided = [list(model_labels), plan.task, task_labels, f"{PROMPT}/v{prompt_version(PROMPT)}"]
    return hashlib.sha256(json.dumps(decided, ensure_ascii=False).encode()).hexdigest()


def llm_identity(llm: LanguageModel) -> str:
    """Which LLM decided: its endpoint and model."""
    return f"{getattr(llm, 'base_url', None) or 'default'} {llm.model_name}"


class LabelMapRecords:
    """The LLM's label mappings as first decided: one JSON file per model, one entry per
    decision (:func:`decision_key`) and LLM, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def get(
        self, model_id: str, model_labels: Sequence[str], plan: TaskPlan, llm: str | None
    ) -> dict[str, Any] | None:
        """``mapping``, ``prompt_id`` and ``llm`` (its model name) of the decision recorded for
        this model and task by ``llm`` (None: by any LLM, the first in key order), or None."""
        decision = decision_key(model_labels, plan)
        try:
            maps = json.loads(self._path(model_id).read_text(encoding="utf-8"))["maps"]
            keys = [_key(decision, llm)] if llm is not None else sorted(maps)
            for key in keys:
                entry = maps.get(key)
                if isinstance(entry, dict) and entry.get("decision") == decision:
                    mapping = {label: str(entry["mapping"][label]) for label in model_labels}
                    return {**entry, "mapping": mapping}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # a torn or foreign file: the LLM decides afresh
        return None

    def save(
        self,
        model_id: str,
        model_labels: Sequence[str],
        plan: TaskPlan,
        mapping: dict[str, str],
        *,
        prompt_id: str,
        llm: str,
        model_name: str,
    ) -> None:
        """Record ``mapping`` as decided by ``llm`` (:func:`llm_identity`; ``model_name`` is what
        notes show of it)."""
        path = self._path(model_id)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        maps = record.get("maps") if isinstance(record.get("maps"), dict) else {}
        decision = decision_key(model_labels, plan)
        maps[_key(decision, llm)] = {
            "decision": decision,
            "model_labels": list(model_labels),
            "task_labels": list(plan.label_names),
            "mapping": dict(mapping),
            "prompt_id": prompt_id,
            "llm": model_name,
            "llm_identity": llm,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": model_id, "maps": maps}
        write_text_atomically(path, json.dumps(record, indent=1, sort_keys=True))

    def _path(self, model_id: str) -> Path:
        return self.root / f"{model_id.strip('/').replace('/', '--')}.json"


def _key(decision: str, llm: str) -> str:
    return hashlib.sha256(json.dumps([decision, llm]).encode()).hexdigest()


def label_map_records(hub: object) -> LabelMapRecords | None:
    """The records beside the hub's own (None for a hub that keeps none, e.g. a test double)."""
    root = getattr(getattr(hub, "records", None), "root", None)
    return LabelMapRecords(Path(root) / RECORDS_FOLDER) if root is not None else None


def map_model_labels(
    model_id: str, labels: tuple[str, ...], plan: TaskPlan, context: RunContext
) -> tuple[LabelMapping, str]:
    """The mapping, and how it was decided when names could not ("" when they could).

    Names and synonyms first; for labels they cannot place, the mapping recorded when the
    LLM first decided it, else the LLM (then recorded).
    """
    mapping = decide_mapping(labels, plan.label_names)
    if all_opaque(labels) and mapping.ok:
        context.reporter.info(
            f"{model_id}: opaque labels {list(labels)}; the pilot decides what they mean"
        )
    if mapping.ok or not mapping.unresolved:
        return mapping, ""
    records = label_map_records(context.hub)
    llm = llm_identity(context.llm) if context.llm is not None else None
    recorded = records.get(model_id, labels, plan, llm) if records else None
    if recorded and check_mapping(recorded["mapping"], labels, plan.label_names) is None:
        how = f"{recorded.get('prompt_id', '?')}, {recorded.get('llm', '?')}"
        context.reporter.info(
            f"{model_id}: labels mapped as the LLM mapped them before ({how}): "
            f"{recorded['mapping']}"
        )
        note = f"its labels were mapped by the LLM ({how}) in an earlier run; that map is reused"
        return LabelMapping(recorded["mapping"], None), note
    if context.llm is None:
        return mapping, ""
    mapping, prompt_id = map_labels_with_llm(context.llm, model_id, labels, plan)
    if not mapping.ok:
        return mapping, ""
    context.reporter.info(f"{model_id}: labels mapped by the LLM ({prompt_id}): {mapping.mapping}")
    if records is not None:
        try:
            records.save(
                model_id,
                labels,
                plan,
                mapping.mapping,
                prompt_id=prompt_id,
                llm=llm,
                model_name=context.llm.model_name,
            )
        except OSError as error:
            context.reporter.warn(f"{model_id}: the LLM's label map was not recorded ({error})")
    return mapping, f"its labels were mapped by the LLM ({prompt_id}, {context.llm.model_name})"
