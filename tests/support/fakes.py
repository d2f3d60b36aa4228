"""Project-owned doubles of the agent's interfaces, for unit tests.

Each fake implements the same small protocol as the real thing (``LanguageModel``,
``ModelHub``, ``Reporter``), answers from a queue, and records what it was asked,
so a test asserts on behaviour rather than on calls into a vendor SDK.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent.errors import ModelOutputError
from agent.hub.client import HubModel
from agent.llm.client import LLMReply, Message, TokenUsage
from agent.state import TaskLabel, TaskPlan


@dataclass
class LLMCall:
    messages: list[Message]
    schema: type[BaseModel]

    @property
    def user_text(self) -> str:
        return "\n".join(m.content for m in self.messages if m.role == "user")


class FakeLLM:
    """Answers ``structured`` calls from a queue of dicts, models or exceptions."""

    def __init__(self, model_name: str = "fake-llm") -> None:
        self.model_name = model_name
        self.queue: deque[Any] = deque()
        self.responder: Callable[[LLMCall], Any] | None = None
        self.history: list[LLMCall] = []
        self.endpoint_checks = 0

    def check_endpoint(self) -> None:
        self.endpoint_checks += 1

    def enqueue(self, *answers: Any) -> None:
        self.queue.extend(answers)

    def structured(self, messages: Sequence[Message], schema: type[BaseModel]) -> LLMReply:
        call = LLMCall(list(messages), schema)
        self.history.append(call)
        if self.queue:
            answer = self.queue.popleft()
        elif self.responder is not None:
            answer = self.responder(call)
        else:
            raise AssertionError("FakeLLM: no answer queued")
        if isinstance(answer, Exception):
            raise answer
        try:
            value = answer if isinstance(answer, BaseModel) else schema.model_validate(answer)
        except ValueError as error:
            raise ModelOutputError(f"does not fit {schema.__name__}: {error}") from None
        usage = TokenUsage(sum(len(m.content) for m in messages) // 4, 20)
        return LLMReply(value, usage, 0.01)


@dataclass
class RecordingReporter:
    """Keeps every stage, note, warning and progress update."""

    stages: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    progress_updates: list[tuple[str, int, int]] = field(default_factory=list)

    def stage(self, name: str, detail: str = "") -> None:
        self.stages.append(name)

    def info(self, message: str) -> None:
        self.infos.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def progress(self, task: str, done: int, total: int) -> None:
        self.progress_updates.append((task, done, total))


class FakeHub:
    """A :class:`ModelHub` over local folders: ``add(model_id, folder, **metadata)``.

    Like the real client, ``download`` places the files in the Hugging Face cache
    layout (``models--org--name/snapshots/<sha>/``) under ``cache_dir``, so the
    sandboxed labeler finds them by id and revision.
    """

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = Path(cache_dir)
        self.models: dict[str, tuple[HubModel, Path]] = {}
        self.searches: list[str] = []
        self.downloads: list[tuple[str, str]] = []

    def add(self, model_id: str, folder: Path, **metadata: Any) -> HubModel:
        files = tuple(sorted(p.name for p in Path(folder).iterdir()))
        values = {
            "id": model_id,
            "sha": metadata.pop("sha", hashlib.sha1(model_id.encode()).hexdigest()),
            "pipeline_tag": "text-classification",
            "library": "transformers",
            "license": "apache-2.0",
            "languages": ("en",),
            "tags": (),
            "files": files,
            "parameters": None,
            "id2label": {},
            "remote_code": False,
            "gated": False,
            "private": False,
            "downloads": 0,
            "likes": 0,
        }
        values.update(metadata)
        model = HubModel(**values)
        self.models[model_id] = (model, Path(folder))
        return model

    def search(self, query: str, limit: int) -> list[HubModel]:
        self.searches.append(query)
        words = query.lower().split()
        found = [m for m, _ in self.models.values() if any(w in m.id.lower() for w in words)]
        return sorted(found, key=lambda m: -m.downloads)[:limit]

    def info(self, repo_id: str, revision: str | None = None) -> HubModel:
        from agent.errors import UserInputError

        if repo_id not in self.models:
            raise UserInputError(f"reading {repo_id} on the Hub: no such model")
        return self.models[repo_id][0]

    def download(self, repo_id: str, revision: str) -> Path:
        self.downloads.append((repo_id, revision))
        repo = self.cache_dir / ("models--" + repo_id.replace("/", "--"))
        snapshot = repo / "snapshots" / revision
        if not snapshot.exists():
            shutil.copytree(self.models[repo_id][1], snapshot)
            (repo / "refs").mkdir(exist_ok=True)
            (repo / "refs" / "main").write_text(revision)
        return snapshot


TOXICITY_PLAN = TaskPlan(
    task="label tweets for toxicity",
    family="toxicity",
    labels=(
        TaskLabel(name="non-toxic", description="civil text"),
        TaskLabel(name="toxic", description="insults, threats or slurs"),
    ),
    text_column="text",
    search_queries=("toxic",),
    planner="rules",
)
"""The toxicity plan the rule-based planner makes, shared by node tests."""
