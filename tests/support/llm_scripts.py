"""What the scripted LLM answers: plans, and verdicts by keywords, for ``respond_with``.

The scripted server (:mod:`tests.support.openai_server`) records each request; these helpers
read a request's schema and items and build the answers a planner or a judge would give.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from tests.support.openai_server import RecordedRequest

Responder = Callable[[RecordedRequest], dict]


def toxicity_plan(
    search_queries: Sequence[str] = ("toxic comment",),
    descriptions: tuple[str, str] = ("civil text", "insults, threats or slurs"),
) -> dict:
    """A planner's PlanProposal for toxicity: non-toxic and toxic, English, the text column."""
    return {
        "family": "toxicity",
        "labels": [
            {"name": "non-toxic", "description": descriptions[0]},
            {"name": "toxic", "description": descriptions[1]},
        ],
        "text_column": "text",
        "search_queries": list(search_queries),
        "language": "en",
    }


def schema_name(request: RecordedRequest) -> str:
    """The name of the structured answer a request asks for (PlanProposal, Verdicts...)."""
    return request.body["response_format"]["json_schema"]["name"]


def judge_items(request: RecordedRequest) -> list[dict]:
    """A judge request's items (an object, id -> text), as ``{"id", "text"}`` records."""
    items = json.loads(request.user_text.split("Items (JSON data):", 1)[1])
    return [{"id": id_, "text": text} for id_, text in items.items()]


def keyword_label(text: str, toxic_words: Sequence[str]) -> str:
    return "toxic" if any(word in text.lower() for word in toxic_words) else "non-toxic"


def keyword_verdicts(request: RecordedRequest, toxic_words: Sequence[str]) -> dict:
    """A judge's answer: each item is toxic exactly when it holds one of ``toxic_words``."""
    return {
        "labels": {
            item["id"]: keyword_label(item["text"], toxic_words) for item in judge_items(request)
        }
    }


def keyword_judge(plan: dict, toxic_words: Sequence[str]) -> Responder:
    """Answers a plan request with ``plan`` and every judge request by the keywords."""

    def respond(request: RecordedRequest) -> dict:
        if schema_name(request) == "PlanProposal":
            return plan
        return keyword_verdicts(request, toxic_words)

    return respond
