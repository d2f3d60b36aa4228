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

The Batch API is served too (:class:`BatchAPI`): ``POST /v1/files`` (multipart upload),
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches[/{id}]`` and
``POST /v1/batches/{id}/cancel``. A batch really runs its uploaded JSONL through the same
scripted chat replies (each line recorded in ``batch_requests``, its usage in ``exchanges``)
when it completes; it can be told to stay ``in_progress`` for some polls, or until released,
or to end ``expired`` or ``failed``. ``Endpoint(batch_api=False)`` answers 404 there, as
Ollama, vLLM and llama.cpp do.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
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
    batch_api: bool = True
    """Serves ``/v1/files`` and ``/v1/batches``; local servers answer 404 there."""

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


@dataclass
class BatchAPI:
    """How the server's batches behave, and what they were asked."""

    pending_polls: int = 0
    """Each batch answers ``in_progress`` to this many retrievals before it ends."""
    hold: bool = False
    """While set, every batch stays ``in_progress`` (a test releases it by clearing it)."""
    outcome: str = "completed"
    """How a batch ends: ``completed`` (every line run), ``expired`` or ``failed`` (none run)."""
    files: dict[str, bytes] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)
    """Ids of the files uploaded (the others are batches' results)."""
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    creates: list[dict[str, Any]] = field(default_factory=list)
    """Bodies of ``POST /v1/batches``."""
    cancels: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)

    def uploaded_lines(self) -> list[dict[str, Any]]:
        """Every request line of every uploaded batch file."""
        return [
            json.loads(line)
            for file_id in self.uploads
            for line in self.files[file_id].decode().splitlines()
            if line.strip()
        ]


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
        self.batch = BatchAPI()
        self.batch_requests: list[RecordedRequest] = []
        """Chat requests run inside batches (not in ``requests``: they were not HTTP calls)."""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
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
                elif server.endpoint.batch_api and "/v1/files/" in self.path:
                    file_id = self.path.split("/v1/files/", 1)[1].split("/")[0]
                    data = server.batch.files.get(file_id)
                    if data is None:
                        self._send(404, {"error": {"message": "no such file"}}, {})
                    else:
                        self._send_bytes(200, data, "application/octet-stream")
                elif server.endpoint.batch_api and "/v1/batches" in self.path:
                    self._send(*server._batch_get(self.path.split("?")[0]), {})
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
                raw = self.rfile.read(length)
                if "/v1/files" in self.path or "/v1/batches" in self.path:
                    self._batch_post(raw)
                    return
                body = json.loads(raw or b"{}")
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

            def _batch_post(self, raw: bytes) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                is_upload = self.path.rstrip("/").endswith("/v1/files")
                body = {} if is_upload else json.loads(raw or b"{}")
                with server._lock:
                    server.requests.append(RecordedRequest(self.path, headers, body))
                if self._refused_key():
                    return
                if not server.endpoint.batch_api:
                    self._send(404, {"error": {"message": "not found"}}, {})
                elif is_upload:
                    self._send(200, server._upload(headers["content-type"], raw), {})
                else:
                    self._send(*server._batch_post(self.path, body), {})

            def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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

    def _upload(self, content_type: str, raw: bytes) -> dict[str, Any]:
        """``POST /v1/files``: the multipart form's ``file`` part, kept under a new id."""
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields = {
            part.get_param("name", header="content-disposition"): part for part in form.iter_parts()
        }
        data = fields["file"].get_payload(decode=True)
        purpose = fields["purpose"].get_payload(decode=True).decode()
        with self._lock:
            file_id = f"file-{len(self.batch.files) + 1}"
            self.batch.files[file_id] = data
            self.batch.uploads.append(file_id)
        return self._file_object(file_id, purpose, fields["file"].get_filename() or "upload")

    def _file_object(self, file_id: str, purpose: str, filename: str) -> dict[str, Any]:
        size = len(self.batch.files[file_id])
        return {"id": file_id, "object": "file", "bytes": size, "created_at": 0} | {
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }

    def _batch_post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        cancel = re.search(r"/v1/batches/([^/]+)/cancel$", path)
        with self._lock:
            if cancel:
                batch = self.batch.batches.get(cancel.group(1))
                if batch is None:
                    return 404, {"error": {"message": "no such batch"}}
                self.batch.cancels.append(batch["id"])
                if batch["status"] not in ("completed", "failed", "expired"):
                    batch["status"] = "cancelled"
                return 200, dict(batch)
            if body.get("input_file_id") not in self.batch.files:
                return 400, {"error": {"message": "input_file_id: no such file"}}
            self.batch.creates.append(body)
            batch_id = f"batch_{len(self.batch.creates)}"
            batch = {"id": batch_id, "object": "batch", "endpoint": body["endpoint"]} | {
                "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"],
                "metadata": body.get("metadata"),
                "status": "validating",
                "created_at": 0,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
            }
            self.batch.batches[batch_id] = batch
            return 200, dict(batch)

    def _batch_get(self, path: str) -> tuple[int, dict[str, Any]]:
        if path.rstrip("/").endswith("/v1/batches"):
            listed = [dict(batch) for batch in self.batch.batches.values()]
            return 200, {"object": "list", "data": listed, "has_more": False}
        batch_id = path.rstrip("/").rsplit("/", 1)[1]
        with self._lock:
            batch = self.batch.batches.get(batch_id)
            if batch is None:
                return 404, {"error": {"message": "no such batch"}}
            polls = self.batch.polls[batch_id] = self.batch.polls.get(batch_id, 0) + 1
            pending = self.batch.hold or polls <= self.batch.pending_polls
            if batch["status"] in ("validating", "in_progress") and pending:
                batch["status"] = "in_progress"
                return 200, dict(batch)
        if batch["status"] in ("validating", "in_progress"):
            self._finish(batch)
        return 200, dict(batch)

    def _finish(self, batch: dict[str, Any]) -> None:
        """Run the batch's lines through the scripted replies (or end it without running)."""
        outcome = self.batch.outcome
        if outcome == "failed":
            message = "the input file failed validation"
            batch["errors"] = {"object": "list", "data": [{"code": "invalid", "message": message}]}
        if outcome != "completed":
            batch["status"] = outcome
            return
        lines = self.batch.files[batch["input_file_id"]].decode().splitlines()
        output, errors = [], []
        for number, line in enumerate(json.loads(text) for text in lines if text.strip()):
            request = RecordedRequest(f"batch:{line['url']}", {}, line["body"])
            with self._lock:
                self.batch_requests.append(request)
            refusal = self.endpoint.refusal(request.body)
            reply = None if refusal else self._next_reply(request)
            result = {"id": f"batch_req_{number}", "custom_id": line["custom_id"], "error": None}
            if refusal or reply.status != 200:
                error = {"message": refusal} if refusal else (reply.content or {}).get("error")
                status = 400 if refusal else reply.status
                result["response"] = {"status_code": status, "body": {"error": error}}
                errors.append(result)
            else:
                completion = self._completion(request, reply)
                result["response"] = {"status_code": 200, "body": completion}
                output.append(result)
        with self._lock:
            for kind, results in (("output_file_id", output), ("error_file_id", errors)):
                if results:
                    file_id = f"file-{len(self.batch.files) + 1}"
                    data = "".join(json.dumps(result) + "\n" for result in results)
                    self.batch.files[file_id] = data.encode()
                    batch[kind] = file_id
            counts = {"total": len(lines), "completed": len(output), "failed": len(errors)}
            batch["request_counts"] = counts
            batch["status"] = "completed"

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
