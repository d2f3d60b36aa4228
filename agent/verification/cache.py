"""LLM verdicts cached in SQLite, so a rerun or a resume never pays twice for a row.

A verdict is reused when the same text is judged by the same model at the same
endpoint, asked the same way (structured-output method) with the same rendered
instructions: the task sentence, every label's definition and synonyms, the prompt's
version. Two tasks that share label names but not their meaning never share a verdict.
Only valid verdicts are stored: an abstention or a failure is asked again next time.
The cache is shared by runs and processes (WAL journal, one transaction per
batch), and lives in the user's cache folder unless settings say otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA = """
create table if not exists verdicts (
    namespace text not null,
    text_sha256 text not null,
    label text not null,
    reason text not null,
    created real not null,
    primary key (namespace, text_sha256)
)
"""


def cache_namespace(endpoint: str | None, model: str, method: str, instructions: Any) -> str:
    """What besides the text decides a verdict: where the model runs, which model, how it is
    asked, and what it is told (``instructions``: any JSON value, e.g. the rendered system
    prompt and the label synonyms the answers are mapped with)."""
    key = json.dumps(
        ["verdict/v2", endpoint or "default", model, method, instructions],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(key.encode()).hexdigest()


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VerdictCache:
    """Verdicts by namespace (:func:`cache_namespace`) and text hash."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        self._connection.execute("pragma journal_mode=wal")
        self._connection.execute(SCHEMA)
        self._connection.commit()

    def get_many(self, namespace: str, texts: Iterable[str]) -> dict[str, tuple[str, str]]:
        """Text hash -> (label, reason) for the texts that have a verdict in ``namespace``."""
        keys = sorted({text_key(text) for text in texts})
        found: dict[str, tuple[str, str]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._connection.execute(
                    "select text_sha256, label, reason from verdicts "
                    f"where namespace = ? and text_sha256 in ({marks})",
                    [namespace, *chunk],
                )
                found.update({key: (label, reason) for key, label, reason in rows})
        return found

    def put_many(self, namespace: str, verdicts: Iterable[tuple[str, str, str]]) -> None:
        """Store ``(text, label, reason)`` verdicts under ``namespace``, in one transaction."""
        now = time.time()
        rows = [(namespace, text_key(t), label, reason, now) for t, label, reason in verdicts]
        with self._lock, self._connection:
            self._connection.executemany(
                "insert or replace into verdicts values (?, ?, ?, ?, ?)", rows
            )

    def close(self) -> None:
        with self._lock:
            self._connection.close()
