"""What verification will cost, what it did cost, and when to stop paying.

* :func:`estimate_verification`: after the pilot, the expected escalated rows,
  LLM calls, tokens and dollars, from the judge's real prompt rendered on the
  pilot's own disagreement rows.
* :func:`confirm_spending`: asks before an expected cost over ``--budget-usd``
  (skipped with ``--yes``; without a terminal to ask on, the run stops).
* :class:`Ledger`: ``ledger.jsonl``, one line per LLM call (tokens from the
  response's usage, cost, latency, outcome).
* :class:`SpendingCap`: the hard cap ``--max-cost-usd``: a call is refused when
  what was spent, plus the calls in flight, plus this call's estimate would pass it.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from agent.context import Reporter, RunContext
from agent.dataset import cell_text
from agent.errors import UserInputError
from agent.llm.client import Message, TokenUsage
from agent.llm.pricing import Price, price_for
from agent.settings import Settings
from agent.state import RunState, TaskPlan
from agent.verification.judge import CallRecord, judge_messages

CHARS_PER_TOKEN = 4
"""Tokens are estimated from the characters of the messages as sent (JSON)."""
ESTIMATE_FILE = "cost_estimate.json"


def usd(amount: float) -> str:
    """Dollars: cents, or down to a millionth for the small sums of small runs."""
    if amount >= 1 or amount == 0:
        return f"${amount:.2f}"
    whole, fraction = f"{amount:.6f}".rstrip("0").split(".")
    return f"${whole}.{fraction.ljust(2, '0')}"


class OverBudgetError(UserInputError):
    """The expected cost passes ``--budget-usd`` and nobody agreed to it."""


def estimate_tokens(messages: Sequence[Message]) -> int:
    """Prompt tokens of a request: about four characters per token of the JSON sent."""
    sent = json.dumps([{"role": m.role, "content": m.content} for m in messages])
    return max(1, len(sent) // CHARS_PER_TOKEN)


def completion_tokens(plan: TaskPlan, rows: int, calls: int = 1) -> int:
    """Expected answer tokens of ``calls`` answers holding ``rows`` verdicts in all: each
    answer ``{"labels": {"0": "label", ...}}``, reasons only with abstentions."""
    longest = max(plan.label_names, key=len)
    verdict = json.dumps({"00": longest})[1:-1]  # '"00": "label"', for ids of two digits
    chars = calls * len(json.dumps({"labels": {}})) + rows * (len(verdict) + 2)
    return chars // CHARS_PER_TOKEN


@dataclass(frozen=True)
class CostEstimate:
    model: str
    escalated_rows: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    price_known: bool
    batch: bool = False
    """Priced at the Batch API rate (``--llm-batch``)."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def line(self) -> str:
        cost = usd(self.cost_usd) if self.price_known else "cost unknown (no price)"
        if self.batch and self.price_known:
            cost += " at the Batch API rate"
        return (
            f"expected LLM verification: {self.escalated_rows} rows in {self.llm_calls} calls, "
            f"~{self.tokens} tokens ({self.prompt_tokens} prompt + {self.completion_tokens} "
            f"completion), {cost} with {self.model}"
        )


def estimate_verification(
    plan: TaskPlan,
    pilot_records: Sequence[dict[str, Any]],
    escalated_rows: int,
    batch_size: int,
    model: str,
    price: Price,
) -> CostEstimate:
    """Scale the pilot's disagreement rows, rendered into the judge's prompt, to the run.

    A request costs the instructions once plus its items: the fixed part is the
    prompt rendered with no item, the per-row part the pilot items' average.
    """
    calls = math.ceil(escalated_rows / batch_size)
    fixed = estimate_tokens(judge_messages(plan, []))
    per_row = 0.0
    if pilot_records:
        full = estimate_tokens(judge_messages(plan, pilot_records))
        per_row = (full - fixed) / len(pilot_records)
    prompt = round(calls * fixed + escalated_rows * per_row)
    completion = completion_tokens(plan, escalated_rows, calls)
    cost = price.cost(TokenUsage(prompt, completion))
    return CostEstimate(model, escalated_rows, calls, prompt, completion, cost, price.known)


def save_estimate(estimate: CostEstimate, run_dir: Path) -> None:
    (run_dir / ESTIMATE_FILE).write_text(json.dumps(asdict(estimate), indent=2) + "\n")


def check_verification_cost(
    state: RunState,
    context: RunContext,
    pilot_texts: Sequence[str],
    pilot_votes: Mapping[str, Sequence[str]],
    disagreement_rate: float,
    already_verified: int = 0,
) -> CostEstimate | None:
    """After the pilot: print what LLM verification is expected to cost, and ask if over budget.

    The rounds verify rows until ``--max-verified`` is spent (or the target is met first):
    the rows expected are what the budget leaves once the pilot's ``already_verified`` rows
    are counted; without a budget, the expected disagreements. The tokens per row come from
    the judge's prompt on the pilot's disputed rows (all pilot rows if none is disputed)."""
    settings = context.settings
    if context.llm is None or settings.resolved_verifier() != "llm":
        return None
    price = price_for(context.llm.model_name, settings.llm_prices)
    batch = context.batch is not None
    if batch:
        price = price.batch_rate()
    records = pilot_disagreements(pilot_texts, pilot_votes, settings.min_agreement)
    if not records:
        records = [{"text": cell_text(t), "votes": {}} for t in pilot_texts]
    limit = settings.verification_limit(state.dataset.rows)
    if limit is None:
        expected = round(disagreement_rate * state.dataset.rows)
    else:
        expected = max(limit - already_verified, 0)
    estimate = estimate_verification(
        state.plan,
        records,
        expected,
        settings.judge_batch_size,
        context.llm.model_name,
        price,
    )
    estimate = replace(estimate, batch=batch)
    context.reporter.info(estimate.line())
    save_estimate(estimate, Path(state.run_dir))
    confirm_spending(estimate, settings, lambda question: terminal_ask(question, context.reporter))
    return estimate


