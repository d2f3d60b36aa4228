"""An LLM's label, mapped onto a task label when it differs only in form.

``Positive``, ``"positive"``, `` positive ``, ``non_toxic`` for ``non-toxic``, a reasoning
model's ``<think>...</think>`` before the label, and the synonyms the plan gives a label
all name that label. Anything else is no label: it stays invalid (retried, then left for
review), never guessed. Two task labels that look alike in this form (``non-toxic`` and
``non toxic``) are both left to exact matching.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from agent.llm.negotiation import strip_think

_SEPARATORS = re.compile(r"[\s_\-]+")
_QUOTES = "\"'`\u2018\u2019\u201c\u201d"


def label_form(text: str) -> str:
    """The form labels are compared in: no ``<think>`` block, no surrounding spaces or quotes,
    lower case, ``-``/``_``/spaces as one space."""
    text = strip_think(text).strip().strip(_QUOTES).strip()
    return _SEPARATORS.sub(" ", text.casefold()).strip()


class LabelNormalizer:
    """Maps answers onto ``labels`` (exact names first, then :func:`label_form` of names and
    synonyms)."""

    def __init__(
        self, labels: Sequence[str], synonyms: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self.labels = tuple(labels)
        forms: dict[str, set[str]] = {}
        for label in self.labels:
            for name in (label, *(synonyms or {}).get(label, ())):
                forms.setdefault(label_form(name), set()).add(label)
        self._forms = {
            form: next(iter(owners)) for form, owners in forms.items() if len(owners) == 1
        }
        self._forms.pop("", None)

    def normalize(self, answer: object) -> str | None:
        """The task label ``answer`` names, or None."""
        if not isinstance(answer, str):
            return None
        if answer in self.labels:
            return answer
        return self._forms.get(label_form(answer))
