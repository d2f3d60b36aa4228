"""A loopback Hugging Face Hub: the real ``huggingface_hub`` client, pointed at 127.0.0.1.

Why: the build machines cannot reach huggingface.co, yet finding, vetting and downloading models is
the riskiest code in the agent. Patching ``HfApi`` would only test our guesses about the client;
serving the HTTP endpoints it really calls (read from huggingface_hub 2.4) tests the client, its
retries and its error mapping for real. Anything not emulated answers 501, so a test cannot pass by
accident against an endpoint or a query parameter this server does not understand.

Served (paths exactly as the client builds them):
- ``GET /api/models``: ``search author filter pipeline_tag gated num_parameters sort direction
  limit full cardData config expand``; pages of ``page_size`` linked by ``Link: <...>; rel="next"``.
- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (``expand``, ``blobs``).
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (``recursive``): snapshot_download uses it.
- ``HEAD``/``GET /{repo}/resolve/{rev}/{filename}`` with ``X-Repo-Commit``, a quoted ``ETag`` (git
  blob sha1; sha256 for LFS files, also in ``X-Linked-Etag``/``X-Linked-Size``), ``Content-Length``
  and ``Range`` (the client resumes interrupted downloads with it).
- ``GET /api/agent-harnesses``: an empty registry (fetched for the user agent if telemetry is on).
Errors carry the ``X-Error-Code`` that ``hf_raise_for_status`` maps to typed exceptions:
``RepoNotFound`` (401 without a token, 404 with one, as the Hub does), ``RevisionNotFound``,
``EntryNotFound``, ``GatedRepo`` (401 without a token, 403 with one).

The ``config`` field of model info mirrors the Hub's: only ``architectures``, ``model_type``,
``auto_map``, ``quantization_config``, ``peft`` and the tokenizer's special tokens. ``id2label`` is
*not* there on the real Hub either: read it from the downloaded ``config.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

Gated = Literal[False, "auto", "manual"]
FileSource = Path | str | Mapping[str, bytes]
FIXED_DATE = "2024-01-01T00:00:00.000Z"
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ckpt")
_API_CONFIG_KEYS = ("architectures", "model_type", "auto_map", "quantization_config", "peft")
_LIST_FIELDS = ("id", "modelId", "likes", "downloads", "private", "pipeline_tag", "library_name")
_LIST_FIELDS += ("tags", "createdAt", "trendingScore")
_FULL_FIELDS = _LIST_FIELDS + ("author", "sha", "lastModified", "gated", "disabled", "siblings")
_LIST_PARAMS = {"search", "author", "filter", "pipeline_tag", "gated", "num_parameters", "sort"}
_LIST_PARAMS |= {"direction", "limit", "full", "cardData", "config", "expand", "expand[]", "cursor"}
_SORT_KEYS = {"downloads", "likes", "lastModified", "createdAt", "trendingScore"}
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
_AUTO_MODEL = {"text-classification": "AutoModelForSequenceClassification"}


def read_files(source: FileSource) -> dict[str, bytes]:
    """Repo files as ``{path in repo: content}``; a directory is read recursively."""
    if isinstance(source, str | Path):
        root = Path(source)
        paths = sorted(p for p in root.rglob("*") if p.is_file())
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}
    return {name: bytes(content) for name, content in source.items()}


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob: what the Hub sends as ETag for small (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def safetensors_parameters(files: Mapping[str, bytes]) -> dict[str, int]:
    """Parameters per dtype, read from the safetensors headers as the Hub does (no torch needed)."""
    counts: dict[str, int] = {}
    for name, data in files.items():
        if name.endswith(".safetensors"):
            (header_size,) = struct.unpack("<Q", data[:8])
            for key, tensor in json.loads(data[8 : 8 + header_size]).items():
                if key != "__metadata__":
                    counts[tensor["dtype"]] = counts.get(tensor["dtype"], 0) + math.prod(
                        tensor["shape"]
                    )
    return counts


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (header names lower-cased), for assertions."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class HubModel:
    """One catalog repo: the metadata the Hub keeps about it, and its commits."""

    repo_id: str
    pipeline_tag: str | None
    tags: list[str]
    library_name: str | None
    license: str | None
    languages: list[str]
    downloads: int
    likes: int
    gated: Gated
    private: bool
    card_data: dict[str, Any]
    created_at: str
    last_modified: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    access_tokens: set[str] = field(default_factory=set)

    def resolve(self, revision: str) -> str | None:
        """A branch name or a full commit sha -> the commit sha, as in resolve URLs."""
        return self.refs.get(revision) or (revision if revision in self.commits else None)

    def card(self) -> dict[str, Any]:
        """The README front matter, which the Hub serves as ``cardData``."""
        card = {"license": self.license, "language": self.languages, "tags": self.tags}
        card |= {"pipeline_tag": self.pipeline_tag, "library_name": self.library_name}
        return {key: value for key, value in (card | self.card_data).items() if value}

    def document(self, sha: str, *, blobs: bool = False) -> dict[str, Any]:
        """Every model-info field the client parses, for the files of commit ``sha``."""
        files = self.commits[sha]
        config = _json_file(files, "config.json")
        api_config = {key: config[key] for key in _API_CONFIG_KEYS if key in config}
        tokenizer = _json_file(files, "tokenizer_config.json")
        if tokenizer:
            api_config["tokenizer_config"] = {k: v for k, v in tokenizer.items() if "_token" in k}
        parameters = safetensors_parameters(files)
        siblings = [
            {"rfilename": name} | (_blob(name, files[name]) if blobs else {}) for name in files
        ]
        document: dict[str, Any] = {
            "_id": sha[:24],
            "id": self.repo_id,
            "modelId": self.repo_id,
            "author": self.repo_id.split("/")[0] if "/" in self.repo_id else None,
            "sha": sha,
            "lastModified": self.last_modified,
            "createdAt": self.created_at,
            "private": self.private,
            "gated": self.gated,
            "disabled": False,
            "downloads": self.downloads,
            "downloadsAllTime": self.downloads,
            "likes": self.likes,
            "trendingScore": 0,
            "library_name": self.library_name,
            "pipeline_tag": self.pipeline_tag,
            "tags": self._all_tags(files, config),
            "cardData": self.card(),
            "config": api_config,
            "siblings": sorted(siblings, key=lambda sibling: sibling["rfilename"]),
            "spaces": [],
            "usedStorage": sum(len(data) for data in files.values()),
        }
        if parameters:
            document["safetensors"] = {"parameters": parameters, "total": sum(parameters.values())}
        if self.library_name == "transformers" and config.get("architectures"):
            auto_model = _AUTO_MODEL.get(self.pipeline_tag or "", "AutoModel")
            document["transformersInfo"] = {"auto_model": auto_model, "processor": "AutoTokenizer"}
            document["transformersInfo"]["pipeline_tag"] = self.pipeline_tag
        return document

    def _all_tags(self, files: Mapping[str, bytes], config: dict[str, Any]) -> list[str]:
        """Tags the Hub derives from the repo (library, formats, task, code, language, license)."""
        tags = [self.library_name, config.get("model_type"), self.pipeline_tag]
        tags += ["safetensors" if any(n.endswith(".safetensors") for n in files) else None]
        tags += ["pytorch" if "pytorch_model.bin" in files else None]
        tags += ["custom_code" if "auto_map" in config else None]
        tags += [*self.tags, *self.languages, f"license:{self.license}" if self.license else None]
        return list(dict.fromkeys(tag for tag in [*tags, "region:us"] if tag))


@dataclass
class _Fault:
    """A scripted misbehaviour for requests whose path contains ``path_substring``."""

    path_substring: str
    times: int
    status: int | None = None
    retry_after: int | None = None
    error_code: str | None = None
    delay: float = 0.0


class LoopbackHub:
    """A Hugging Face Hub on 127.0.0.1 (ephemeral port), served from a background thread.

    Add repos with :meth:`add_model`, point the client at :attr:`url` (see ``hub_fixtures``), then
    assert on :attr:`requests`. :meth:`stop` and :meth:`start` again (same port) simulate an outage.
    """

    def __init__(self, *, page_size: int = 1000) -> None:
        self.models: dict[str, HubModel] = {}
        self.requests: list[RecordedRequest] = []
        self.page_size = page_size
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> LoopbackHub:
        """Serve (again): a restart reuses the first port, so a patched HF_ENDPOINT stays valid."""
        if self._server is None:
            handler = type("BoundHubHandler", (_HubHandler,), {"hub": self})
            self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
            self._port = self._server.server_address[1]
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )  # a short poll interval keeps stop() (and so each test's teardown) fast
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: the client then gets connection errors, as with an unreachable Hub."""
        if self._server is not None and self._thread is not None:
            self._stopping.set()  # wakes handlers sleeping in delay_next
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> LoopbackHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_model(
        self,
        repo_id: str,
        files: FileSource,
        *,
        sha: str | None = None,
        revision: str = "main",
        pipeline_tag: str | None = "text-classification",
        tags: Sequence[str] = (),
        library_name: str | None = "transformers",
        license: str | None = "apache-2.0",
        languages: Sequence[str] = ("en",),
        downloads: int = 0,
        likes: int = 0,
        gated: Gated = False,
        private: bool = False,
        card_data: Mapping[str, Any] | None = None,
        created_at: str = FIXED_DATE,
        last_modified: str = FIXED_DATE,
    ) -> HubModel:
        """Publish ``files`` (a directory or ``{path: bytes}``) as a commit on ``revision``.

        The sha defaults to a hash of repo id and contents (same files, same sha). Adding the same
        repo again adds a commit (older shas stay resolvable) and replaces its metadata.
        """
        contents, old = read_files(files), self.models.get(repo_id)
        model = HubModel(
            repo_id, pipeline_tag, list(tags), library_name, license, list(languages), downloads,
            likes, gated, private, dict(card_data or {}), created_at, last_modified,
        )  # fmt: skip
        if old is not None:  # keep the history: older shas stay resolvable
            model.commits, model.refs = old.commits, old.refs
            model.access_tokens = old.access_tokens
        if "README.md" not in contents:
            front_matter = "".join(f"{k}: {json.dumps(v)}\n" for k, v in model.card().items())
            contents["README.md"] = f"---\n{front_matter}---\n# {repo_id}\n".encode()
        if sha is None:
            digests = sorted((n, hashlib.sha256(d).hexdigest()) for n, d in contents.items())
            sha = hashlib.sha1(json.dumps([repo_id, digests]).encode()).hexdigest()
        model.commits[sha] = contents
        model.refs[revision] = sha
        with self._lock:
            self.models[repo_id] = model
        return model

    def grant(self, repo_id: str, token: str) -> None:
        """Let requests bearing ``token`` see a private repo / download a gated one."""
        self.models[repo_id].access_tokens.add(token)

    def fail_next(
        self,
        path_substring: str,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: int | None = None,
        error_code: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (e.g. 429 + Retry-After)."""
        with self._lock:
            self._faults.append(_Fault(path_substring, times, status, retry_after, error_code))

    def delay_next(self, path_substring: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` matching requests for ``seconds``, to provoke client timeouts."""
        with self._lock:
            self._faults.append(_Fault(path_substring, times, delay=seconds))

    def requests_to(self, path_substring: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path contains ``path_substring`` (and of ``method``)."""
        with self._lock:
            return [
                r for r in self.requests if path_substring in r.path and method in (None, r.method)
            ]

    def _record_and_take_fault(self, request: RecordedRequest) -> _Fault | None:
        with self._lock:
            self.requests.append(request)
            for fault in self._faults:
                if fault.path_substring in request.path:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None


class _HubHandler(BaseHTTPRequestHandler):
    """Routes one request; a subclass bound to its :class:`LoopbackHub` is made per server."""

    hub: LoopbackHub

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: ``hub.requests`` is the log."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        headers = {name.lower(): value for name, value in self.headers.items()}
        fault = self.hub._record_and_take_fault(
            RecordedRequest(self.command, url.path, query, headers)
        )
        try:
            if fault is not None and fault.delay:
                self.hub._stopping.wait(fault.delay)
            if fault is not None and fault.status is not None:
                message = f"LoopbackHub: injected {fault.status}"
                self._error(fault.status, fault.error_code, message, fault.retry_after)
            else:
                self._route(url.path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nobody is left to answer

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/api/models" and self.command == "GET":
            return self._list(query)
        if path == "/api/agent-harnesses":
            return self._json({"standardEnvVars": [], "harnesses": {}})
        parts = path.strip("/").split("/")  # split before unquoting: revisions may contain %2F
        if parts[:2] == ["api", "models"] and len(parts) > 2 and self.command == "GET":
            repo_id, rest = self._split_repo(parts[2:])
            if not rest or (rest[0] == "revision" and len(rest) == 2):
                return self._info(repo_id, unquote(rest[1]) if rest else "main", query)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo_id, unquote(rest[1]), unquote("/".join(rest[2:])), query)
        else:
            repo_id, rest = self._split_repo(parts)
            if len(rest) >= 3 and rest[0] == "resolve":
                return self._resolve(repo_id, unquote(rest[1]), unquote("/".join(rest[2:])))
        self._error(501, None, f"LoopbackHub does not implement {self.command} {path}")

    def _split_repo(self, parts: list[str]) -> tuple[str, list[str]]:
        """``ns/name/rest...`` or a legacy one-part id (``gpt2/rest...``)."""
        if len(parts) >= 2 and parts[1] not in ("resolve", "tree", "revision"):
            return f"{parts[0]}/{parts[1]}", parts[2:]
        return parts[0], parts[1:]

    def _token(self) -> str | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    def _lookup(self, repo_id: str, revision: str) -> tuple[HubModel, str] | None:
        """The repo and commit sha, or None after answering the error the Hub would send."""
        model, token = self.hub.models.get(repo_id), self._token()
        if model is None or (model.private and token not in model.access_tokens):
            self._error(404 if token else 401, "RepoNotFound", "Repository not found")
            return None
        sha = model.resolve(revision)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return model, sha

    def _list(self, query: dict[str, list[str]]) -> None:
        if unsupported := sorted(set(query) - _LIST_PARAMS):
            return self._error(501, None, f"LoopbackHub does not filter on {unsupported}")
        sort, token = _one(query, "sort"), self._token()
        if sort is not None and sort not in _SORT_KEYS:
            return self._error(400, None, f"Invalid sort: {sort}")
        visible = [m for m in self.hub.models.values() if not m.private or token in m.access_tokens]
        docs = sorted((m.document(m.refs["main"]) for m in visible), key=lambda d: d["id"])
        try:
            docs = [doc for doc in docs if _matches(doc, query)]
        except ValueError as error:
            return self._error(400, None, str(error))
        if sort is not None:  # stable: ties stay in id order
            docs.sort(key=lambda doc: doc[sort], reverse=_one(query, "direction") != "1")
        offset, limit = int(_one(query, "cursor") or 0), _one(query, "limit")
        size = min(int(limit), self.hub.page_size) if limit else self.hub.page_size
        headers = {}
        if offset + size < len(docs):
            pairs = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
            next_url = f"{self.hub.url}/api/models?{urlencode([*pairs, ('cursor', offset + size)])}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        fields = query.get("expand", []) + query.get("expand[]", [])
        if not fields:
            fields = list(_FULL_FIELDS if _flag(query, "full") else _LIST_FIELDS)
            fields += ["cardData"] if _flag(query, "cardData") else []
            fields += ["config"] if _flag(query, "config") else []
        self._json([_select(doc, fields) for doc in docs[offset : offset + size]], headers)

    def _info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> None:
        if found := self._lookup(repo_id, revision):
            document = found[0].document(found[1], blobs=_flag(query, "blobs"))
            expand = query.get("expand", []) + query.get("expand[]", [])
            self._json(_select(document, expand) if expand else document)

    def _tree(self, repo_id: str, revision: str, prefix: str, query: dict[str, list[str]]) -> None:
        if not (found := self._lookup(repo_id, revision)):
            return
        files, base = found[0].commits[found[1]], prefix.strip("/") + "/" if prefix else ""
        recursive, entries = _flag(query, "recursive"), {}
        for name in (n for n in sorted(files) if n.startswith(base)):
            parts = name[len(base) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(len(parts), depth + 1)):  # folders visible at this depth
                folder = base + "/".join(parts[:i])
                oid = git_blob_sha1(folder.encode())
                entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0})
                entries[folder]["path"] = folder
            if len(parts) <= depth:
                entries[name] = {"type": "file", "path": name} | _blob(name, files[name], tree=True)
        if prefix and not entries:
            return self._error(404, "EntryNotFound", f"{prefix} does not exist on {revision}")
        self._json(sorted(entries.values(), key=lambda entry: entry["path"]))

    def _resolve(self, repo_id: str, revision: str, filename: str) -> None:
        if not (found := self._lookup(repo_id, revision)):
            return
        (model, sha), token = found, self._token()
        if model.gated and token not in model.access_tokens:
            message = f"Access to model {repo_id} is restricted. You must have access to it."
            return self._error(403 if token else 401, "GatedRepo", message)
        data = model.commits[sha].get(filename)
        if data is None:  # X-Repo-Commit lets the client cache the file's absence
            message = f"{filename} does not exist on {revision}"
            return self._error(404, "EntryNotFound", message, extra={"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        headers["ETag"] = f'"{git_blob_sha1(data)}"'
        if filename.endswith(LFS_SUFFIXES):
            digest = hashlib.sha256(data).hexdigest()
            headers |= {"ETag": f'"{digest}"', "X-Linked-Etag": f'"{digest}"'}
            headers["X-Linked-Size"] = str(len(data))
        status, body = 200, data
        if match := re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip()):
            start, end = int(match[1]), int(match[2] or len(data) - 1)
            if start >= len(data):
                return self._error(416, None, "Range Not Satisfiable")
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
        self._send(status, body, headers)

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/octet-stream", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, payload: object, headers: Mapping[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", **(headers or {})}
        self._send(200, json.dumps(payload).encode(), headers)

    def _error(
        self,
        status: int,
        code: str | None,
        message: str,
        retry_after: int | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message, **(extra or {})}
        headers |= {"X-Error-Code": code} if code else {}
        headers |= {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._send(status, json.dumps({"error": message}).encode(), headers)


def _one(query: Mapping[str, list[str]], name: str) -> str | None:
    return query[name][-1] if query.get(name) else None


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    return (_one(query, name) or "").lower() in ("1", "true")


def _select(document: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """What ``expand`` does: only the named fields (and the id) come back."""
    return {key: document[key] for key in ("_id", "id", *fields) if key in document}


def _json_file(files: Mapping[str, bytes], name: str) -> dict[str, Any]:
    return json.loads(files[name]) if name in files else {}


def _blob(name: str, data: bytes, *, tree: bool = False) -> dict[str, Any]:
    """Size, git oid and LFS info, in the tree (``oid``) or the siblings (``blobId``) shape."""
    info: dict[str, Any] = {"size": len(data), "oid" if tree else "blobId": git_blob_sha1(data)}
    if name.endswith(LFS_SUFFIXES):  # what a Hub repo's default .gitattributes sends to LFS
        sha256, key = hashlib.sha256(data).hexdigest(), "oid" if tree else "sha256"
        info["lfs"] = {key: sha256, "size": len(data), "pointerSize": 134}
    return info


def _matches(document: Mapping[str, Any], query: Mapping[str, list[str]]) -> bool:
    """The listing filters: all given ones must hold (the Hub ANDs them)."""
    search, author = _one(query, "search"), _one(query, "author")
    if search and search.lower() not in document["id"].lower():
        return False
    if author and document["author"] != author:
        return False
    if not all(tag in document["tags"] for tag in query.get("filter", [])):
        return False
    pipeline_tag, gated = _one(query, "pipeline_tag"), _one(query, "gated")
    if pipeline_tag and document["pipeline_tag"] != pipeline_tag:
        return False
    if gated is not None and (document["gated"] is not False) != (gated.lower() == "true"):
        return False
    if spec := _one(query, "num_parameters"):
        total = document.get("safetensors", {}).get("total")
        return total is not None and _within(total, spec)
    return True


def _within(total: int, spec: str) -> bool:
    """``num_parameters="min:1M,max:100M"`` (units K, M, B, T) as the Hub reads it."""
    for bound in spec.split(","):
        key, _, value = bound.partition(":")
        match = re.fullmatch(r"([\d.]+)([KMBT]?)", value.strip().upper())
        if match is None:
            raise ValueError(f"bad num_parameters bound: {bound!r}")
        limit = float(match[1]) * _UNITS[match[2]]
        if (key == "min" and total < limit) or (key == "max" and total > limit):
            return False
    return True
