"""The rule-based planner: common task phrasings to label sets, with no LLM.

Used with ``--offline`` or when no LLM endpoint is configured. It knows the
task families the offline specialists and common Hub classifiers serve; any
other task needs ``--labels``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UserInputError
from .state import TaskLabel


@dataclass(frozen=True)
class Family:
    name: str
    pattern: re.Pattern[str]
    labels: tuple[TaskLabel, ...]
    search_queries: tuple[str, ...]


def _labels(*pairs: tuple[str, str]) -> tuple[TaskLabel, ...]:
    return tuple(TaskLabel(name=name, description=description) for name, description in pairs)


FAMILIES = (
    Family(
        "hate",
        re.compile(r"\bhate|\bhateful|\bhate[- ]speech"),
        _labels(
            ("hate", "attacks or demeans a group for who they are"),
            ("offensive", "insulting, vulgar or abusive, but not hate speech"),
            ("neither", "neither hateful nor offensive"),
        ),
        ("hate speech", "hate offensive"),
    ),
    Family(
        "toxicity",
        re.compile(r"toxic|offensive|abusive|insult|profan|obscen|harass|cyberbull"),
        _labels(
            ("non-toxic", "civil text with no insults, threats, obscenity or hate"),
            ("toxic", "rude, insulting, threatening, obscene or hateful text"),
        ),
        ("toxic", "toxicity", "offensive"),
    ),
    Family(
        "spam",
        re.compile(r"\bspam|\bscam|\bphishing|\bjunk"),
        _labels(
            ("ham", "a legitimate message"),
            ("spam", "unsolicited advertising, scams or phishing"),
        ),
        ("spam", "sms spam"),
    ),
    Family(
        "sentiment",
        re.compile(r"sentiment|polarity|positive|negative|opinion|emotion|feeling|review"),
        _labels(
            ("negative", "expresses a negative opinion or feeling"),
            ("neutral", "expresses no clear opinion, or a balanced one"),
            ("positive", "expresses a positive opinion or feeling"),
        ),
        ("sentiment", "twitter sentiment", "sentiment analysis"),
    ),
)
_BINARY_SENTIMENT = re.compile(r"polarity|binary|positive (or|and|vs\.?|/) negative|two classes")


def plan_by_rules(
    task: str, labels_override: tuple[str, ...]
) -> tuple[str, tuple[TaskLabel, ...], tuple[str, ...]]:
    """Family, labels and search queries for ``task``; ``--labels`` wins over the family's."""
    text = task.lower()
    family = next((f for f in FAMILIES if f.pattern.search(text)), None)
    if family is None:
        if not labels_override:
            raise UserInputError(
                f"cannot tell which labels {task!r} needs without an LLM: pass --labels a,b,c"
            )
        queries = tuple(labels_override[:3])
        return "topic", _labels(*((name, "") for name in labels_override)), queries
    labels = family.labels
    if family.name == "sentiment" and _BINARY_SENTIMENT.search(text):
        labels = tuple(label for label in labels if label.name != "neutral")
    if labels_override:
        known = {label.name: label.description for label in labels}
        labels = _labels(*((name, known.get(name, "")) for name in labels_override))
    return family.name, labels, family.search_queries
