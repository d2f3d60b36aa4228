"""Cost control: the estimate after the pilot, asking before spending, the ledger."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from agent.cli import main
from agent.llm.pricing import price_for
from agent.settings import Settings
from agent.verification.costs import (
    CostEstimate,
    OverBudgetError,
    confirm_spending,
    estimate_verification,
    pilot_disagreements,
)
from agent.verification.store import read_jsonl
from tests.support.openai_server import RecordedRequest, ScriptedOpenAI
from tests.test_verify_judge import (
    PLAN,
    RUDE_WORDS,
    VOTES,
    items_of,
    make_settings,
    make_state,
    verify,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PLAN_PROPOSAL = {
    "family": "toxicity",
    "labels": [
        {"name": "non-toxic", "description": "civil text"},
        {"name": "toxic", "description": "insults, threats or slurs"},
    ],
    "text_column": "text",
    "search_queries": ["toxic comment"],
    "language": "en",
}
TOXIC_WORDS = RUDE_WORDS + ("stupid", "dumb", "loser", "hate", "garbage", "shut", "pathetic")


def realistic_judge(request: RecordedRequest) -> dict:
    """Answers like a real model told to give reasons only when it abstains: a label per item."""
    if request.body["response_format"]["json_schema"]["name"] == "PlanProposal":
        return PLAN_PROPOSAL
    labels = {}
    for item in items_of(request):
        words = [word for word in TOXIC_WORDS if word in item["text"].lower()]
        labels[item["id"]] = "toxic" if words else "non-toxic"
    return {"labels": labels}


def example_texts() -> list[str]:
    lines = (EXAMPLES / "tweets.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split(",", 1)[1].strip('"') for line in lines]


def within(estimate: int, actual: int, tolerance: float = 0.2) -> bool:
    return abs(estimate - actual) <= tolerance * actual


def test_the_estimate_scaled_from_pilot_rows_is_within_20_percent_of_the_ledger(
    tmp_path, scripted_llm
):
    texts = example_texts()
    pilot = [{"text": text, "votes": VOTES} for text in texts[::4]]
    price = price_for("gpt-4o-mini")
    estimate = estimate_verification(PLAN, pilot, len(texts), 10, "gpt-4o-mini", price)

    scripted_llm.respond_with(realistic_judge)
    settings = make_settings(tmp_path, judge_batch_size=10)
    result, _, _ = verify(make_state(tmp_path, texts), settings, scripted_llm)

    assert estimate.llm_calls == result.llm_calls == math.ceil(len(texts) / 10)
    actual = result.prompt_tokens + result.completion_tokens
    assert within(estimate.tokens, actual), (estimate, actual)
    assert within(estimate.prompt_tokens, result.prompt_tokens)
    assert estimate.cost_usd == pytest.approx(result.cost_usd, rel=0.2)


def test_pilot_disagreements_follow_the_min_agreement_rule():
    votes = {"a": ["x", "x", "y"], "b": ["x", "y", "z"], "c": ["x", "y", "w"]}
    texts = ["one", "two", "three"]
    assert [r["text"] for r in pilot_disagreements(texts, votes, 1.0)] == ["two", "three"]
    assert [r["text"] for r in pilot_disagreements(texts, votes, 0.5)] == ["three"]
    assert pilot_disagreements(texts, votes, 1.0)[0]["votes"] == {"a": "x", "b": "y", "c": "y"}


def sum_rows(calls: list[dict]) -> int:
    return sum(call["rows"] for call in calls)


ESTIMATE = CostEstimate("gpt-4o-mini", 500, 50, 60_000, 9_000, 2.0, True)


def test_spending_under_the_budget_or_with_yes_asks_nothing():
    def never(question: str) -> bool:
        raise AssertionError("asked")

    confirm_spending(ESTIMATE, Settings(budget_usd=5.0), never)
    confirm_spending(ESTIMATE, Settings(budget_usd=1.0, yes=True), never)
    confirm_spending(ESTIMATE, Settings(budget_usd=None), never)


def test_spending_over_the_budget_is_asked_about_on_a_terminal():
    questions: list[str] = []
    confirm_spending(ESTIMATE, Settings(budget_usd=1.0), lambda q: questions.append(q) or True)
    assert questions == ["expected LLM cost $2.00 is over --budget-usd $1.00; spend it?"]
    with pytest.raises(OverBudgetError, match="not confirmed"):
        confirm_spending(ESTIMATE, Settings(budget_usd=1.0), lambda q: False)


def test_spending_over_the_budget_without_a_terminal_stops_with_what_to_do():
    with pytest.raises(OverBudgetError, match="no terminal to ask: pass --yes") as stopped:
        confirm_spending(ESTIMATE, Settings(budget_usd=1.0), lambda q: None)
    assert stopped.value.exit_code == 2


@pytest.mark.slow
def test_cli_stops_over_budget_after_the_pilot_then_resumes_and_spends_as_estimated(
    tmp_path, tweets_csv, toxic_voters, scripted_llm: ScriptedOpenAI, monkeypatch, capsys
):
    """The pilot's verification is priced and refused first; resumed with --yes, the pilot is
    verified and the rounds spend what gate_cost estimated for the budget left."""
    scripted_llm.respond_with(realistic_judge)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
    monkeypatch.chdir(tmp_path)
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", "none"]
    args += ["--llm-base-url", scripted_llm.url, "--out", "out", "--budget-usd", "0.00001"]
    args += ["--verdict-cache", str(tmp_path / "verdicts.sqlite")]
    for path in toxic_voters.values():
        args += ["--model", str(path)]

    assert main(args) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "over --budget-usd $0.00001" in errors[0], errors
    assert "--yes" in errors[0]
    assert len(scripted_llm.completions) == 1  # the planner only: no row was sent
    run_id = re.search(r"--resume (\S+?)\]", errors[0]).group(1)

    assert main(["--resume", run_id, "--yes"]) == 0
    printed = " ".join(capsys.readouterr().err.split())
    run_dir = tmp_path / ".autoannotator" / "runs" / run_id
    pilot_rows = len(list(read_jsonl(run_dir / "pilot" / "verdicts.jsonl")))
    assert f"verifying {pilot_rows} pilot rows" in printed  # the pilot's own estimate
    # The saved estimate prices the rounds: the verification budget left after the pilot.
    estimate = json.loads((run_dir / "cost_estimate.json").read_text())
    assert f"~{estimate['prompt_tokens'] + estimate['completion_tokens']} tokens" in printed
    assert f"{estimate['escalated_rows']} rows in {estimate['llm_calls']} calls" in printed
    calls = list(read_jsonl(run_dir / "ledger.jsonl"))
    pilot_calls = next(n for n in range(len(calls) + 1) if sum_rows(calls[:n]) >= pilot_rows)
    assert sum_rows(calls[:pilot_calls]) == pilot_rows > 0
    rounds = calls[pilot_calls:]
    actual = sum(c["prompt_tokens"] + c["completion_tokens"] for c in rounds)
    assert estimate["escalated_rows"] == sum_rows(rounds) > 0
    assert estimate["llm_calls"] == len(rounds)
    assert within(estimate["prompt_tokens"] + estimate["completion_tokens"], actual)


@pytest.mark.slow
def test_the_estimate_and_the_spending_stop_at_the_verification_budget(
    tmp_path, tweets_csv, toxic_voters, scripted_llm: ScriptedOpenAI, monkeypatch
):
    scripted_llm.respond_with(realistic_judge)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key-000000000000")
    monkeypatch.chdir(tmp_path)
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", "none"]
    args += ["--llm-base-url", scripted_llm.url, "--out", "out", "--yes", "--max-verified", "3"]
    args += ["--verdict-cache", str(tmp_path / "verdicts.sqlite"), "--no-learn-vote"]
    for path in toxic_voters.values():
        args += ["--model", str(path)]
    assert main(args) == 0
    (run_dir,) = (tmp_path / ".autoannotator" / "runs").iterdir()
    estimate = json.loads((run_dir / "cost_estimate.json").read_text())
    assert 0 < estimate["escalated_rows"] <= 3
    judged = sum(c["rows"] for c in read_jsonl(run_dir / "ledger.jsonl"))
    assert 0 < judged <= 3
