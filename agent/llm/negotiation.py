"""Structured output on any OpenAI-compatible endpoint: which method, and a strict parser.

Endpoints differ in what they accept. OpenAI takes a JSON schema as ``response_format``;
DeepSeek refuses that (HTTP 400, "This response_format type is unavailable now") but takes
``json_object``; a llama.cpp server started without ``--jinja`` refuses ``tools``; some
servers take neither. The client tries the best method first and steps down one method on
a refusal, in :data:`METHODS` order:

1. ``json_schema``: ``response_format`` with the schema;
2. ``function_calling``: one tool with the schema, forced by ``tool_choice``;
3. ``json_mode``: ``response_format`` ``json_object``, the schema in the prompt (with the
   word JSON, which OpenAI and others require for that mode);
4. ``text``: nothing but the prompt, and :func:`parse_json_answer`.

A refusal is an HTTP 400 whose message names what was refused (:func:`is_format_refusal`);
any other 400 (a context that is too long, say) is not. Whatever the method, every answer
is parsed and validated here, strictly: a Markdown fence around the JSON and a reasoning
model's ``<think>...</think>`` preamble are taken off, nothing else is forgiven.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Protocol

StructuredMethod = Literal["json_schema", "function_calling", "json_mode", "text"]
METHODS: tuple[StructuredMethod, ...] = ("json_schema", "function_calling", "json_mode", "text")
REFUSAL_WORDS = ("response_format", "json_schema", "tools", "tool_choice")
"""Words of a 400's message that say the request's format, not its content, was refused."""

_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"^```[A-Za-z]*[ \t]*\n(.*?)\n?```$", re.DOTALL)


class MethodMemory(Protocol):
    """Where the method that worked is remembered, per endpoint and model (the LLM cache)."""

    def get_method(self, endpoint: str, model: str) -> str | None: ...

    def put_method(self, endpoint: str, model: str, method: str) -> None: ...


def next_method(method: str) -> StructuredMethod | None:
    """The method to try after ``method`` was refused (None after the last)."""
    index = METHODS.index(method)  # type: ignore[arg-type]
    return METHODS[index + 1] if index + 1 < len(METHODS) else None


def is_format_refusal(status_code: int, message: str) -> bool:
    """Whether an HTTP error refused the structured-output method rather than the request."""
    if status_code != 400:
        return False
    text = message.lower()
    return any(word in text for word in REFUSAL_WORDS)


def schema_instruction(schema: dict[str, Any]) -> str:
    """What the prompt says when the request itself carries no schema (``json_mode``, ``text``)."""
    return (
        "Answer with one JSON object and nothing else: no prose, no Markdown. "
        "The JSON object must follow this JSON schema:\n"
        + json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    )


def strip_think(text: str) -> str:
    """``text`` without a reasoning model's leading ``<think>...</think>`` block."""
    return _THINK.sub("", text, count=1)


def parse_json_answer(content: str) -> Any:
    """The JSON value of an answer: bare JSON, or JSON in one Markdown fence, after an optional
    ``<think>`` block. Raises :class:`ValueError` for anything else (prose around the JSON,
    truncated JSON, two values)."""
    text = strip_think(content).strip()
    fenced = _FENCE.match(text)
    if fenced is not None:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON ({error})") from None
