"""The Hugging Face Hub, behind a small interface the project owns.

:class:`HfHub` uses the real ``huggingface_hub`` client; the endpoint is read
when the object is built (``HF_ENDPOINT`` or a setting), so tests point it at a
loopback Hub. Only the files a labeler needs are ever downloaded, at an exact
commit ``sha``. Transient failures (429, 5xx, timeouts, refused connections) are
retried with backoff: by the client itself for listings and files (five retries,
1 to 8 s apart), here for model info, which the client does not retry. When they
persist, the Hub is taken as unreachable for the rest of the run and every call
is answered from the local cache and the records of earlier runs
(:mod:`agent.hub.records`), so a rerun reproduces.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agent.errors import HubUnavailableError, UserInputError
from agent.hub.model_files import MODEL_FILE_PATTERNS
from agent.hub.records import HubRecords, cached_snapshot

LISTING_FIELDS = (
    "sha", "siblings", "cardData", "config", "safetensors", "gated", "private",
    "pipeline_tag", "library_name", "tags", "downloads", "likes",
)  # fmt: skip
"""Model-info fields a search asks for (``expand``): all the filters need, parameters included."""

T = TypeVar("T")


@dataclass(frozen=True)
class HubModel:
    """What the Hub says about one model."""

    id: str
    sha: str
    pipeline_tag: str | None
    library: str | None
    license: str
    languages: tuple[str, ...]
    tags: tuple[str, ...]
    files: tuple[str, ...]
    parameters: int | None
    id2label: dict[int, str]
    """From ``config.json``: the Hub's model info does not carry it, so empty until read."""
    remote_code: bool
    gated: bool
    private: bool
    downloads: int
    likes: int
    config: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    """Answered from the records of an earlier run because the Hub was unreachable."""

    def record(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"cached": False}

    @classmethod
    def from_record(cls, record: dict[str, Any], *, cached: bool) -> HubModel:
        values = dict(record) | {"cached": cached}
        for name in ("languages", "tags", "files"):
            values[name] = tuple(values[name])
        values["id2label"] = {int(k): str(v) for k, v in values["id2label"].items()}
        return cls(**values)


class ModelHub(Protocol):
    def search(self, query: str, limit: int) -> list[HubModel]:
        """Text-classification models matching ``query``, most downloaded first."""
        ...

    def info(self, repo_id: str, revision: str | None = None) -> HubModel: ...

    def read_config(self, repo_id: str, revision: str) -> dict[str, Any]:
        """``config.json`` at ``revision``: one small file, read before deciding to download."""
        ...

    def download(self, repo_id: str, revision: str) -> Path:
        """The model's labeler files at ``revision`` (a commit sha), from cache when present."""
        ...


class ModelUnavailableError(UserInputError):
    """This one model cannot be had (gated, missing, no such revision or file)."""


class HubUnreachableError(HubUnavailableError):
    """The Hub kept failing (transport errors, 429, 5xx) after every retry."""


