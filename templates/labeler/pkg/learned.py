"""Learned voters' versions: how they are stored, loaded, installed and pinned.

A learned voter (kinds in :data:`.kinds.LEARNED_KINDS`) is fitted on verified rows by
:mod:`.learn`. Each version is a folder ``learned/<voter>/v<N>/`` under the package,
``learned/<voter>/CURRENT`` naming the one in use, holding no pickle:

- ``model.json``: kind, labels, hyper-parameters, vocabulary and the training record;
- ``weights.safetensors``: the arrays (read with ``safetensors.numpy``).

Until a version is installed the voter abstains: uniform probabilities on every row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import tabular, versions
from .config import VoterConfig
from .vote import RECORD as VOTE_RECORD
from .vote import VOTES, votes_folder
from .voters import VoterLoadError

LEARNED = "learned"
"""The learned voters' folder under the package (and under ``learn``'s output)."""
MODEL = "model.json"
WEIGHTS = "weights.safetensors"


@dataclass(frozen=True)
class LearnedModel:
    """One stored version of a learned voter."""

    version: str
    record: dict
    """``model.json``."""
    arrays: dict[str, np.ndarray]
    """``weights.safetensors``."""
    digests: dict[str, str]
    """sha256 of each file: what the version is, whatever its name."""


class LearnedVoter:
    """What every learned voter shares: its config and labels, and the stored version in use
    (None while untrained: the voter abstains and loads nothing)."""

    learned = True

    def load_stored(self, config: VoterConfig, labels: Sequence[str], runtime_root: Path) -> None:
        self.config = config
        self.labels = list(labels)
        # Not ``model``: that name is for torch models (int8).
        self.stored: LearnedModel | None = current_model(runtime_root, config, labels)
        self.version = None if self.stored is None else self.stored.version


def learned_folder(package_root: Path, voter: str) -> Path:
    return package_root / LEARNED / voter


def uniform(rows: int, labels: int) -> np.ndarray:
    """An abstention: exactly 1/labels for every label of every row."""
    return np.full((rows, labels), 1.0 / labels)


def write_model(folder: Path, record: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write a version folder: ``model.json`` and ``weights.safetensors`` (no pickle)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (folder / MODEL).write_text(text, encoding="utf-8")
    contiguous = {name: np.ascontiguousarray(array) for name, array in sorted(arrays.items())}
    save_file(contiguous, str(folder / WEIGHTS))


def read_model(folder: Path, config: VoterConfig, labels: Sequence[str]) -> LearnedModel:
    """A stored version, refused (one line) when incomplete or fitted for other labels."""
    from safetensors.numpy import load_file

    name = config.name
    if not (folder / MODEL).is_file() or not (folder / WEIGHTS).is_file():
        raise VoterLoadError(f"voter {name}: learned version {folder} is missing its files")
    try:
        record = json.loads((folder / MODEL).read_text(encoding="utf-8"))
        arrays = load_file(str(folder / WEIGHTS))
    except (OSError, ValueError) as error:
        raise VoterLoadError(f"voter {name}: learned version {folder} is unreadable") from error
    if record.get("kind") != config.kind:
        raise VoterLoadError(
            f"voter {name}: learned version {folder} is of kind {record.get('kind')!r}, "
            f"not {config.kind!r}"
        )
    if record.get("labels") != list(labels):
        raise VoterLoadError(
            f"voter {name}: learned version {folder} has labels {record.get('labels')}, "
            f"not this package's {list(labels)}"
        )
    return LearnedModel(folder.name, record, arrays, versions.file_digests(folder))


def current_model(
    package_root: Path, config: VoterConfig, labels: Sequence[str]
) -> LearnedModel | None:
    """The version in use, or None while the voter is untrained."""
    folder = learned_folder(package_root, config.name)
    version = versions.current(folder)
    return None if version is None else read_model(folder / version, config, labels)


def install_learned(output: Path, package_root: Path) -> dict:
    """Install what ``learn`` wrote in ``output``: every learned voter's version, and the
    learned vote if it was adopted. Returns ``{"voters": {voter: version}, "vote": version
    or None}``."""
    installed_voters: dict[str, str] = {}
    for voter_folder in sorted(p for p in (output / LEARNED).glob("*") if p.is_dir()):
        version = latest(voter_folder)
        if version is not None:
            target = learned_folder(package_root, voter_folder.name)
            versions.install(voter_folder / version, target, version)
            installed_voters[voter_folder.name] = version
    vote_version = latest(output / VOTES)
    if vote_version is not None:
        folder = output / VOTES / vote_version
        record = json.loads((folder / VOTE_RECORD).read_text(encoding="utf-8"))
        if record.get("adopted"):
            versions.install(folder, votes_folder(package_root), vote_version)
        else:
            vote_version = None
    return {"voters": installed_voters, "vote": vote_version}


def latest(folder: Path) -> str | None:
    """The highest ``v<N>`` folder in ``folder``, or None."""
    found = [p.name for p in folder.glob("v*") if p.is_dir() and p.name[1:].isdigit()]
    return max(found, key=lambda name: int(name[1:])) if found else None


def installed(package_root: Path) -> dict[str, dict]:
    """``{voter: {"version": v, "files": {name: sha256}}}`` of the learned voters in use."""
    result = {}
    for voter_folder in sorted(p for p in (package_root / LEARNED).glob("*") if p.is_dir()):
        version = versions.current(voter_folder)
        if version is not None and (voter_folder / version).is_dir():
            files = versions.file_digests(voter_folder / version)
            result[voter_folder.name] = {"version": version, "files": files}
    return result


def read_examples(
    path: Path,
    text_column: str,
    label_column: str,
    weight_column: str | None,
    task_labels: tuple[str, ...],
    two: bool = True,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, label indices into ``task_labels`` and weights of verified rows (of at least two
    labels, unless ``two`` is False)."""
    tabular.require_columns(path, text_column, label_column, *filter(None, [weight_column]))
    texts, labels, weights = [], [], []
    for chunk in tabular.iter_chunks(path, 10_000):
        for row in chunk:
            label = row.get(label_column)
            if label not in task_labels:
                raise tabular.DataError(f"{path}: label {label!r} is not one of {task_labels}")
            texts.append("" if row.get(text_column) is None else str(row[text_column]))
            labels.append(task_labels.index(label))
            weights.append(example_weight(row, weight_column, path))
    if two and len(set(labels)) < 2:
        raise tabular.DataError(f"{path}: examples of at least two labels are needed")
    return texts, np.array(labels, dtype=int), np.array(weights, dtype=np.float64)


def example_weight(row: dict, weight_column: str | None, path: Path) -> float:
    value = row.get(weight_column) if weight_column else None
    if value in (None, ""):
        return 1.0
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = -1.0
    if not np.isfinite(weight) or weight < 0:
        raise tabular.DataError(f"{path}: weight {value!r} is not a non-negative number")
    return weight
