"""Voter kinds: which adapter class serves each kind, imported only when a spec uses it.

Kept apart from :mod:`.voters`, which the adapters themselves import, so that loading a
voter by its kind closes no import cycle.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from .config import VoterConfig
from .voters import Runtime, Voter, VoterLoadError

ADAPTERS = {
    "hf-sequence-classifier": ".transformer:SequenceClassifierVoter",
    "embedding": ".embedding:EmbeddingVoter",
    "vader": ".lexicon:VaderVoter",
    "textblob": ".lexicon:TextBlobVoter",
    "afinn": ".lexicon:AfinnVoter",
    "profanity-check": ".lexicon:ProfanityVoter",
    "hatesonar": ".lexicon:HateSonarVoter",
    "embedding-head": ".embedding_head:EmbeddingHeadVoter",
    "tfidf": ".tfidf:TfidfVoter",
}
"""Voter kind -> adapter class; imported only when a spec uses it."""

LEARNED_KINDS = ("embedding-head", "tfidf")
"""Kinds learned from verified rows by ``learn`` (:mod:`.learned`): they abstain until a
version is installed, and their adapters say so (``learned = True``)."""


def is_learned(voter: Voter) -> bool:
    return bool(getattr(voter, "learned", False))


def load_voter(config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> Voter:
    """Build the adapter for ``config.kind``."""
    try:
        module_name, class_name = ADAPTERS[config.kind].split(":")
    except KeyError:
        raise VoterLoadError(f"voter {config.name}: unknown kind {config.kind!r}") from None
    try:
        adapter = getattr(importlib.import_module(module_name, __package__), class_name)
        return adapter(config, labels, runtime)
    except ImportError as error:
        raise VoterLoadError(
            f"voter {config.name}: a package it needs is not installed ({error})"
        ) from error
    except (OSError, ValueError) as error:
        raise VoterLoadError(f"voter {config.name}: cannot load its model ({error})") from error
