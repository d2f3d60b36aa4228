"""How a row's final label is decided from the vote and its verdict (one rule, used everywhere)."""

from __future__ import annotations

VERIFIED_SOURCES = ("llm", "human")
"""Verdicts that settle a row for good (and may teach the voters)."""


def resolve(
    vote_label: str | None, verdict: dict | None, needs_review: bool
) -> tuple[str | None, str]:
    """(label, source) of a row: a verified label wins; a row under review takes its verdict
    or stays unresolved without one; every other row keeps the vote as consensus.

    A verdict of source ``vote`` (a row left to the vote: ``--verifier none`` or over the
    ``--max-verified`` budget) takes the row's current vote, ``vote_label``, not the label
    stored when it was written: a later, better-informed labeling pass decides it.
    """
    if verdict is not None and verdict["source"] in VERIFIED_SOURCES:
        return verdict["label"], verdict["source"]
    if needs_review:
        if verdict is None:
            return None, "unresolved"
        if verdict["source"] == "vote":
            return vote_label, "vote"
        return verdict["label"], verdict["source"]
    return vote_label, "consensus"
