"""A scripted OpenAI-compatible server on 127.0.0.1, for exercising the real client.

``ChatOpenAI(base_url=server.url, ...)`` sends every call to
``POST /v1/chat/completions``. Each test queues what the server answers
(structured answers, HTTP errors with ``Retry-After``, delays, malformed
content) or installs a responder computed from the request, and afterwards
asserts on the recorded requests: bodies, messages, token usage.

Token usage defaults to :func:`count_tokens` over the request's messages; a
``token_counter`` (e.g. a real tokenizer, as ``benchmarks/cost.py`` passes)
replaces it, and ``exchanges`` pairs each answered request with its usage.

An :class:`Endpoint` makes the server behave like a given kind of endpoint: which
structured-output methods it refuses (with the HTTP 400 its real counterpart sends), how it
wraps its answers, which key and models it accepts. The fixtures (:data:`FULL_OPENAI`,
:data:`JSON_OBJECT_ONLY`, :data:`NO_TOOLS`, :data:`MARKDOWN_FENCE`) are named after what
they emulate.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """What an emulated endpoint accepts, and how it answers."""

    name: str = "full-openai"
    refuse_json_schema: str | None = None
    """The message of the HTTP 400 sent for ``response_format`` ``json_schema``."""
    refuse_json_object: str | None = None
    """... for ``response_format`` ``json_object``."""
    refuse_tools: str | None = None
    """... for a request with ``tools``."""
    markdown_fence: bool = False
    """Answers come as a Markdown ```` ```json ```` block."""
    api_key: str | None = None
    """The only key accepted (HTTP 401 for any other); None accepts any."""
    models: tuple[str, ...] = ("gpt-4o-mini",)
    """Listed at ``GET /v1/models``."""
    unknown_model_404: bool = False
    """A chat request for a model not listed answers HTTP 404 (OpenAI, vLLM, Ollama do)."""

    def refusal(self, body: dict[str, Any]) -> str | None:
        """The 400 message this endpoint sends for ``body``, or None when it accepts it."""
        kind = (body.get("response_format") or {}).get("type")
        if kind == "json_schema" and self.refuse_json_schema:
            return self.refuse_json_schema
        if kind == "json_object" and self.refuse_json_object:
            return self.refuse_json_object
        if body.get("tools") and self.refuse_tools:
            return self.refuse_tools
        return None


FULL_OPENAI = Endpoint()
"""JSON schema, tools and JSON mode all accepted (OpenAI's own API)."""
JSON_OBJECT_ONLY = Endpoint(
    "json-object-only",
    refuse_json_schema="This response_format type is unavailable now",
    refuse_tools="This model does not support tools",
)
"""``json_object`` only: DeepSeek's exact refusal of ``json_schema``; tools refused too."""
NO_TOOLS = Endpoint(
    "no-tools",
    refuse_json_schema="response_format is not supported by this server",
    refuse_json_object="response_format is not supported by this server",
    refuse_tools="tools param requires --jinja flag",
)
"""No tools (a llama.cpp server started without ``--jinja`` answers this), and no
``response_format`` either: only the prompt can ask for JSON."""
MARKDOWN_FENCE = Endpoint("markdown-fence", markdown_fence=True)
"""Accepts everything, answers JSON inside a Markdown fence (as small local models do)."""


@dataclass
class Reply:
    """One scripted answer."""

    content: Any = None
    """A dict/list (sent as JSON) or a raw string (sent as is, e.g. malformed JSON)."""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def user_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "user")

    @property
    def system_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") == "system")


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters per token."""
    return max(1, len(text) // 4)


TokenCounter = Callable[[RecordedRequest, str], tuple[int, int]]
"""``(request, answer content) -> (prompt tokens, completion tokens)``."""


@dataclass(frozen=True)
class Exchange:
    """One answered request and the usage the server reported for it."""

    request: RecordedRequest
    prompt_tokens: int
    completion_tokens: int


class ScriptedOpenAI:
    def __init__(
        self, token_counter: TokenCounter | None = None, endpoint: Endpoint = FULL_OPENAI
    ) -> None:
        self.token_counter = token_counter
        self.endpoint = endpoint
        self.exchanges: list[Exchange] = []
        self.replies: deque[Reply] = deque()
        self.responder: Callable[[RecordedRequest], Reply | Any] | None = None
        self.requests: list[RecordedRequest] = []
        self.usage: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def enqueue(self, *replies: Reply | Any) -> None:
        """Queue answers; a bare dict is a 200 answer with that JSON content."""
        for reply in replies:
            self.replies.append(reply if isinstance(reply, Reply) else Reply(content=reply))

    def respond_with(self, responder: Callable[[RecordedRequest], Reply | Any]) -> None:
        """Answer every request (after the queue is empty) with ``responder(request)``."""
        self.responder = responder

    @property
    def completions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def refused(self) -> list[RecordedRequest]:
        """Chat requests refused for their structured-output method (HTTP 400)."""
        return [r for r in self.completions if self.endpoint.refusal(r.body)]

    @property
    def answered(self) -> list[RecordedRequest]:
        """Chat requests that got an answer (or a scripted error), not a refusal."""
        return [r for r in self.completions if not self.endpoint.refusal(r.body)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            if self.replies:
                return self.replies.popleft()
        if self.responder is None:
            return Reply(status=500, content={"error": {"message": "no scripted reply left"}})
        reply = self.responder(request)
        return reply if isinstance(reply, Reply) else Reply(content=reply)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                request = RecordedRequest(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, {}
                )
                with server._lock:
                    server.requests.append(request)
                if self._refused_key():
                    return
                if self.path.rstrip("/").endswith("/v1/models"):
                    listed = [{"id": m, "object": "model"} for m in server.endpoint.models]
                    self._send(200, {"object": "list", "data": listed}, {})
                else:
                    self._send(404, {"error": {"message": "not found"}}, {})

            def _refused_key(self) -> bool:
                key = server.endpoint.api_key
                if key is None or self.headers.get("Authorization") == f"Bearer {key}":
                    return False
                error = {"message": "Incorrect API key provided", "code": "invalid_api_key"}
                self._send(401, {"error": error}, {})
                return True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                request = RecordedRequest(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with server._lock:
                    server.requests.append(request)
                if self._refused_key():
                    return
                endpoint = server.endpoint
                if endpoint.unknown_model_404 and body.get("model") not in endpoint.models:
                    message = f"The model `{body.get('model')}` does not exist"
                    self._send(404, {"error": {"message": message, "code": "model_not_found"}}, {})
                    return
                refusal = endpoint.refusal(body)
                if refusal is not None:
                    error = {"message": refusal, "type": "invalid_request_error"}
                    self._send(400, {"error": error}, {})
                    return
                reply = server._next_reply(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status != 200:
                    error = reply.content or {"error": {"message": f"scripted {reply.status}"}}
                    self._send(reply.status, error, reply.headers)
                    return
                self._send(200, server._completion(request, reply), reply.headers)

            def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        return Handler

    def _completion(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        if self.endpoint.markdown_fence:
            content = f"```json\n{content}\n```"
        if self.token_counter is not None:
            counted = self.token_counter(request, content)
        else:
            counted = (count_tokens(json.dumps(request.messages)), count_tokens(content))
        prompt_tokens = reply.prompt_tokens or counted[0]
        completion_tokens = reply.completion_tokens or counted[1]
        with self._lock:
            self.usage.append((prompt_tokens, completion_tokens))
            self.exchanges.append(Exchange(request, prompt_tokens, completion_tokens))
        message: dict[str, Any] = {"role": "assistant", "content": content}
        tools = request.body.get("tools")
        if tools:
            name = tools[0]["function"]["name"]
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{len(self.requests)}",
                        "type": "function",
                        "function": {"name": name, "arguments": content},
                    }
                ],
            }
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": request.body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
