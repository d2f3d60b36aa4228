"""The voters' probabilities and int8 decisions through a :class:`.feature_cache.FeatureCache`.

A voter's probabilities are keyed by its full identity (:func:`voter_identity`): kind,
model source and revision, options, label map, its LoRA adapter and its learned version
(each with its files' sha256) and its precision. An encoder's embeddings are keyed by the
encoder's identity (:attr:`.encoders.Encoder.identity`). Batch size is not part of either:
it changes results by rounding at most.

Each labeling records the precision it ran each model at (identity without precision):
``--quantize auto`` and ``int8`` replay their own decision, whatever rows the later files
start with (a relabeling with a cache runs no frozen model), and ``learn`` replays the last
one, whichever mode took it, so it computes what the labeler computed. ``pinned`` needs no
replay: the spec decides.

A labeling with a cache also records the identities it used under their *recipes*
(:func:`probabilities_recipe`, :func:`embeddings_recipe`: what decides them before a model is
loaded), so that ``learn`` reads the frozen voters' probabilities and the encoders'
embeddings it needs without loading a model (:func:`recorded_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .adapters import adapter_identity, current_adapter
from .config import VoterConfig
from .feature_cache import IDENTITIES, FeatureCache
from .learned import LearnedModel
from .transformer import Int8Decision, use_int8
from .voters import Runtime, Voter


def voter_identity(
    voter: Voter, labels: Sequence[str], package_root: Path, precision: str | None
) -> dict:
    """What decides a voter's probabilities."""
    stored = getattr(voter, "stored", None)
    return config_identity(voter.config, labels, package_root, stored, precision)


def config_identity(
    config: VoterConfig,
    labels: Sequence[str],
    package_root: Path,
    stored: LearnedModel | None,
    precision: str | None,
) -> dict:
    """:func:`voter_identity` from what the voter is made of (``stored``: its learned model)."""
    adapter = current_adapter(package_root, config.name)
    return {
        "voter": config.name,
        "kind": config.kind,
        "source": config.source,
        "revision": config.revision,
        "options": config.options,
        "label_map": config.label_map,
        "labels": list(labels),
        "adapter": None if adapter is None else adapter_identity(adapter),
        "learned": None if stored is None else {"version": stored.version, **stored.digests},
        "precision": precision,
    }


def probabilities_recipe(
    config: VoterConfig, labels: Sequence[str], package_root: Path, device: str
) -> dict:
    """What decides a frozen voter's identity before its model is loaded: all of it but the
    precision, which the labeling chose (and ``learn`` replays), on ``device``."""
    identity = config_identity(config, labels, package_root, None, None)
    return {"probabilities_of": identity, "device": device}


def embeddings_recipe(config: VoterConfig, package_root: Path, device: str) -> dict:
    """What decides the identity of the encoder an embedding voter (``config``) uses, before
    it is loaded (:func:`.encoders.shared_encoder` shares it on the same)."""
    adapter = current_adapter(package_root, config.name)
    return {
        "embeddings_of": {
            "source": config.source,
            "revision": config.revision,
            "adapter": None if adapter is None else adapter_identity(adapter),
            "max_length": config.options.get("max_length"),
        },
        "device": device,
    }


def remember_identities(
    cache: FeatureCache,
    voters: Sequence[Voter],
    identities: Sequence[dict],
    labels: Sequence[str],
    runtime: Runtime,
) -> None:
    """Record, for ``learn``, the identities a labeling used: each frozen voter's and each
    encoder's, under their recipes."""
    root, device = runtime.package_root, runtime.device
    for voter, identity in zip(voters, identities, strict=True):
        config = voter.config
        if not getattr(voter, "learned", False):
            recipe = probabilities_recipe(config, labels, root, device)
            cache.save_note(IDENTITIES, recipe, identity)
        encoder = getattr(voter, "encoder", None)
        if encoder is not None:
            cache.save_note(IDENTITIES, embeddings_recipe(config, root, device), encoder.identity)


def recorded_rows(
    cache: FeatureCache | None, namespace: str, recipe: dict, texts: Sequence[str]
) -> np.ndarray | None:
    """Every text's row, stored under the identity the last labeling recorded for
    ``recipe``; None unless the cache holds all of them."""
    identity = None if cache is None else cache.note(IDENTITIES, recipe)
    if identity is None:
        return None
    stored, found = cache.rows(namespace, identity, texts)
    return stored if stored is not None and found.all() else None


def cached_probabilities(
    voters: Sequence[Voter],
    texts: Sequence[str],
    cache: FeatureCache,
    identities: list[dict],
    predict: Callable[[Voter, Sequence[str]], np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Each voter's probabilities for ``texts``: stored ones, else computed (``predict``,
    by default ``voter.predict``; embeddings read from the cache when an encoder stored
    them) and stored."""
    predict = predict or (lambda voter, texts: voter.predict(texts))
    results = [cache.get("probabilities", identity, texts) for identity in identities]
    encoders = {}
    for voter, result in zip(voters, results, strict=True):
        encoder = getattr(voter, "encoder", None)
        if result is None and encoder is not None:
            encoders[id(encoder)] = encoder
    fresh = []
    for encoder in encoders.values():
        stored = cache.get("embeddings", encoder.identity, texts)
        if stored is None:
            fresh.append(encoder)
        else:
            encoder.remember(texts, stored)
    for index, voter in enumerate(voters):
        if results[index] is None:
            results[index] = predict(voter, texts)
            cache.put("probabilities", identities[index], texts, results[index])
    current = tuple(texts)
    for encoder in fresh:
        if encoder.texts == current and encoder.embeddings is not None:
            cache.put("embeddings", encoder.identity, texts, encoder.embeddings)
    return [np.asarray(result, dtype=np.float64) for result in results]


def decision_identity(voter: Voter, labels: Sequence[str], package_root: Path) -> dict:
    return {"int8_decision": voter_identity(voter, labels, package_root, None)}


def replay_decision(
    voter: Voter, cache: FeatureCache, identity: dict, quantize: str | None
) -> Int8Decision | None:
    """The decision stored for ``voter`` (taken with ``quantize``, None: any), applied."""
    record = cache.decision(identity)
    if record is None or (quantize is not None and record.get("quantize") != quantize):
        return None
    try:
        decision = Int8Decision(**record["decision"])
    except (KeyError, TypeError):
        return None
    if decision.int8:
        use_int8(voter)
    return decision


def save_decision(
    cache: FeatureCache, identity: dict, quantize: str, decision: Int8Decision
) -> None:
    cache.save_decision(identity, {"quantize": quantize, "decision": asdict(decision)})
