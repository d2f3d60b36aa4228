"""A scripted OpenAI-compatible server on 127.0.0.1, for exercising the real client.

``ChatOpenAI(base_url=server.url, ...)`` sends every call to
``POST /v1/chat/completions``. Each test queues what the server answers
(structured answers, HTTP errors with ``Retry-After``, delays, malformed
content) or installs a responder computed from the request, and afterwards
asserts on the recorded requests: bodies, messages, token usage.

Token usage defaults to :func:`count_tokens` over the request's messages; a
``token_counter`` (e.g. a real tokenizer, as ``benchmarks/cost.py`` passes)
replaces it, and ``exchanges`` pairs each answered request with its usage.
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
    def __init__(self, token_counter: TokenCounter | None = None) -> None:
        self.token_counter = token_counter
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
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "scripted"}]}, {})
                else:
                    self._send(404, {"error": {"message": "not found"}}, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                request = RecordedRequest(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with server._lock:
                    server.requests.append(request)
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
