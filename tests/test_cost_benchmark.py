"""The cost benchmark's accounting (``benchmarks/cost.py``), on a tiny labeled set.

Both arms run for real against the scripted server: the baseline through the
project's client, the agent through its CLI with three lexicon specialists.
The token counter is the benchmark's transparent words-and-punctuation rule.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agent.llm.client import TokenUsage
from agent.settings import Settings
from benchmarks.cost import (
    LABELS,
    TASK,
    ChatTokenCounter,
    Tokens,
    approximate_count,
    baseline_messages,
    measure,
)
from tests.support.openai_server import Exchange, RecordedRequest

POSITIVE = (
    "A wonderful, moving film with a brilliant cast.",
    "Funny, warm and beautifully acted from start to finish.",
    "One of the best films of the year: smart and delightful.",
    "The performances are superb and the story is gripping.",
    "An excellent, charming little movie that I loved.",
    "Not bad at all; I expected to hate it and ended up enjoying it.",
    "It is sad and dark, yet the ending is hopeful and lovely.",
    "The villain is terrifying, which makes the hero's triumph so satisfying.",
    "Slow at first, but it rewards patience with a great finale.",
    "A film about grief that never feels heavy or dull.",
    "Nothing here is new, and it still works wonderfully.",
    "The director takes a silly premise seriously, and it pays off.",
    "Plenty of violence, but the heart of the film is kind.",
    "Two hours in a dark room with these characters went by quickly.",
    "It could have been a disaster; instead it is a triumph.",
)
NEGATIVE = (
    "A dull, boring mess with terrible acting.",
    "The worst script I have seen in years; awful and lazy.",
    "Ugly, stupid and painfully long.",
    "The jokes fall flat and the plot is a disaster.",
    "A tedious, pointless sequel that nobody needed.",
    "Beautiful photography cannot save this empty, lifeless story.",
    "The cast seems happy to be there; I was not.",
    "It wants to be a great thriller and never gets close.",
    "Lots of good ideas, all of them wasted.",
    "The film runs two hours and feels like four.",
    "A love story without a single spark of love in it.",
    "Well made, well acted, and utterly forgettable.",
    "Fans of the book will be disappointed, and so will everyone else.",
    "The ending tries to be clever and ends up confusing.",
    "I laughed once, at the wrong moment.",
)
VOTERS = ("vader", "textblob", "afinn")


@pytest.fixture
def labeled_csv(tmp_path: Path) -> Path:
    target = tmp_path / "labeled_set.csv"
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "text"])
        rows = [("positive", t) for t in POSITIVE] + [("negative", t) for t in NEGATIVE]
        writer.writerows((i, label, text) for i, (label, text) in enumerate(rows))
    return target


def test_the_chat_token_rule_counts_messages_format_and_schema():
    counter = ChatTokenCounter(approximate_count)
    body = {
        "messages": [
            {"role": "system", "content": "Label it: a, b."},
            {"role": "user", "content": "great film"},
        ],
        "response_format": {"type": "json_schema"},
    }
    parts = counter.parts(body)
    assert parts["system"] == 7  # Label it : a , b .
    assert parts["user"] == 2
    assert parts["schema"] == approximate_count('{"type":"json_schema"}') == 9
    assert parts["chat format"] == 3 + 2 * (3 + 1)  # reply priming; 3 a message + its role
    assert counter.prompt(body) == 7 + 2 + 9 + 11
    request = RecordedRequest("/v1/chat/completions", {}, body)
    assert counter(request, '{"label": "positive"}') == (29, 9)


def test_tokens_add_up_and_scale_to_1000_rows():
    tokens = Tokens()
    request = RecordedRequest("/v1/chat/completions", {}, {})
    tokens.add(Exchange(request, 100, 10), 4, {"user": 60, "system": 40})
    tokens.add(Exchange(request, 50, 5), 2, {"user": 50})
    assert (tokens.requests, tokens.rows, tokens.prompt, tokens.completion) == (2, 6, 150, 15)
    assert tokens.parts == {"user": 110, "system": 40}
    assert tokens.per_1000(30) == pytest.approx((5000, 500, 5500))
    both = tokens + Tokens(1, 1, 10, 1, {"system": 10})
    assert (both.requests, both.total, both.parts["system"]) == (3, 176, 50)


@pytest.mark.slow
def test_baseline_sends_every_row_and_the_agent_far_fewer(labeled_csv, sandbox_kind):
    texts = [row["text"] for row in csv.DictReader(open(labeled_csv, encoding="utf-8"))]
    result = measure(
        labeled_csv,
        counter=approximate_count,
        tokenizer="words and punctuation",
        voters=VOTERS,
        min_agreement=1.0,
        judge_batch_size=4,
        sandbox=sandbox_kind,
    )
    counter = ChatTokenCounter(approximate_count)

    # (a): one request per row, zero shot, each carrying that row's text alone
    baseline = result.baseline
    assert baseline.tokens.requests == baseline.tokens.rows == len(texts) == result.rows == 30
    assert baseline.correct == len(texts)
    bodies = [request.body for request in baseline.requests]
    system = baseline_messages(TASK, LABELS, texts[0])[0].content
    assert all([m["role"] for m in b["messages"]] == ["system", "user"] for b in bodies)
    assert {b["messages"][0]["content"] for b in bodies} == {system}
    assert sorted(b["messages"][1]["content"] for b in bodies) == sorted(texts)
    assert baseline.tokens.prompt == sum(counter.prompt(b) for b in bodies)
    assert baseline.client == TokenUsage(baseline.tokens.prompt, baseline.tokens.completion)
    assert baseline.tokens.completion == len(texts) * approximate_count('{"label": "positive"}')

    # (b): the agent verifies the pilot's rows and rounds of rows chosen by expected gain,
    # within --max-verified (the agent's default, 30%: 9 of 30 rows); the judge sees each of
    # them exactly once, and every row it judged is labeled by it
    pipeline = result.pipeline
    assert pipeline.max_verified == Settings().max_verified == "30%"
    assert 0 < len(pipeline.disputed) < len(texts), "lexicons should disagree on some rows only"
    assert pipeline.rounds >= 1
    assert len(pipeline.judged) == len(set(pipeline.judged)) == pipeline.verification.rows
    assert 0 < pipeline.verification.rows <= 9 < len(texts)
    assert set(pipeline.judged) == pipeline.llm_labeled
    assert pipeline.verified == pytest.approx(pipeline.verification.rows / len(texts))
    assert pipeline.verification.requests < baseline.tokens.requests
    assert pipeline.planning.requests == 1
    ledger = pipeline.ledger
    assert (ledger["llm_calls"], ledger["prompt_tokens"], ledger["completion_tokens"]) == (
        pipeline.verification.requests,
        pipeline.verification.prompt,
        pipeline.verification.completion,
    )
    # far fewer tokens than the per-row baseline, planning included
    assert pipeline.total.total < baseline.tokens.total / 2

    # the rerun over the same data takes every verdict, and the plan, from the LLM cache
    assert result.rerun is not None
    assert result.rerun.verification.total == result.rerun.verification.requests == 0
    assert result.rerun.planning.total == result.rerun.planning.requests == 0

    spent = pipeline.planning.total + pipeline.verification.total
    assert pipeline.total.total == spent
    assert result.reduction == pytest.approx(1 - spent / baseline.tokens.total)
    assert result.verification_reduction == pytest.approx(
        1 - pipeline.verification.total / baseline.tokens.total
    )
    schemas = pipeline.total.parts["schema"], baseline.tokens.parts["schema"]
    assert result.messages_only_reduction == pytest.approx(
        1 - (spent - schemas[0]) / (baseline.tokens.total - schemas[1])
    )
