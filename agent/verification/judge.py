"""The LLM judge: verdicts for disagreement rows, several rows per request.

Instructions and label definitions go once per batch; texts go as JSON data,
an object from item id to text (``{"0":"...","1":"..."}``). The answer maps
ids to labels the same way, ``{"labels":{"0":"toxic","1":"abstain"},
"reasons":{"1":"not English"}}``, with reasons only for abstentions: every
token of both is paid for. Every answer is validated row by row: an unknown
id is ignored; a label outside the set, a missing verdict, an abstention or a
malformed reply sends that row alone to the LLM once more, and a row that
still has no valid verdict is ``unresolved`` (for human review). Nothing is
ever mapped to a default label. A gate (the spending cap) admits each call
before it is sent; a refused batch goes to review as it is. Batches may be
judged from several threads at once.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from agent.errors import LLMUnavailableError, ModelOutputError
from agent.llm.client import LanguageModel, Message, TokenUsage
from agent.llm.prompts import Prompt, load_prompt
from agent.state import TaskPlan
from agent.verification.label_normalization import LabelNormalizer, label_form

ABSTAIN = "abstain"
MAX_TEXT_CHARS = 4000
"""Longer texts are cut for the judge (the label stays about the whole text's gist)."""
CONSECUTIVE_FAILURES_TO_STOP = 3
CAP_REACHED = "spending cap reached; left for review"


@dataclass(frozen=True)
class Verdict:
    row: int
    label: str | None
    source: str
    """``llm`` or ``unresolved``."""
    reason: str


@dataclass(frozen=True)
class CallRecord:
    """One LLM request, for the ledger."""

    rows: int
    usage: TokenUsage
    latency_s: float
    outcome: str
    method: str = ""
    """The structured-output method that was used (negotiated per endpoint)."""
    normalized: int = 0
    """Answers that named a label in another form (case, quotes, a synonym) and were mapped."""
    batch: str = ""
    """The Batch API batch that carried the request (none for a synchronous call)."""


@dataclass
class JudgeStats:
    calls: list[CallRecord] = field(default_factory=list)

    @property
    def usage(self) -> TokenUsage:
        total = TokenUsage()
        for call in self.calls:
            total = total + call.usage
        return total


class CallGate(Protocol):
    """Admits or refuses each LLM call before it is sent (the spending cap)."""

    def admit(self, messages: Sequence[Message], rows: int) -> float | None:
        """A reservation to settle after the call, or None to refuse it."""
        ...

    def settle(self, reservation: float, usage: TokenUsage) -> None: ...


def judge_messages(plan: TaskPlan, records: Sequence[dict[str, Any]]) -> list[Message]:
    """The request for a batch of disagreement records: the instructions once, then the items
    as compact JSON data. The voters' votes are left out: the judge decides from the text
    alone, and every token it reads is paid for."""
    items = {str(i): r["text"][:MAX_TEXT_CHARS] for i, r in enumerate(records)}
    prompt = _prompt(plan, items)
    return [Message("system", prompt.system), Message("user", prompt.user)]


def judge_prompt_id(plan: TaskPlan) -> str:
    """``verify_disagreements/vN``: goes into the ledger and the manifest."""
    return _prompt(plan, {}).id


def judge_instructions(plan: TaskPlan) -> dict[str, Any]:
    """Everything besides a text that decides the judge's verdict on it: the prompt's version,
    the rendered system prompt (the task sentence and every label's definition) and the
    synonyms answers are mapped with. The verdict cache keys on it, so a task that shares
    label names with another but not their meaning asks afresh."""
    prompt = _prompt(plan, {})
    return {
        "prompt": prompt.id,
        "system": prompt.system,
        "synonyms": {label.name: list(label.synonyms) for label in plan.labels},
    }


def _prompt(plan: TaskPlan, items: dict[str, str]) -> Prompt:
    return load_prompt(
        "verify_disagreements",
        task_json=json.dumps(plan.task, ensure_ascii=False),
        labels_json=json.dumps(
            {label.name: label.description for label in plan.labels},
            ensure_ascii=False,
            separators=(",", ":"),
        ),
        items_json=json.dumps(items, ensure_ascii=False, separators=(",", ":")),
    )


class VerdictReply(BaseModel):
    """An answer as parsed: ``labels`` maps item ids to labels (or ``abstain``), ``reasons``
    maps abstained ids to why. Values are checked row by row (:meth:`Judge._ask`), so that one
    odd value costs a retry of its row, not of the whole batch."""

    labels: dict[str, Any]
    reasons: Any = None


def verdict_schema(labels: Sequence[str]) -> type[VerdictReply]:
    """The reply schema as advertised, written by hand to be small: it is sent with every
    request and billed as input. The label enum is advertised to the LLM but validated here,
    per row.

    Id-keyed objects (``additionalProperties`` holding a schema) are accepted by OpenAI's
    structured outputs in the default, non-strict mode the project uses (LangChain sends a
    dict schema with ``strict: false``) and by function calling; strict mode would reject
    them (it wants ``additionalProperties: false`` on every object, and has no tuples).
    """
    advertised = {
        "title": "Verdicts",
        "type": "object",
        "properties": {
            "labels": {"type": "object", "additionalProperties": {"enum": [*labels, ABSTAIN]}},
            "reasons": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["labels"],
    }

    def advertise(schema: dict[str, Any], model: type) -> None:
        schema.clear()
        schema.update(copy.deepcopy(advertised))

    class Verdicts(VerdictReply):
        model_config = ConfigDict(json_schema_extra=advertise)

    return Verdicts


class Judge:
    def __init__(
        self,
        llm: LanguageModel,
        plan: TaskPlan,
        batch_size: int,
        on_call: Callable[[CallRecord], None] | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self.llm = llm
        self.plan = plan
        self.batch_size = batch_size
        self.schema = verdict_schema(plan.label_names)
        self.normalizer = LabelNormalizer(
            plan.label_names, {label.name: label.synonyms for label in plan.labels}
        )
        self.stats = JudgeStats()
        self._on_call = on_call
        self._gate = gate
        self._failures = 0
        self._lock = threading.Lock()
        """Batches are judged concurrently; the failure count is shared."""

    @property
    def prompt_id(self) -> str:
        return judge_prompt_id(self.plan)

    def judge(self, rows: Sequence[dict[str, Any]]) -> list[Verdict]:
        """Verdicts for one batch of disagreement records (``row``, ``text``, ``votes``)."""
        answers, problem = self._ask(rows)
        return self._verdicts(rows, answers, problem)

    def read_reply(
        self, reply: VerdictReply, rows: int
    ) -> tuple[dict[int, tuple[str | None, str]], int]:
        """A reply that came another way (the Batch API), validated row by row as :meth:`judge`
        does: the verdict of each item id, and how many answers were normalized."""
        return self._answers(reply, rows)

    def verdicts_of(
        self,
        rows: Sequence[dict[str, Any]],
        answers: dict[int, tuple[str | None, str]],
        problem: str = "",
    ) -> list[Verdict]:
        """Verdicts from :meth:`read_reply`'s answers (or a ``problem`` that left the batch
        without any): a row without a valid one is asked again alone, as :meth:`judge` does."""
        return self._verdicts(rows, answers, problem)

    def _verdicts(
        self,
        rows: Sequence[dict[str, Any]],
        answers: dict[int, tuple[str | None, str]],
        problem: str,
    ) -> list[Verdict]:
        verdicts = []
        for index, record in enumerate(rows):
            label, reason = answers.get(index, (None, problem or "no verdict for this row"))
            if label is None and problem != CAP_REACHED:
                label, reason = self._ask_alone(record, reason)
            if label is None:
                verdicts.append(Verdict(record["row"], None, "unresolved", reason))
            else:
                verdicts.append(Verdict(record["row"], label, "llm", reason))
        return verdicts

    def _ask_alone(self, record: dict[str, Any], first_problem: str) -> tuple[str | None, str]:
        answers, problem = self._ask([record])
        label, reason = answers.get(0, (None, problem or "no verdict"))
        if label is None:
            return None, f"{first_problem}; retry: {reason}"
        return label, reason

    def _ask(self, rows: Sequence[dict[str, Any]]) -> tuple[dict[int, tuple[str | None, str]], str]:
        """Answers by item id (label None and the problem when invalid), or a batch problem."""
        if self._failures >= CONSECUTIVE_FAILURES_TO_STOP:
            return {}, "LLM unavailable; left for review"
        messages = judge_messages(self.plan, rows)
        reservation = 0.0
        if self._gate is not None:
            reservation = self._gate.admit(messages, len(rows))
            if reservation is None:
                return {}, CAP_REACHED
        usage = TokenUsage()
        try:
            reply = self.llm.structured(messages, self.schema)
            usage = reply.usage
        except LLMUnavailableError as error:
            with self._lock:
                self._failures += 1
            self._record(CallRecord(len(rows), usage, 0.0, f"unavailable: {error}"))
            return {}, f"LLM unavailable ({error})"
        except ModelOutputError as error:
            usage = getattr(error, "usage", usage)
            self._record(CallRecord(len(rows), usage, 0.0, "malformed"))
            return {}, f"malformed answer ({error})"
        finally:
            if self._gate is not None:
                self._gate.settle(reservation, usage)
        with self._lock:
            self._failures = 0
        answers, normalized = self._answers(reply.value, len(rows))
        if not reply.cached:  # a cached answer was no call, and cost nothing
            record = CallRecord(len(rows), reply.usage, reply.latency_s, "ok")
            self._record(replace(record, method=reply.method, normalized=normalized))
        return answers, ""

    def _answers(
        self, reply: VerdictReply, rows: int
    ) -> tuple[dict[int, tuple[str | None, str]], int]:
        """The reply's verdict for each item id it answered, and how many answers were
        normalized; ids outside the batch are ignored. (A JSON object holds each id once: of
        an id repeated in the reply's text, the JSON parser keeps the last.)"""
        reasons = reply.reasons if isinstance(reply.reasons, dict) else {}
        answers: dict[int, tuple[str | None, str]] = {}
        normalized = 0
        for index in range(rows):
            key = str(index)
            if key not in reply.labels:
                continue
            answer = reply.labels[key]
            reason = reasons.get(key)
            reason = reason.strip() if isinstance(reason, str) else ""
            label = self.normalizer.normalize(answer)
            if label is not None:
                normalized += label != answer
                answers[index] = (label, reason)
            elif isinstance(answer, str) and label_form(answer) == ABSTAIN:
                answers[index] = (None, f"abstained: {reason}" if reason else "abstained")
            else:
                answers[index] = (None, f"answered {answer!r}, not a task label")
        return answers, normalized

    def _record(self, call: CallRecord) -> None:
        self.stats.calls.append(call)
        if self._on_call is not None:
            self._on_call(call)
