"""The real ChatOpenAI client over HTTP against the scripted server."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from agent.errors import LLMUnavailableError, ModelOutputError
from agent.llm.client import Message, OpenAIChatModel, UnusableAnswer
from tests.support.openai_server import Reply, ScriptedOpenAI


class Answer(BaseModel):
    label: str
    score: int


def model_for(server: ScriptedOpenAI, **options) -> OpenAIChatModel:
    defaults = {"api_key": "sk-test", "base_url": server.url, "max_retries": 2, "timeout_s": 5.0}
    return OpenAIChatModel("gpt-4o-mini", **(defaults | options))


MESSAGES = [Message("system", "be brief"), Message("user", "classify: hello")]


def test_structured_answer_is_parsed_with_token_usage(scripted_llm):
    scripted_llm.enqueue(
        Reply(content={"label": "ok", "score": 3}, prompt_tokens=17, completion_tokens=5)
    )
    reply = model_for(scripted_llm).structured(MESSAGES, Answer)
    assert reply.value == Answer(label="ok", score=3)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (17, 5)
    body = scripted_llm.completions[0].body
    assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Answer"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert scripted_llm.completions[0].headers["authorization"] == "Bearer sk-test"


def test_function_calling_method_also_works(scripted_llm):
    scripted_llm.enqueue({"label": "ok", "score": 1})
    reply = model_for(scripted_llm, method="function_calling").structured(MESSAGES, Answer)
    assert reply.value.score == 1
    assert scripted_llm.completions[0].body["tools"][0]["function"]["name"] == "Answer"


def test_malformed_json_is_a_model_output_error_that_still_counts_tokens(scripted_llm):
    scripted_llm.enqueue(Reply(content='{"label": "ok", "score": ', completion_tokens=9))
    with pytest.raises(ModelOutputError) as caught:
        model_for(scripted_llm).structured(MESSAGES, Answer)
    assert isinstance(caught.value, UnusableAnswer) and caught.value.usage.completion_tokens == 9


def test_answer_that_fails_the_schema_is_a_model_output_error(scripted_llm):
    scripted_llm.enqueue({"label": "ok", "score": "many"})
    with pytest.raises(ModelOutputError, match="does not fit Answer"):
        model_for(scripted_llm).structured(MESSAGES, Answer)


def test_rate_limit_with_retry_after_is_retried_then_succeeds(scripted_llm):
    scripted_llm.enqueue(
        Reply(status=429, headers={"Retry-After": "0"}),
        Reply(status=500),
        {"label": "ok", "score": 2},
    )
    reply = model_for(scripted_llm).structured(MESSAGES, Answer)
    assert reply.value.score == 2
    assert len(scripted_llm.completions) == 3


def test_persistent_server_errors_become_llm_unavailable(scripted_llm):
    scripted_llm.enqueue(*(Reply(status=503, headers={"Retry-After": "0"}) for _ in range(3)))
    with pytest.raises(LLMUnavailableError, match="HTTP 503"):
        model_for(scripted_llm).structured(MESSAGES, Answer)
    assert len(scripted_llm.completions) == 3


def test_timeouts_are_retried_then_reported(scripted_llm):
    scripted_llm.enqueue(Reply(content={"label": "x", "score": 0}, delay_s=1.5))
    scripted_llm.enqueue({"label": "ok", "score": 4})
    reply = model_for(scripted_llm, timeout_s=0.5, max_retries=1).structured(MESSAGES, Answer)
    assert reply.value.score == 4


def test_unreachable_endpoint_is_llm_unavailable():
    model = OpenAIChatModel(
        "gpt-4o-mini", api_key="sk", base_url="http://127.0.0.1:9/v1", max_retries=0
    )
    with pytest.raises(LLMUnavailableError, match="failed"):
        model.structured(MESSAGES, Answer)


def test_no_secret_appears_in_what_the_server_recorded_besides_the_auth_header(scripted_llm):
    scripted_llm.enqueue({"label": "ok", "score": 1})
    model_for(scripted_llm, api_key="sk-secret-value").structured(MESSAGES, Answer)
    assert "sk-secret-value" not in json.dumps(scripted_llm.completions[0].body)
