"""The OpenAI Batch API, behind a small interface the project owns.

A batch is a JSONL file of chat requests (each line ``custom_id``, ``method``, ``url``,
``body``), uploaded to ``/v1/files`` and run by ``/v1/batches`` within 24 hours at half the
price. :class:`BatchClient` is what the verification service needs: the body of a request
(exactly the chat request the synchronous path sends), submit, status, the answers (parsed
and validated exactly like synchronous ones), cancel. :class:`OpenAIBatchClient` implements it
with the real ``openai`` client of an :class:`~agent.llm.client.OpenAIChatModel`; tests run it
against the loopback server. :func:`wait_for_batch` polls, and cancels the batch when the
wait is aborted.

Local servers (Ollama, vLLM, llama.cpp) offer no ``/v1/batches``: :meth:`BatchClient.check`
says so in one line before anything is sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from agent.errors import LLMUnavailableError, UserInputError
from agent.llm.client import LLMReply, Message, OpenAIChatModel, TokenUsage, UnusableAnswer

T = TypeVar("T", bound=BaseModel)

CHAT_URL = "/v1/chat/completions"
PENDING = ("validating", "in_progress", "finalizing", "cancelling")
"""Statuses of a batch still under way; ``completed``, ``failed``, ``expired`` and
``cancelled`` are final."""


@dataclass(frozen=True)
class BatchStatus:
    id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    detail: str = ""
    """Why a batch failed (the API's ``errors``), when it says."""

    @property
    def done(self) -> bool:
        return self.status not in PENDING


@dataclass(frozen=True)
class BatchAnswer:
    """What one request of a batch got: a validated reply, or a problem (and its cost)."""

    reply: LLMReply | None
    problem: str = ""
    usage: TokenUsage = TokenUsage()


class BatchClient(Protocol):
    poll_interval_s: float
    sleep: Callable[[float], None]
    """How to wait between two polls (``time.sleep``; tests pass their own clock)."""

    def check(self) -> None:
        """A free request: raises :class:`UserInputError` when the endpoint has no Batch API."""
        ...

    def request(self, custom_id: str, messages: Sequence[Message], schema: type[T]) -> dict:
        """One JSONL line: the chat request the synchronous path would send."""
        ...

    def submit(self, requests: Sequence[dict], metadata: Mapping[str, str]) -> str:
        """Upload the requests and start one batch; its id."""
        ...

    def status(self, batch_id: str) -> BatchStatus: ...

    def answers(self, status: BatchStatus, schema: type[T]) -> dict[str, BatchAnswer]:
        """The answers by ``custom_id`` (those the batch has; none for a failed one)."""
        ...

    def cancel(self, batch_id: str) -> None: ...


class OpenAIBatchClient:
    """:class:`BatchClient` over the ``openai`` client of ``model`` (same key and endpoint)."""

    def __init__(
        self,
        model: OpenAIChatModel,
        poll_interval_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.model = model
        self.poll_interval_s = poll_interval_s
        self.sleep = sleep
        self._client = model._chat.root_client

    def check(self) -> None:
        import openai

        try:
            self._client.batches.list(limit=1)
        except openai.APIStatusError as error:
            if error.status_code in (404, 405, 501):
                raise UserInputError(
                    f"--llm-batch: {self.model.endpoint} offers no Batch API (GET /batches "
                    f"answered HTTP {error.status_code}); local servers (Ollama, vLLM, "
                    "llama.cpp) have none: run without --llm-batch"
                ) from None
            raise _unavailable(error) from error
        except openai.APIError as error:
            raise _unavailable(error) from error

    def request(self, custom_id: str, messages: Sequence[Message], schema: type[T]) -> dict:
        body = self.model.chat_request(messages, schema)
        return {"custom_id": custom_id, "method": "POST", "url": CHAT_URL, "body": body}

    def submit(self, requests: Sequence[dict], metadata: Mapping[str, str]) -> str:
        import openai

        lines = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in requests)
        try:
            uploaded = self._client.files.create(
                file=("requests.jsonl", lines.encode("utf-8"), "application/jsonl"),
                purpose="batch",
            )
            batch = self._client.batches.create(
                input_file_id=uploaded.id,
                endpoint=CHAT_URL,
                completion_window="24h",
                metadata=dict(metadata),
            )
        except openai.APIError as error:
            raise _unavailable(error) from error
        return batch.id

    def status(self, batch_id: str) -> BatchStatus:
        import openai

        try:
            batch = self._client.batches.retrieve(batch_id)
        except openai.APIError as error:
            raise _unavailable(error) from error
        errors = getattr(batch.errors, "data", None) or []
        detail = "; ".join(f"{e.code}: {e.message}" for e in errors[:3])
        return BatchStatus(
            batch.id, batch.status, batch.output_file_id, batch.error_file_id, detail
        )

    def answers(self, status: BatchStatus, schema: type[T]) -> dict[str, BatchAnswer]:
        found: dict[str, BatchAnswer] = {}
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id:
                for line in self._lines(file_id):
                    found[line["custom_id"]] = self._answer(line, schema)
        return found

    def cancel(self, batch_id: str) -> None:
        import openai

        try:
            self._client.batches.cancel(batch_id)
        except openai.APIError as error:
            raise _unavailable(error) from error

    def _lines(self, file_id: str) -> list[dict[str, Any]]:
        import openai

        try:
            text = self._client.files.content(file_id).text
        except openai.APIError as error:
            raise _unavailable(error) from error
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _answer(self, line: dict[str, Any], schema: type[T]) -> BatchAnswer:
        response = line.get("response") or {}
        body = response.get("body") or {}
        if line.get("error") or response.get("status_code") != 200:
            error = line.get("error") or body.get("error") or {}
            message = error.get("message") if isinstance(error, dict) else str(error)
            code = response.get("status_code", "no response")
            return BatchAnswer(None, f"batch request failed (HTTP {code}: {message})")
        try:
            return BatchAnswer(self.model.read_completion(body, schema))
        except UnusableAnswer as error:
            return BatchAnswer(None, f"malformed answer ({error})", error.usage)


def wait_for_batch(
    client: BatchClient, batch_id: str, on_poll: Callable[[BatchStatus], None] | None = None
) -> BatchStatus:
    """Poll until the batch is done. An interruption or an error while waiting cancels the
    batch (best effort: a batch nobody waits for would still be paid for), then goes on."""
    try:
        while True:
            status = client.status(batch_id)
            if on_poll is not None:
                on_poll(status)
            if status.done:
                return status
            client.sleep(client.poll_interval_s)
    except BaseException:
        try:
            client.cancel(batch_id)
        except Exception:  # noqa: BLE001 - the first error is the one to report
            pass
        raise


def _unavailable(error: Exception) -> LLMUnavailableError:
    message = getattr(error, "message", None) or str(error)
    lines = str(message).strip().splitlines()
    return LLMUnavailableError(f"Batch API: {lines[0][:300] if lines else type(error).__name__}")
