"""Every LLM answer cached, so a rerun with the same inputs and settings pays for nothing.

:class:`CachedLanguageModel` wraps any :class:`~agent.llm.client.LanguageModel`: an answer is
reused when the same endpoint and model, asked with the same structured-output method,
get exactly the same messages and schema. Only answers that passed the schema are kept
(an unusable one is asked again). The same SQLite file holds the method each endpoint
and model negotiated (:class:`~agent.llm.negotiation.MethodMemory`) and, in a table of
its own, the judge's per-row verdicts (:mod:`agent.verification.cache`).
``autoannotator-agent cache clear`` deletes the file; ``--no-llm-cache`` bypasses it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.llm.client import LanguageModel, LLMReply, Message, TokenUsage

T = TypeVar("T", bound=BaseModel)

SCHEMA = (
    """
create table if not exists responses (
    key text primary key,
    value text not null,
    created real not null
)
""",
    """
create table if not exists methods (
    endpoint text not null,
    model text not null,
    method text not null,
    created real not null,
    primary key (endpoint, model)
)
""",
)


def response_key(
    endpoint: str, model: str, method: str, messages: Sequence[Message], schema: dict[str, Any]
) -> str:
    """What decides an answer: where, which model, how it is asked, and exactly what."""
    asked = [endpoint, model, method, [[m.role, m.content] for m in messages], schema]
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()


class ResponseCache:
    """Answers by :func:`response_key`, and the structured-output method per endpoint and model."""

    def __init__(self, path: Path) -> None:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        self._connection.execute("pragma journal_mode=wal")
        for statement in SCHEMA:
            self._connection.execute(statement)
        self._connection.commit()

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._connection.execute(
                "select value from responses where key = ?", (key,)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, value: Any) -> None:
        with self._lock, self._connection:
            self._connection.execute(
                "insert or replace into responses values (?, ?, ?)",
                (key, json.dumps(value, ensure_ascii=False), time.time()),
            )

    def get_method(self, endpoint: str, model: str) -> str | None:
        with self._lock:
            row = self._connection.execute(
                "select method from methods where endpoint = ? and model = ?", (endpoint, model)
            ).fetchone()
        return None if row is None else row[0]

    def put_method(self, endpoint: str, model: str, method: str) -> None:
        with self._lock, self._connection:
            self._connection.execute(
                "insert or replace into methods values (?, ?, ?, ?)",
                (endpoint, model, method, time.time()),
            )

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class CachedLanguageModel:
    """A :class:`LanguageModel` that answers from the cache when it can (no request, no cost),
    and stores every answer that passed the schema."""

    def __init__(self, inner: LanguageModel, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache
        self.model_name = inner.model_name
        self.base_url = getattr(inner, "base_url", None)
        self.endpoint = getattr(inner, "endpoint", self.base_url or "default")

    @property
    def structured_method(self) -> str | None:
        """The inner model's method (None until negotiated); ``default`` for a model that has
        no choice of method."""
        return getattr(self.inner, "structured_method", "default")

    def check_endpoint(self) -> None:
        self.inner.check_endpoint()

    def structured(self, messages: Sequence[Message], schema: type[T]) -> LLMReply[T]:
        json_schema = schema.model_json_schema()
        method = self.structured_method
        if method is not None:
            found = self.cache.get(self._key(method, messages, json_schema))
            if found is not None:
                try:
                    value = schema.model_validate(found)
                except ValidationError:
                    pass  # stored by an older schema: asked afresh, and replaced
                else:
                    return LLMReply(value, TokenUsage(), 0.0, method, cached=True)
        reply = self.inner.structured(messages, schema)
        used = reply.method or method or "default"
        stored = reply.value.model_dump(mode="json")
        self.cache.put(self._key(used, messages, json_schema), stored)
        return reply

    def _key(self, method: str, messages: Sequence[Message], schema: dict[str, Any]) -> str:
        return response_key(self.endpoint, self.model_name, method, messages, schema)


def cache_files(path: Path) -> list[Path]:
    """The cache's SQLite file and its WAL companions, those that exist."""
    path = Path(path).expanduser()
    candidates = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
    return [candidate for candidate in candidates if candidate.exists()]


def clear_cache(path: Path) -> list[Path]:
    """Delete the LLM cache (answers, methods and verdicts); the files that were removed."""
    removed = cache_files(path)
    for file in removed:
        file.unlink()
    return removed
