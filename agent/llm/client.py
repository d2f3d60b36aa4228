"""The LLM, behind a small interface the project owns.

Nodes ask for one thing: given chat messages and a pydantic schema, a
validated instance of that schema plus the tokens it cost. The production
implementation is ``langchain_openai.ChatOpenAI`` with structured output, so
any OpenAI-compatible endpoint works; tests use a project-owned fake or the
real client against a loopback server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from agent.errors import AgentError, LLMUnavailableError, ModelOutputError, UserInputError
from agent.llm.negotiation import (
    METHODS,
    MethodMemory,
    is_format_refusal,
    next_method,
    parse_json_answer,
    schema_instruction,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"

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
    method: str = ""
    """The structured-output method that got the answer (``json_schema``, ...)."""
    cached: bool = False
    """Read from the LLM cache: no request was sent, nothing was paid."""


class LanguageModel(Protocol):
    """Structured completions. Raises :class:`ModelOutputError` when the answer fails
    the schema and :class:`LLMUnavailableError` when the endpoint keeps failing."""

    model_name: str

    def structured(self, messages: Sequence[Message], schema: type[T]) -> LLMReply[T]: ...

    def check_endpoint(self) -> None:
        """A cheap first request (no tokens): raises :class:`UserInputError` for a wrong key,
        or an endpoint that is not OpenAI-compatible, before any work is done."""
        ...


class OpenAIChatModel:
    """:class:`LanguageModel` over ``ChatOpenAI`` (any OpenAI-compatible endpoint).

    ``method="auto"`` negotiates the structured-output method
    (:mod:`agent.llm.negotiation`) and remembers the one that worked in ``memory``; any
    other value forces that method.
    """

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        method: str = "auto",
        memory: MethodMemory | None = None,
    ) -> None:
        from langchain_openai import ChatOpenAI

        self.model_name = model
        self.base_url = base_url
        self.endpoint = (base_url or OPENAI_BASE_URL).rstrip("/")
        self._forced = None if method == "auto" else method
        if self._forced is not None and self._forced not in METHODS:
            raise ValueError(f"unknown structured-output method {method!r}")
        self._memory = memory
        self._listed: list[str] = []
        """The models the endpoint listed at :meth:`check_endpoint`, for error messages."""
        self._method: str | None = self._forced
        if self._method is None and memory is not None:
            remembered = memory.get_method(self.endpoint, model)
            self._method = remembered if remembered in METHODS else None
        self._lock = threading.Lock()
        self._chat = ChatOpenAI(
            model=model,
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            temperature=0,
        )

    @property
    def structured_method(self) -> str | None:
        """The method in use: forced, remembered or negotiated (None before the first call)."""
        return self._method

    def check_endpoint(self) -> None:
        import openai

        try:
            listing = self._chat.root_client.models.list()
            models = [getattr(entry, "id", None) for entry in listing.data]
        except openai.AuthenticationError as error:
            raise UserInputError(
                f"the LLM endpoint {self.endpoint} refused the API key (HTTP 401: "
                f"{_first_line(error.message)}); set OPENAI_API_KEY to a valid key"
            ) from None
        except openai.PermissionDeniedError as error:
            raise UserInputError(
                f"the LLM endpoint {self.endpoint} refused the API key (HTTP 403: "
                f"{_first_line(error.message)})"
            ) from None
        except openai.NotFoundError:
            raise UserInputError(
                f"{self.endpoint} is not an OpenAI-compatible endpoint (GET /models answered "
                "HTTP 404); --llm-base-url usually ends in /v1"
            ) from None
        except openai.APIStatusError as error:
            if 400 <= error.status_code < 500:
                raise UserInputError(
                    f"{self.endpoint} is not an OpenAI-compatible endpoint (GET /models "
                    f"answered HTTP {error.status_code}: {_first_line(error.message)})"
                ) from None
            raise LLMUnavailableError(
                f"LLM endpoint {self.endpoint} answered HTTP {error.status_code}: "
                f"{_first_line(error.message)}"
            ) from error
        except openai.APIConnectionError as error:
            raise LLMUnavailableError(
                f"LLM endpoint {self.endpoint} failed: {_first_line(str(error))}"
            ) from error
        except (openai.APIError, AttributeError, TypeError, ValueError):
            raise UserInputError(
                f"{self.endpoint} is not an OpenAI-compatible endpoint (GET /models did not "
                "answer a model list)"
            ) from None
        self._listed = [model for model in models if isinstance(model, str)]

    def structured(self, messages: Sequence[Message], schema: type[T]) -> LLMReply[T]:
        import openai

        # The JSON schema (not the class) goes to the client, and the answer is parsed
        # here, strictly, after the token usage of even an unusable answer has been read.
        json_schema = schema.model_json_schema()
        method = self._method or METHODS[0]
        started = time.monotonic()
        while True:
            try:
                raw = self._invoke(messages, json_schema, method)
                break
            except openai.APIStatusError as error:
                step = next_method(method) if self._forced is None else None
                if step is not None and is_format_refusal(error.status_code, error.message):
                    method = step
                    continue
                raise self._status_error(error) from error
            except openai.APIError as error:
                raise LLMUnavailableError(
                    f"LLM endpoint failed: {_first_line(str(error))}"
                ) from error
        latency = time.monotonic() - started
        self._remember(method)
        return _reply(raw, schema, latency, method)

    def chat_request(self, messages: Sequence[Message], schema: type[BaseModel]) -> dict[str, Any]:
        """The body of the chat request :meth:`structured` would send for ``messages`` with the
        method in use (the first one before any was negotiated): a Batch API request line's."""
        method = self._method or METHODS[0]
        chat, options = self._request(messages, schema.model_json_schema(), method)
        body = self._chat._get_request_payload(chat, **options)
        for name in [name for name in body if name.startswith("ls_")]:
            del body[name]  # LangSmith tracing options, never sent
        return body

    def read_completion(
        self, completion: dict[str, Any], schema: type[T], method: str | None = None
    ) -> LLMReply[T]:
        """A chat completion's body (as a Batch API result holds it), parsed and validated
        exactly like an answer to :meth:`structured`; raises :class:`UnusableAnswer`."""
        try:
            raw = self._chat._create_chat_result(completion).generations[0].message
        except (KeyError, TypeError, ValueError, IndexError) as error:
            usage = completion.get("usage") or {}
            tokens = TokenUsage(
                int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
            )
            raise UnusableAnswer(
                f"unusable LLM answer: {_first_line(str(error))}", tokens
            ) from None
        return _reply(raw, schema, 0.0, method or self._method or METHODS[0])

    def _invoke(self, messages: Sequence[Message], json_schema: dict, method: str):
        """The raw ``AIMessage`` for ``messages`` asked with ``method``."""
        chat, options = self._request(messages, json_schema, method)
        return self._chat.invoke(chat, **options)

    def _request(
        self, messages: Sequence[Message], json_schema: dict, method: str
    ) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        """The chat messages and the request options (``response_format``, ``tools``) that ask
        ``messages`` with ``method``: the one place a request is built, for both paths."""
        chat = [(message.role, message.content) for message in messages]
        if method in ("json_mode", "text"):
            # Into the first system message: some chat templates (Gemma's, Mistral's) refuse a
            # system message anywhere but first.
            instruction = schema_instruction(json_schema)
            if chat and chat[0][0] == "system":
                chat[0] = ("system", f"{chat[0][1]}\n\n{instruction}")
            else:
                chat.insert(0, ("system", instruction))
        if method == "text":
            return chat, {}
        # The options LangChain binds for structured output (its runnable: binding | parser).
        runnable = self._chat.with_structured_output(json_schema, method=method)
        return chat, dict(runnable.first.kwargs)

    def _remember(self, method: str) -> None:
        with self._lock:
            if self._forced is not None or self._method == method:
                return
            self._method = method
        if self._memory is not None:
            self._memory.put_method(self.endpoint, self.model_name, method)

    def _status_error(self, error) -> AgentError:
        message = _first_line(error.message)
        if error.status_code == 401:
            return UserInputError(
                f"the LLM endpoint {self.endpoint} refused the API key (HTTP 401: {message})"
            )
        if error.status_code == 404:
            known = f"; it lists {self._listed[:10]}" if self._listed else ""
            return UserInputError(
                f"the LLM endpoint {self.endpoint} does not know model {self.model_name!r} "
                f"(HTTP 404: {message}){known}; pick one with --llm-model"
            )
        return LLMUnavailableError(f"LLM endpoint answered HTTP {error.status_code}: {message}")


