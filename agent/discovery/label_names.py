"""Mapping a model's own labels onto the task's labels.

A wrong mapping is the most common silent failure in this field (the public
AutoAnnotator code assumes index 1 means "toxic" in every model), so a model
is accepted only when each of its labels maps, by name or known synonym, to a
task label or to ``ignore``, and the mapped labels cover at least two of the
task's labels. Anything else is refused with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from agent.labeler_runtime import IGNORE

_SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(group)
    for group in (
        {"toxic", "toxicity", "offensive", "abusive", "insult", "insulting", "obscene", "harmful",
         "profane", "profanity", "hate", "hateful", "hate speech", "severe toxic", "bad",
         "offensive language"},
        {"non toxic", "nontoxic", "not toxic", "clean", "normal", "safe", "benign", "ok",
         "non offensive", "not offensive", "nonoffensive", "acceptable", "neither", "none",
         "no hate", "non hate", "not hate", "neutral"},
        {"positive", "pos", "good", "favorable", "favourable"},
        {"negative", "neg", "bad", "unfavorable", "unfavourable"},
        {"neutral", "neu", "mixed"},
        {"spam", "junk", "scam"},
        {"ham", "not spam", "non spam", "legit", "legitimate"},
        {"hate", "hateful", "hate speech", "hatespeech"},
        {"offensive", "abusive", "insult", "offensive language"},
    )
)  # fmt: skip
IGNORABLE = frozenset({"neutral", "neu", "mixed", "other", "unknown", "irrelevant", "none"})
"""Model labels that may be ignored when the task has no matching label."""
_OPAQUE = re.compile(r"(label ?)?\d+")


def normalize(label: str) -> str:
    """Lowercase words: ``Non-Toxic`` and ``non_toxic`` both become ``non toxic``."""
    return " ".join(re.split(r"[\s_\-]+", label.strip().lower())).strip()


def is_opaque(label: str) -> bool:
    """``LABEL_0``, ``0``: names that say nothing about meaning."""
    return bool(_OPAQUE.fullmatch(normalize(label)))


@dataclass(frozen=True)
class LabelMapping:
    mapping: dict[str, str]
    """Model label -> task label or ``ignore``; complete when ``reason`` is None."""
    reason: str | None
    """Why the model cannot be used, or None."""
    unresolved: tuple[str, ...] = ()
    """Model labels that names and synonyms could not place (ambiguous or unknown): a
    judgement call the LLM may make, unlike opaque names or too narrow a label set."""

    @property
    def ok(self) -> bool:
        return self.reason is None


def _closeness(model_label: str, task_label: str) -> int | None:
    """0 for the same name, else the size of the smallest synonym group holding both."""
    wanted, name = normalize(model_label), normalize(task_label)
    if wanted == name:
        return 0
    sizes = [len(group) for group in _SYNONYM_GROUPS if wanted in group and name in group]
    return min(sizes) if sizes else None


def _match(model_label: str, task_labels: Sequence[str]) -> list[str]:
    """The task labels closest to ``model_label``: one, or several when it is ambiguous."""
    scored = [(_closeness(model_label, label), label) for label in task_labels]
    scored = [(score, label) for score, label in scored if score is not None]
    if not scored:
        return []
    best = min(score for score, _ in scored)
    return [label for score, label in scored if score == best]


def map_labels(model_labels: Sequence[str], task_labels: Sequence[str]) -> LabelMapping:
    """Map each model label to a task label, ``ignore``, or refuse the model with a reason."""
    if all(is_opaque(label) for label in model_labels):
        names = ", ".join(model_labels)
        return LabelMapping({}, f"its labels ({names}) are opaque: they do not say what they mean")
    mapping: dict[str, str] = {}
    for model_label in model_labels:
        matches = _match(model_label, task_labels)
        if len(matches) == 1:
            mapping[model_label] = matches[0]
        elif len(matches) > 1:
            return LabelMapping(
                {},
                f"its label {model_label!r} could mean any of {sorted(matches)}",
                unresolved=(model_label,),
            )
        elif normalize(model_label) in IGNORABLE:
            mapping[model_label] = IGNORE
        else:
            return LabelMapping(
                {},
                f"its label {model_label!r} matches none of the task's labels {list(task_labels)}",
                unresolved=(model_label,),
            )
    covered = {target for target in mapping.values() if target != IGNORE}
    if len(covered) < min(2, len(task_labels)):
        return LabelMapping({}, f"its labels cover only {sorted(covered)} of {list(task_labels)}")
    return LabelMapping(mapping, None)


def all_opaque(model_labels: Sequence[str]) -> bool:
    return bool(model_labels) and all(is_opaque(label) for label in model_labels)


def provisional_mapping(model_labels: Sequence[str], task_labels: Sequence[str]) -> LabelMapping:
    """Opaque labels in order onto the task's labels, to be calibrated on the pilot.

    ``LABEL_i -> i-th task label`` is a guess, not a mapping: it only lets the pilot run the
    model; :mod:`agent.discovery.calibration` then keeps the assignment that agrees with the other
    voters, or refuses the model. The guess is one-to-one so the pilot's votes can be traced
    back to the model's own labels.
    """
    if len(model_labels) > len(task_labels):
        return LabelMapping(
            {},
            f"its {len(model_labels)} labels are opaque and outnumber the task's "
            f"{len(task_labels)}: they cannot be told apart by agreement",
        )
    return LabelMapping(dict(zip(model_labels, task_labels, strict=False)), None)


def check_mapping(
    mapping: dict[str, str], model_labels: Sequence[str], task_labels: Sequence[str]
) -> str | None:
    """Why a proposed mapping (from the LLM) is unusable, or None.

    Every model label must map, once, to a task label or ``ignore``, and together they must
    cover at least two task labels: the same bar the name and synonym matching meets.
    """
    missing = [label for label in model_labels if label not in mapping]
    extra = sorted(set(mapping) - set(model_labels))
    if missing or extra:
        return f"it must map exactly the model's labels {list(model_labels)}"
    allowed = set(task_labels) | {IGNORE}
    wrong = sorted({target for target in mapping.values() if target not in allowed})
    if wrong:
        return f"targets {wrong} are neither task labels {list(task_labels)} nor {IGNORE!r}"
    covered = {target for target in mapping.values() if target != IGNORE}
    if len(covered) < min(2, len(task_labels)):
        return f"its labels cover only {sorted(covered)} of {list(task_labels)}"
    return None
