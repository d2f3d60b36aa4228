"""Structured-output negotiation: the real ChatOpenAI client against emulated endpoints.

Each fixture of :mod:`tests.support.openai_server` behaves like one kind of endpoint
(full OpenAI support, ``json_object`` only with DeepSeek's 400, no tools, JSON in a Markdown
fence); every disputed row must be verified whatever the endpoint, and the method that
worked recorded.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from agent.errors import LLMUnavailableError, UserInputError
from agent.llm.cache import ResponseCache
from agent.llm.client import Message, OpenAIChatModel
from agent.llm.negotiation import is_format_refusal, parse_json_answer
from tests.support.openai_server import (
    FULL_OPENAI,
    JSON_OBJECT_ONLY,
    MARKDOWN_FENCE,
    NO_TOOLS,
    Endpoint,
    Reply,
    ScriptedOpenAI,
)
from tests.test_verify_judge import (
    keyword_verdicts,
    ledger,
    make_settings,
    make_state,
    tweets,
    verify,
)


class Answer(BaseModel):
    label: str
    score: int


MESSAGES = [Message("system", "be brief"), Message("user", "classify: hello")]


@pytest.fixture
def server(request):
    endpoint = getattr(request, "param", FULL_OPENAI)
    emulated = ScriptedOpenAI(endpoint=endpoint)
    yield emulated
    emulated.close()


def client(server: ScriptedOpenAI, **options) -> OpenAIChatModel:
    defaults = {"api_key": "sk-test", "base_url": server.url, "max_retries": 0, "timeout_s": 5.0}
    return OpenAIChatModel("gpt-4o-mini", **(defaults | options))


def request_kind(body: dict) -> str:
    if body.get("tools"):
        return "tools"
    return (body.get("response_format") or {}).get("type", "none")


@pytest.mark.parametrize(
    ("server", "method", "kinds"),
    [
        (FULL_OPENAI, "json_schema", ["json_schema"]),
        (JSON_OBJECT_ONLY, "json_mode", ["json_schema", "tools", "json_object"]),
        (NO_TOOLS, "text", ["json_schema", "tools", "json_object", "none"]),
        (MARKDOWN_FENCE, "json_schema", ["json_schema"]),
    ],
    indirect=["server"],
    ids=lambda value: value.name if isinstance(value, Endpoint) else None,
)
def test_every_disputed_row_is_verified_whatever_the_endpoint_accepts(
    tmp_path, server, method, kinds
):
    server.respond_with(keyword_verdicts)
    state = make_state(tmp_path, tweets(23))
    settings = make_settings(tmp_path, judge_batch_size=10, llm_concurrency=1)

    result, verdicts, _ = verify(state, settings, server, max_retries=0)

    assert result.verified == 23 and result.unresolved == 0
    assert all(v["source"] == "llm" for v in verdicts.values())
    # one step down per refusal, once: later requests go straight to the method that worked
    sent = [request_kind(r.body) for r in server.completions]
    assert sent == kinds + [kinds[-1]] * 2
    assert [entry["method"] for entry in ledger(state)] == [method] * 3
    if method in ("json_mode", "text"):
        roles = [m["role"] for m in server.answered[0].messages]
        assert roles == ["system", "user"]  # the schema joins the one system message
        instructions = server.answered[0].messages[0]["content"]
        assert "JSON schema" in instructions and '"labels"' in instructions


@pytest.mark.parametrize("server", [JSON_OBJECT_ONLY], indirect=True, ids=["json-object-only"])
def test_the_method_that_worked_is_remembered_per_endpoint_and_model(tmp_path, server):
    server.respond_with(lambda request: {"label": "ok", "score": 1})
    memory = ResponseCache(tmp_path / "cache.sqlite")
    first = client(server, memory=memory)
    assert first.structured_method is None
    first.structured(MESSAGES, Answer)
    assert first.structured_method == "json_mode" and len(server.refused) == 2

    again = client(server, memory=ResponseCache(tmp_path / "cache.sqlite"))
    assert again.structured_method == "json_mode"
    again.structured(MESSAGES, Answer)
    assert len(server.refused) == 2  # no new refusal: asked in JSON mode at once
    other_model = OpenAIChatModel(
        "deepseek-chat", api_key="sk", base_url=server.url, max_retries=0, memory=memory
    )
    assert other_model.structured_method is None


@pytest.mark.parametrize("server", [JSON_OBJECT_ONLY], indirect=True, ids=["json-object-only"])
def test_a_forced_method_is_not_negotiated(server):
    with pytest.raises(LLMUnavailableError, match="HTTP 400.*This response_format type"):
        client(server, method="json_schema").structured(MESSAGES, Answer)
    assert len(server.completions) == 1


def test_a_400_that_is_not_about_the_format_does_not_step_down(server):
    too_long = {"error": {"message": "This model's maximum context length is 8192 tokens"}}
    server.enqueue(Reply(status=400, content=too_long))
    with pytest.raises(LLMUnavailableError, match="maximum context length"):
        client(server).structured(MESSAGES, Answer)
    assert len(server.completions) == 1 and client(server).structured_method is None


@pytest.mark.parametrize(
    ("status", "message", "refusal"),
    [
        (400, "This response_format type is unavailable now", True),
        (400, "tools param requires --jinja flag", True),
        (400, "Invalid value for 'tool_choice'", True),
        (400, "json_schema is not supported", True),
        (400, "This model's maximum context length is 8192 tokens", False),
        (500, "response_format crashed the server", False),
    ],
)
def test_format_refusals_are_told_apart_from_other_errors(status, message, refusal):
    assert is_format_refusal(status, message) is refusal


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ('  ```\n{"a": 1}```  ', {"a": 1}),
        ('<think>the user wants JSON</think>\n{"a": 1}', {"a": 1}),
        ('<think>hm</think>```json\n{"a": 1}\n```', {"a": 1}),
    ],
)
def test_the_parser_takes_off_a_fence_and_a_think_block(content, value):
    assert parse_json_answer(content) == value


@pytest.mark.parametrize(
    "content",
    ['Sure! {"a": 1}', '{"a": 1', '{"a": 1}\n{"b": 2}', '```json\n{"a": 1}\n``` and more'],
)
def test_the_parser_forgives_nothing_else(content):
    with pytest.raises(ValueError, match="invalid JSON"):
        parse_json_answer(content)


@pytest.mark.parametrize(
    "server", [Endpoint("keyed", api_key="sk-right")], indirect=True, ids=["keyed"]
)
def test_a_wrong_key_is_a_user_error_found_by_the_model_listing(server):
    with pytest.raises(UserInputError, match="refused the API key .HTTP 401"):
        client(server, api_key="sk-wrong").check_endpoint()
    client(server, api_key="sk-right").check_endpoint()
    assert server.completions == []


def test_a_base_url_that_is_no_openai_endpoint_is_a_user_error(server):
    without_v1 = server.url.removesuffix("/v1")
    model = OpenAIChatModel("gpt-4o-mini", api_key="sk", base_url=without_v1, max_retries=0)
    with pytest.raises(UserInputError, match="not an OpenAI-compatible endpoint .GET /models"):
        model.check_endpoint()


@pytest.mark.parametrize(
    "server",
    [Endpoint("vllm", models=("qwen2.5-7b",), unknown_model_404=True)],
    indirect=True,
    ids=["vllm"],
)
def test_an_unknown_model_is_a_user_error_naming_the_models_listed(server):
    model = client(server)
    model.check_endpoint()
    with pytest.raises(UserInputError, match=r"does not know model 'gpt-4o-mini'.*qwen2.5-7b"):
        model.structured(MESSAGES, Answer)