def _reply(raw, schema: type[T], latency: float, method: str) -> LLMReply[T]:
    """The validated answer of a raw ``AIMessage``; :class:`UnusableAnswer` with its cost."""
    usage = _usage(raw)
    try:
        parsed = _answer(raw)
    except ValueError as error:
        raise UnusableAnswer(f"unusable LLM answer: {_first_line(str(error))}", usage) from None
    try:
        value = schema.model_validate(parsed)
    except ValidationError as error:
        raise UnusableAnswer(
            f"LLM answer does not fit {schema.__name__}: {_first_line(str(error))}", usage
        ) from None
    return LLMReply(value, usage, latency, method)


def _answer(raw) -> Any:
    """The answer's JSON value: the forced tool call's arguments, or the message's content."""
    if getattr(raw, "invalid_tool_calls", None):
        problem = raw.invalid_tool_calls[0].get("error") or "tool call arguments are not JSON"
        raise ValueError(str(problem))
    tool_calls = getattr(raw, "tool_calls", None)
    if tool_calls:
        return tool_calls[0]["args"]
    content = getattr(raw, "content", None)
    if not isinstance(content, str) or not content.strip():
        raise ValueError("no structured answer")
    # LangChain's own parser completes truncated JSON; a cut-off answer is not an answer.
    return parse_json_answer(content)


def _usage(raw) -> TokenUsage:
    metadata = getattr(raw, "usage_metadata", None) or {}
    return TokenUsage(int(metadata.get("input_tokens", 0)), int(metadata.get("output_tokens", 0)))


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else "(no message)"