def pilot_disagreements(
    texts: Sequence[str], votes: Mapping[str, Sequence[str]], min_agreement: float
) -> list[dict[str, Any]]:
    """The pilot rows the voters disagree on, shaped like ``disagreements.jsonl`` records."""
    records = []
    for row, text in enumerate(texts):
        row_votes = {name: labels[row] for name, labels in votes.items()}
        if not row_votes:
            continue
        top = Counter(row_votes.values()).most_common(1)[0][1]
        if round(top / len(row_votes), 6) < min_agreement:
            records.append({"text": cell_text(text), "votes": row_votes})
    return records


def terminal_ask(question: str, reporter: Reporter | None = None) -> bool | None:
    """Ask on the terminal; None when there is none to ask on."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None
    import click

    if reporter is not None:
        reporter.stage("confirm_spending")  # ends any live progress display first
    return click.confirm(question, default=False, err=True)


def confirm_spending(
    estimate: CostEstimate,
    settings: Settings,
    ask: Callable[[str], bool | None] = terminal_ask,
) -> None:
    """Go on, or stop with :class:`OverBudgetError` when the cost passes the budget."""
    budget = settings.budget_usd
    if settings.yes or budget is None or estimate.cost_usd <= budget:
        return
    over = f"expected LLM cost {usd(estimate.cost_usd)} is over --budget-usd {usd(budget)}"
    answer = ask(f"{over}; spend it?")
    if answer is None:
        raise OverBudgetError(
            f"{over} and there is no terminal to ask: pass --yes, raise --budget-usd, "
            "or cap spending with --max-cost-usd"
        )
    if not answer:
        raise OverBudgetError(f"{over}; not confirmed")


class Ledger:
    """``ledger.jsonl`` in the run folder: every LLM call, appended as it ends."""

    def __init__(self, path: Path, model: str, price: Price) -> None:
        self.path = path
        self.model = model
        self.price = price
        self._lock = threading.Lock()

    def record(self, call: CallRecord) -> None:
        entry = {
            "time": round(time.time(), 3),
            "model": self.model,
            "rows": call.rows,
            "prompt_tokens": call.usage.prompt_tokens,
            "completion_tokens": call.usage.completion_tokens,
            "cost_usd": round(self.price.cost(call.usage), 8),
            "latency_s": round(call.latency_s, 3),
            "outcome": call.outcome,
            "method": call.method,
            "normalized": call.normalized,
        }
        if call.batch:
            entry["batch"] = call.batch
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")


def ledger_totals(path: Path) -> dict[str, Any]:
    """Calls, tokens and dollars of every LLM call a run made (both sides of a resume)."""
    entries = []
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        # a last line without its newline was torn by a crash mid-write
        entries = [json.loads(line) for line in lines if line.endswith("\n") and line.strip()]
    return {
        "llm_calls": len(entries),
        "prompt_tokens": sum(e["prompt_tokens"] for e in entries),
        "completion_tokens": sum(e["completion_tokens"] for e in entries),
        "cost_usd": round(sum(e["cost_usd"] for e in entries), 6),
    }


class SpendingCap:
    """A :class:`~agent.verification.judge.CallGate` keeping the LLM cost under ``limit_usd``.

    Calls run concurrently, so each one reserves its estimated cost on admission
    and settles the actual cost when it ends.
    """

    def __init__(self, limit_usd: float | None, plan: TaskPlan, price: Price, spent_usd: float):
        self.limit_usd = limit_usd
        self.plan = plan
        self.price = price
        self.spent_usd = spent_usd
        self.refused = 0
        """Calls refused so far."""
        self._reserved = 0.0
        self._lock = threading.Lock()

    def admit(self, messages: Sequence[Message], rows: int) -> float | None:
        expected = self.price.cost(
            TokenUsage(estimate_tokens(messages), completion_tokens(self.plan, rows))
        )
        with self._lock:
            if self.limit_usd is not None:
                if self.spent_usd + self._reserved + expected > self.limit_usd:
                    self.refused += 1
                    return None
            self._reserved += expected
        return expected

    def admit_batch(
        self, requests: Sequence[tuple[Sequence[Message], int]], price: Price
    ) -> float | None:
        """One reservation for every request of a Batch API job at ``price`` (all or none: a
        batch is paid for as it runs, past any cap), or None to refuse the whole batch."""
        expected = sum(
            price.cost(TokenUsage(estimate_tokens(messages), completion_tokens(self.plan, rows)))
            for messages, rows in requests
        )
        with self._lock:
            if self.limit_usd is not None:
                if self.spent_usd + self._reserved + expected > self.limit_usd:
                    self.refused += len(requests)
                    return None
            self._reserved += expected
        return expected

    def settle(self, reservation: float, usage: TokenUsage, price: Price | None = None) -> None:
        with self._lock:
            self._reserved -= reservation
            self.spent_usd += (price or self.price).cost(usage)


LEDGER_FILE = "ledger.jsonl"
