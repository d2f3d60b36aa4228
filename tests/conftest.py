"""Shared fixtures: tiny real voters, the scripted LLM server, fakes and a test context."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.openai_server import ScriptedOpenAI
from tests.support.tiny_models import TOXIC_EXAMPLES

if TYPE_CHECKING:
    from tests.support.hub_fixtures import TinyModelCache

pytest_plugins = ["tests.support.hub_fixtures"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True)
def private_verdict_cache(tmp_path, monkeypatch):
    """Each test gets its own LLM verdict cache, never the user's."""
    monkeypatch.setenv("AUTOANNOTATOR_VERDICT_CACHE", str(tmp_path / "verdicts.sqlite"))


@pytest.fixture(scope="session")
def session_preflight_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("preflight") / "preflight.json"


@pytest.fixture(autouse=True)
def private_preflight_cache(session_preflight_cache: Path, monkeypatch: pytest.MonkeyPatch):
    """Sandbox probes that passed are remembered for this test session, never in the user's
    cache; shared by the session's tests, as each probe imports torch in the sandbox (tests
    of the cache itself point Settings.preflight_cache at a file of their own)."""
    monkeypatch.setenv("AUTOANNOTATOR_PREFLIGHT_CACHE", str(session_preflight_cache))


@pytest.fixture(scope="session")
def toxic_voters(tiny_models: TinyModelCache) -> dict[str, Path]:
    """Three tiny voters trained to react to toxic words, each with its own label style."""
    subset = TOXIC_EXAMPLES[:3] + TOXIC_EXAMPLES[5:8]
    return {
        "plain": tiny_models.get(
            {0: "non-toxic", 1: "toxic"}, seed=1, train_examples=TOXIC_EXAMPLES
        ),
        "shouty": tiny_models.get(
            {0: "NOT_OFFENSIVE", 1: "OFFENSIVE"}, seed=2, train_examples=subset
        ),
        "three_way": tiny_models.get(
            {0: "hate", 1: "offensive", 2: "neither"},
            seed=3,
            train_examples=tuple((text, 1 if label else 2) for text, label in TOXIC_EXAMPLES[2:]),
        ),
    }


@pytest.fixture(scope="session")
def opaque_voter(tiny_models: TinyModelCache) -> Path:
    return tiny_models.get({0: "LABEL_0", 1: "LABEL_1"}, seed=4)


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedOpenAI]:
    server = ScriptedOpenAI()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tweets_csv(tmp_path: Path) -> Path:
    target = tmp_path / "tweets.csv"
    shutil.copy(EXAMPLES / "tweets.csv", target)
    return target


def isolation_available() -> bool:
    from sandbox import SandboxUnavailable, make_sandbox

    try:
        make_sandbox("process")
    except SandboxUnavailable:
        return False
    return True


@pytest.fixture(scope="session")
def sandbox_kind() -> str:
    """``process`` where bubblewrap or unshare isolates; CI installs bubblewrap."""
    return "process" if isolation_available() else "none"