class HfHub:
    """:class:`ModelHub` over ``huggingface_hub`` with retries, backoff and a cache fallback."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        offline: bool = False,
        attempts: int = 4,
        base_delay_s: float = 0.5,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        records: HubRecords | None = None,
    ) -> None:
        from huggingface_hub import HfApi, constants

        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.records = records or HubRecords()
        self.unreachable: str | None = "offline" if offline else None
        """Why the Hub is not asked any more (None while it answers)."""
        self._api = HfApi(endpoint=self.endpoint)
        self._attempts = attempts
        self._base_delay_s = base_delay_s
        self._timeout_s = timeout_s
        self._sleep = sleep
        self._seen: dict[tuple[str, str], HubModel] = {}

    def search(self, query: str, limit: int) -> list[HubModel]:
        what = f"searching the Hub for {query!r}"

        def call() -> list[Any]:
            # The listing is lazy: its pages are fetched while it is consumed, so inside here.
            return list(
                self._api.list_models(
                    search=query,
                    pipeline_tag="text-classification",
                    sort="downloads",
                    limit=limit,
                    expand=list(LISTING_FIELDS),
                )
            )

        if self.unreachable is None:
            try:
                found = self._retrying(what, call, attempts=1)  # the client retries listings
            except HubUnreachableError as error:
                self.unreachable = str(error)
            else:
                # Parsed outside the retry loop: a bug of ours is not an outage.
                models = [_hub_model(info) for info in found]
                self.records.save_search(self.endpoint, query, limit, [m.record() for m in models])
                return self._remember(models)
        replay = self.records.search(self.endpoint, query, limit)
        if replay is None:
            raise HubUnavailableError(f"{what}: {self.unreachable}; no earlier search to replay")
        return self._remember([HubModel.from_record(r, cached=True) for r in replay])

    def info(self, repo_id: str, revision: str | None = None) -> HubModel:
        what = f"reading {repo_id} on the Hub"
        if self.unreachable is None:
            try:
                info = self._retrying(
                    what,
                    lambda: self._api.model_info(
                        repo_id, revision=revision, timeout=self._timeout_s
                    ),
                )
            except HubUnreachableError as error:
                self.unreachable = str(error)
            else:
                return self._remember([_hub_model(info)])[0]
        record = self.records.model(repo_id, revision)
        if record is not None:
            return self._remember([HubModel.from_record(record, cached=True)])[0]
        snapshot = cached_snapshot(repo_id, revision)
        if snapshot is None:
            raise HubUnavailableError(f"{what}: {self.unreachable}; {repo_id} is not in the cache")
        return self._remember([_model_from_snapshot(repo_id, snapshot)])[0]

    def read_config(self, repo_id: str, revision: str) -> dict[str, Any]:
        from huggingface_hub import hf_hub_download

        def call(local_only: bool) -> Path:
            return Path(
                hf_hub_download(
                    repo_id,
                    "config.json",
                    revision=revision,
                    endpoint=self.endpoint,
                    local_files_only=local_only,
                    etag_timeout=self._timeout_s,
                )
            )

        path = self._online_or_cached(f"reading {repo_id}'s config.json", call)
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ModelUnavailableError(f"{repo_id}: unreadable config.json ({error})") from None
        if not isinstance(config, dict):
            raise ModelUnavailableError(f"{repo_id}: config.json is not a JSON object")
        return config

    def download(self, repo_id: str, revision: str) -> Path:
        from huggingface_hub import snapshot_download

        def call(local_only: bool) -> Path:
            return Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    allow_patterns=list(MODEL_FILE_PATTERNS),
                    endpoint=self.endpoint,
                    local_files_only=local_only,
                    etag_timeout=self._timeout_s,
                )
            )

        was_reachable = self.unreachable is None
        path = self._online_or_cached(f"downloading {repo_id}@{revision[:12]}", call)
        seen = self._seen.get((repo_id, revision))
        if was_reachable and self.unreachable is None and seen is not None and not seen.cached:
            self.records.save_model(seen.record())  # what a rerun without the Hub will need
        return path

    def _remember(self, models: list[HubModel]) -> list[HubModel]:
        for model in models:
            self._seen[(model.id, model.sha)] = model
        return models

    def _online_or_cached(self, what: str, call: Callable[[bool], T]) -> T:
        """``call(local_only=False)``; ``call(local_only=True)`` once the Hub is unreachable."""
        from huggingface_hub import errors as hub_errors

        if self.unreachable is None:
            try:
                return self._retrying(what, lambda: call(False), attempts=1)  # the client retries
            except HubUnreachableError as error:
                self.unreachable = str(error)
        try:
            return call(True)
        except hub_errors.EntryNotFoundError:
            raise HubUnavailableError(f"{what}: {self.unreachable}; not in the cache") from None

    def _retrying(self, what: str, call: Callable[[], T], attempts: int | None = None) -> T:
        """``call``, a request and nothing more, with backoff on transient failures.

        Only the Hub's answers (HTTP statuses) and transport failures become one clear
        message; transient ones are retried and, when they persist, make the Hub
        unreachable. Anything else is a bug (ours or a library's) and propagates as it is,
        so it is reported as an internal error, never as an outage.
        """
        from huggingface_hub import errors as hub_errors

        attempts = attempts or self._attempts
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except hub_errors.GatedRepoError:
                raise ModelUnavailableError(f"{what}: gated (needs accepted terms)") from None
            except hub_errors.RepositoryNotFoundError:
                raise ModelUnavailableError(f"{what}: no such model on {self.endpoint}") from None
            except hub_errors.RevisionNotFoundError:
                raise ModelUnavailableError(f"{what}: no such revision") from None
            except hub_errors.RemoteEntryNotFoundError:
                raise ModelUnavailableError(f"{what}: no such file") from None
            except hub_errors.LocalEntryNotFoundError:
                # The client lost the connection, looked in the cache and found nothing.
                raise HubUnreachableError(f"{what} failed: the Hub cannot be reached") from None
            except Exception as error:  # noqa: BLE001 - transport errors of several libraries
                if not _is_hub_failure(error):
                    raise
                if not _retryable(error):
                    raise HubUnavailableError(f"{what} failed: {_describe(error)}") from error
                if attempt == attempts:
                    raise HubUnreachableError(f"{what} failed: {_describe(error)}") from error
                delay = _retry_after(error) or self._base_delay_s * 2 ** (attempt - 1)
                self._sleep(delay * (1 + random.random() / 4))
        raise AssertionError("unreachable")


def _status(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _transport_errors() -> tuple[type[Exception], ...]:
    """Network failures of the HTTP libraries huggingface_hub may use."""
    errors: list[type[Exception]] = [TimeoutError, ConnectionError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(__import__(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _is_hub_failure(error: Exception) -> bool:
    """An HTTP answer of the Hub or a transport failure: not a bug in the code that asked."""
    return _status(error) is not None or isinstance(error, _transport_errors())


def _retryable(error: Exception) -> bool:
    """429, 408 and 5xx may pass; other statuses (404, 401, 400) are answers, not hiccups."""
    status = _status(error)
    if status is not None:
        return status in (408, 429) or status >= 500
    return isinstance(error, _transport_errors())


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None


def _describe(error: Exception) -> str:
    status = _status(error)
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"HTTP {status}: {text}" if status else text


def _hub_model(info: Any) -> HubModel:
    card = info.card_data.to_dict() if info.card_data is not None else {}
    config = info.config or {}
    tags = tuple(info.tags or ())
    license_name = card.get("license") or next(
        (tag.split(":", 1)[1] for tag in tags if tag.startswith("license:")), "unknown"
    )
    languages = card.get("language") or [t for t in tags if len(t) == 2 and t.isalpha()]
    if isinstance(languages, str):
        languages = [languages]
    id2label = {int(k): str(v) for k, v in (config.get("id2label") or {}).items()}
    parameters = info.safetensors.total if info.safetensors is not None else None
    return HubModel(
        id=info.id,
        sha=info.sha or "",
        pipeline_tag=info.pipeline_tag,
        library=info.library_name,
        license=str(license_name),
        languages=tuple(str(language) for language in languages),
        tags=tags,
        files=tuple(sibling.rfilename for sibling in info.siblings or ()),
        parameters=parameters,
        id2label=id2label,
        remote_code="auto_map" in config or "custom_code" in tags,
        gated=bool(info.gated),
        private=bool(info.private),
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        config=config,
    )


def _model_from_snapshot(repo_id: str, snapshot: Path) -> HubModel:
    """What a cached snapshot tells about a model no record describes (no licence, no tags)."""
    from agent.hub.model_files import read_model_folder

    folder = read_model_folder(snapshot)
    return HubModel(
        id=repo_id,
        sha=snapshot.name,
        pipeline_tag=None,
        library="transformers",
        license="unknown",
        languages=(),
        tags=(),
        files=tuple(sorted(p.name for p in snapshot.iterdir())),
        parameters=folder.parameters,
        id2label=dict(enumerate(folder.model_labels)),
        remote_code=folder.remote_code,
        gated=False,
        private=False,
        downloads=0,
        likes=0,
        cached=True,
    )
