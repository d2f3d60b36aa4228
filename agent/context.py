"""What the graph's nodes are given at run time (LangGraph's runtime context).

Every external thing a node touches arrives here, built by the CLI (or a
test) and injected; no node constructs its own client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent.hub.client import ModelHub
from agent.llm.batch import BatchClient
from agent.llm.client import LanguageModel
from agent.settings import Settings
from sandbox import Sandbox


class Reporter(Protocol):
    """Where progress and notes go: a terminal display, a log, or a test's list."""

    def stage(self, name: str, detail: str = "") -> None:
        """A node starts."""
        ...

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def progress(self, task: str, done: int, total: int) -> None:
        """Long work advanced: ``done`` of ``total`` units of ``task``."""
        ...


@dataclass
class RunContext:
    settings: Settings
    """The run's settings (flags over environment)."""
    sandbox: Sandbox
    """Where the rendered labeler runs."""
    reporter: Reporter
    llm: LanguageModel | None = None
    """Planner and judge; None offline or without an endpoint."""
    batch: BatchClient | None = None
    """The Batch API of the LLM's endpoint, for verification with ``--llm-batch``; None
    otherwise."""
    hub: ModelHub | None = None
    """Model search and download; None offline."""
