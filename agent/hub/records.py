"""What the Hub said, kept next to the Hugging Face cache so that a rerun needs no Hub.

The Hugging Face cache keeps files, not search results or model info (licence, languages,
downloads, the commit ``main`` pointed at), and discovery decides on those. :class:`HubRecords`
keeps each successful search and the info of each downloaded model as small JSON files under
``$HF_HOME/autoannotator/hub-records``; when the Hub is unreachable :class:`agent.hub.client.HfHub`
replays them, so the same command refuses and picks the same models at the same commits, and
``--model ID`` finds the commit it used before.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agent.files import write_text_atomically


def default_root() -> Path:
    """Read at call time: the Hugging Face home may be repointed after import (tests do)."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "autoannotator" / "hub-records"


def hub_cache_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


class HubRecords:
    """Search results and model info as the Hub last returned them (plain dicts)."""

    def __init__(self, root: Path | None = None) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        return self._root or default_root()

    def save_search(self, endpoint: str, query: str, limit: int, models: list[dict]) -> None:
        _write_json(self._search_path(endpoint, query, limit), {"query": query, "models": models})

    def search(self, endpoint: str, query: str, limit: int) -> list[dict] | None:
        record = _read_json(self._search_path(endpoint, query, limit))
        return None if record is None else list(record["models"])

    def save_model(self, model: dict) -> None:
        """Remember one commit's info; the last one saved is what ``main`` meant last time."""
        path = self._model_path(model["id"])
        record = _read_json(path) or {"commits": {}}
        record["commits"][model["sha"]] = model
        record["latest"] = model["sha"]
        _write_json(path, record)

    def model(self, repo_id: str, revision: str | None) -> dict | None:
        record = _read_json(self._model_path(repo_id))
        if record is None:
            return None
        return record["commits"].get(revision or record["latest"])

    def _search_path(self, endpoint: str, query: str, limit: int) -> Path:
        key = hashlib.sha256(json.dumps([endpoint, query, limit]).encode()).hexdigest()[:32]
        return self.root / "searches" / f"{key}.json"

    def _model_path(self, repo_id: str) -> Path:
        return self.root / "models" / f"{repo_id.replace('/', '--')}.json"


def cached_snapshot(repo_id: str, revision: str | None) -> Path | None:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (newest one when None)."""
    snapshots = hub_cache_root() / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    if revision is not None:
        folder = snapshots / revision
        return folder if folder.is_dir() else None
    folders = [f for f in snapshots.glob("*") if f.is_dir()] if snapshots.is_dir() else []
    return max(folders, key=lambda f: (f.stat().st_mtime, f.name)) if folders else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a torn or foreign file is no record; the Hub or the cache decides instead


def _write_json(path: Path, payload: Any) -> None:
    """Atomically: a concurrent run reads the old record or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(payload, indent=1, sort_keys=True))
