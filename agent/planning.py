"""The rule-based planner: common task phrasings to label sets, with no LLM.

Used with ``--offline`` or when no LLM endpoint is configured. It knows the
task families the offline specialists and common Hub classifiers serve; any
other task needs ``--labels``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agent.errors import UserInputError
from agent.state import TaskLabel


@dataclass(frozen=True)
class Family:
    name: str
    pattern: re.Pattern[str]
    labels: tuple[TaskLabel, ...]
    search_queries: tuple[str, ...]


def _labels(*entries: tuple[str, str, tuple[str, ...]]) -> tuple[TaskLabel, ...]:
    """Labels from (name, description, examples) triples."""
    return tuple(TaskLabel(name=n, description=d, examples=e) for n, d, e in entries)


FAMILIES = (
    Family(
        "hate",
        re.compile(r"\bhate|\bhateful|\bhate[- ]speech"),
        _labels(
            (
                "hate",
                "attacks or demeans a group for who they are",
                ("those people are vermin and should be wiped out", "go back to your country"),
            ),
            (
                "offensive",
                "insulting, vulgar or abusive, but not hate speech",
                ("shut up you stupid idiot", "what a pathetic loser"),
            ),
            (
                "neither",
                "neither hateful nor offensive",
                ("thanks for sharing this", "the game starts at eight tonight"),
            ),
        ),
        ("hate speech", "hate offensive"),
    ),
    Family(
        "toxicity",
        re.compile(r"toxic|offensive|abusive|insult|profan|obscen|harass|cyberbull"),
        _labels(
            (
                "non-toxic",
                "civil text with no insults, threats, obscenity or hate",
                (
                    "thank you for the help, have a nice day",
                    "the meeting moved to Thursday",
                    "I disagree, but I see your point",
                ),
            ),
            (
                "toxic",
                "rude, insulting, threatening, obscene or hateful text",
                (
                    "shut up, you stupid idiot",
                    "you are a pathetic loser, nobody wants you here",
                    "go to hell, you worthless piece of trash",
                ),
            ),
        ),
        ("toxic", "toxicity", "offensive"),
    ),
    Family(
        "spam",
        re.compile(r"\bspam|\bscam|\bphishing|\bjunk"),
        _labels(
            ("ham", "a legitimate message", ("are we still on for lunch tomorrow?",)),
            (
                "spam",
                "unsolicited advertising, scams or phishing",
                ("WINNER! Claim your free prize now, click the link", "cheap loans, reply YES"),
            ),
        ),
        ("spam", "sms spam"),
    ),
    Family(
        "sentiment",
        re.compile(r"sentiment|polarity|positive|negative|opinion|emotion|feeling|review"),
        _labels(
            (
                "negative",
                "expresses a negative opinion or feeling",
                (
                    "this is bad, boring and awful",
                    "I hated it, a waste of time and money",
                    "dull, tedious and disappointing",
                ),
            ),
            (
                "neutral",
                "expresses no clear opinion, or a balanced one",
                (
                    "it is available in three colours",
                    "the film runs two hours",
                    "some parts work and some do not",
                ),
            ),
            (
                "positive",
                "expresses a positive opinion or feeling",
                (
                    "this is great, moving and wonderful",
                    "I loved it, a masterpiece",
                    "funny, charming and brilliant",
                ),
            ),
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
        return "topic", tuple(TaskLabel(name=name) for name in labels_override), queries
    labels = family.labels
    if family.name == "sentiment" and _BINARY_SENTIMENT.search(text):
        labels = tuple(label for label in labels if label.name != "neutral")
    if labels_override:
        known = {label.name: label for label in labels}
        labels = tuple(known.get(name, TaskLabel(name=name)) for name in labels_override)
    return family.name, labels, family.search_queries
