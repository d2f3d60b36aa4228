"""The Hugging Face Hub, behind a small interface the project owns.

:class:`HfHub` uses the real ``huggingface_hub`` client; the endpoint is read
when the object is built (``HF_ENDPOINT`` or a setting), so tests point it at a
loopback Hub. Only the files a labeler needs are ever downloaded, at an exact
commit ``sha``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from .errors import HubUnavailableError, UserInputError

MODEL_FILE_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
)
"""What a labeler needs from a model repository: config, safetensors weights, tokenizer."""

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
    remote_code: bool
    gated: bool
    private: bool
    downloads: int
    likes: int
    config: dict[str, Any] = field(default_factory=dict)


class ModelHub(Protocol):
    def search(self, query: str, limit: int) -> list[HubModel]:
        """Text-classification models matching ``query``, most downloaded first."""
        ...

    def info(self, repo_id: str, revision: str | None = None) -> HubModel: ...

    def download(self, repo_id: str, revision: str) -> Path:
        """The model's labeler files at ``revision`` (a commit sha), from cache when present."""
        ...


class HfHub:
    """:class:`ModelHub` over ``huggingface_hub`` with retries and backoff."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        offline: bool = False,
        attempts: int = 4,
        base_delay_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from huggingface_hub import HfApi, constants

        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.offline = offline
        self._api = HfApi(endpoint=self.endpoint)
        self._attempts = attempts
        self._base_delay_s = base_delay_s
        self._sleep = sleep

    def search(self, query: str, limit: int) -> list[HubModel]:
        def call() -> list[HubModel]:
            found = self._api.list_models(
                search=query,
                pipeline_tag="text-classification",
                sort="downloads",
                limit=limit,
                full=True,
                cardData=True,
                fetch_config=True,
            )
            return [_hub_model(info) for info in found]

        return self._retrying(f"searching the Hub for {query!r}", call)

    def info(self, repo_id: str, revision: str | None = None) -> HubModel:
        return self._retrying(
            f"reading {repo_id} on the Hub",
            lambda: _hub_model(self._api.model_info(repo_id, revision=revision)),
        )

    def download(self, repo_id: str, revision: str) -> Path:
        from huggingface_hub import snapshot_download

        def call() -> Path:
            return Path(
                snapshot_download(
                    repo_id,
                    revision=revision,
                    allow_patterns=list(MODEL_FILE_PATTERNS),
                    endpoint=self.endpoint,
                    local_files_only=self.offline,
                )
            )

        return self._retrying(f"downloading {repo_id}@{revision[:12]}", call)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        from huggingface_hub import errors as hub_errors

        for attempt in range(1, self._attempts + 1):
            try:
                return call()
            except hub_errors.GatedRepoError:
                raise UserInputError(f"{what}: the model is gated (needs accepted terms)") from None
            except hub_errors.RepositoryNotFoundError:
                raise UserInputError(f"{what}: no such model on {self.endpoint}") from None
            except hub_errors.RevisionNotFoundError:
                raise UserInputError(f"{what}: no such revision") from None
            except hub_errors.LocalEntryNotFoundError:
                raise HubUnavailableError(f"{what}: not in the local cache and offline") from None
            except Exception as error:  # noqa: BLE001 - transport errors of several libraries
                if not _retryable(error) or attempt == self._attempts:
                    raise HubUnavailableError(f"{what} failed: {_describe(error)}") from error
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


def _retryable(error: Exception) -> bool:
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
