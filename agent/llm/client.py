"""The LLM, behind a small interface the project owns.

Nodes ask for one thing: given chat messages and a pydantic schema, a
validated instance of that schema plus the tokens it cost. The production
implementation is ``langchain_openai.ChatOpenAI`` with structured output, so
any OpenAI-compatible endpoint works; tests use a project-owned fake or the
real client against a loopback server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import LLMUnavailableError, ModelOutputError

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user"]
    content: str


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class UnusableAnswer(ModelOutputError):
    """An answer that fails the schema; it still cost ``usage`` tokens."""

    def __init__(self, message: str, usage: TokenUsage) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class LLMReply(Generic[T]):
    value: T
    usage: TokenUsage
    latency_s: float


class LanguageModel(Protocol):
    """Structured completions. Raises :class:`ModelOutputError` when the answer fails
    the schema and :class:`LLMUnavailableError` when the endpoint keeps failing."""

    model_name: str

    def structured(self, messages: Sequence[Message], schema: type[T]) -> LLMReply[T]: ...


class OpenAIChatModel:
    """:class:`LanguageModel` over ``ChatOpenAI`` (any OpenAI-compatible endpoint)."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
    ) -> None:
        from langchain_openai import ChatOpenAI

        self.model_name = model
        self.base_url = base_url
        self._method = method
        self._chat = ChatOpenAI(
            model=model,
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            temperature=0,
        )

    def structured(self, messages: Sequence[Message], schema: type[T]) -> LLMReply[T]:
        import openai

        # The JSON schema (not the class) goes to the client, so that validation happens
        # here, after the token usage of even an unusable answer has been read.
        runnable = self._chat.with_structured_output(
            schema.model_json_schema(), method=self._method, include_raw=True
        )
        started = time.monotonic()
        try:
            result = runnable.invoke([(message.role, message.content) for message in messages])
        except openai.APIStatusError as error:
            raise LLMUnavailableError(
                f"LLM endpoint answered HTTP {error.status_code}: {_first_line(error.message)}"
            ) from error
        except openai.APIError as error:
            raise LLMUnavailableError(f"LLM endpoint failed: {_first_line(str(error))}") from error
        latency = time.monotonic() - started
        usage = _usage(result["raw"])
        if result.get("parsing_error") is not None or result.get("parsed") is None:
            problem = result.get("parsing_error") or "no structured answer"
            raise UnusableAnswer(f"unusable LLM answer: {_first_line(str(problem))}", usage)
        parsed = result["parsed"]
        content = getattr(result["raw"], "content", None)
        tool_calls = getattr(result["raw"], "tool_calls", None)
        if isinstance(content, str) and content.strip() and not tool_calls:
            # LangChain's parser completes truncated JSON; a cut-off answer is not an answer.
            # (An answer by function call, which LangChain picks for models without JSON
            # schema support, comes as tool-call arguments, parsed strictly already.)
            try:
                parsed = json.loads(content)
            except json.JSONDecodeError as error:
                raise UnusableAnswer(
                    f"unusable LLM answer: invalid JSON ({error})", usage
                ) from None
        try:
            value = schema.model_validate(parsed)
        except ValidationError as error:
            raise UnusableAnswer(
                f"LLM answer does not fit {schema.__name__}: {_first_line(str(error))}", usage
            ) from None
        return LLMReply(value, usage, latency)


def _usage(raw) -> TokenUsage:
    metadata = getattr(raw, "usage_metadata", None) or {}
    return TokenUsage(int(metadata.get("input_tokens", 0)), int(metadata.get("output_tokens", 0)))


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else "(no message)"
