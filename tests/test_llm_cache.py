"""The LLM cache: every answer reused (the real ChatOpenAI client, the scripted server)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from agent.cli import main
from agent.errors import ModelOutputError
from agent.llm.cache import CachedLanguageModel, ResponseCache
from agent.llm.client import Message, OpenAIChatModel
from agent.runs import default_context
from agent.settings import Settings
from tests.support.fakes import RecordingReporter
from tests.support.openai_server import JSON_OBJECT_ONLY, Reply, ScriptedOpenAI
from tests.test_verify_judge import keyword_verdicts, make_settings, make_state, tweets, verify


class Answer(BaseModel):
    label: str
    score: int


ASK = [Message("system", "be brief"), Message("user", "classify: hello")]
OTHER = [Message("system", "be brief"), Message("user", "classify: goodbye")]


@pytest.fixture
def server():
    emulated = ScriptedOpenAI(endpoint=JSON_OBJECT_ONLY)
    yield emulated
    emulated.close()


def cached_model(server: ScriptedOpenAI, path, model: str = "gpt-4o-mini") -> CachedLanguageModel:
    cache = ResponseCache(path)
    inner = OpenAIChatModel(
        model, api_key="sk-test", base_url=server.url, max_retries=0, memory=cache
    )
    return CachedLanguageModel(inner, cache)


def test_the_same_question_is_answered_from_the_cache_across_processes(tmp_path, server):
    server.respond_with(lambda request: {"label": "ok", "score": len(request.user_text)})
    first = cached_model(server, tmp_path / "cache.sqlite")
    asked = first.structured(ASK, Answer)
    assert not asked.cached and asked.method == "json_mode"
    sent = len(server.completions)  # two refusals, then the answer

    again = first.structured(ASK, Answer)
    rerun = cached_model(server, tmp_path / "cache.sqlite").structured(ASK, Answer)
    assert again.value == rerun.value == asked.value
    assert again.cached and rerun.cached and rerun.usage.prompt_tokens == 0
    assert len(server.completions) == sent == 3

    other = first.structured(OTHER, Answer)
    assert not other.cached and len(server.completions) == 4  # straight to JSON mode


def test_the_cache_key_holds_the_model_and_the_schema(tmp_path, server):
    class Other(BaseModel):
        label: str

    server.respond_with(lambda request: {"label": "ok", "score": 1})
    cached_model(server, tmp_path / "cache.sqlite").structured(ASK, Answer)
    sent = len(server.completions)
    cached_model(server, tmp_path / "cache.sqlite").structured(ASK, Other)
    cached_model(server, tmp_path / "cache.sqlite", model="deepseek-chat").structured(ASK, Answer)
    assert len(server.completions) > sent + 1


def test_an_unusable_answer_is_not_cached(tmp_path, server):
    server.enqueue(Reply(content='{"label": "ok", "score": '), {"label": "ok", "score": 2})
    model = cached_model(server, tmp_path / "cache.sqlite")
    with pytest.raises(ModelOutputError):
        model.structured(ASK, Answer)
    assert model.structured(ASK, Answer).value.score == 2


@pytest.mark.filterwarnings("ignore:sandbox isolation is off")
def test_no_llm_cache_neither_reads_nor_writes_it(tmp_path, server, monkeypatch):
    server.respond_with(keyword_verdicts)
    settings = make_settings(tmp_path, llm_cache=False)
    for attempt in range(2):
        state = make_state(tmp_path / str(attempt), tweets(5))
        result, _, _ = verify(state, settings, server)
        assert result.verified == 5
    assert len(server.answered) == 2  # asked twice: no verdict cache either
    assert not (tmp_path / "verdicts.sqlite").exists()

    context = default_context(
        Settings(llm_base_url=server.url, llm_cache=False, sandbox="none"), RecordingReporter()
    )
    assert isinstance(context.llm, OpenAIChatModel)


def test_cache_clear_deletes_the_cache(tmp_path, server, capsys):
    server.respond_with(lambda request: {"label": "ok", "score": 1})
    path = tmp_path / "cache.sqlite"
    cached_model(server, path).structured(ASK, Answer)
    assert path.exists()
    assert main(["cache", "clear", "--verdict-cache", str(path)]) == 0
    assert not path.exists() and f"cleared {path}" in capsys.readouterr().err
    sent = len(server.completions)
    cached_model(server, path).structured(ASK, Answer)
    assert len(server.completions) == sent + 3  # negotiated afresh, asked afresh
