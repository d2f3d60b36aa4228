"""Verifying pilot rows, so candidates are scored against answers and not only each other.

Leave-one-out consensus rewards a candidate for agreeing with the others, right or wrong.
When a verifier is at hand, pilot rows are verified first, by the machinery that later
settles the disagreements, on a bounded, reproducible uniform sample (``--pilot-verify``,
50 by default): a column of the data (``--verifier column:NAME``: in the benchmarks it
stands for a person, whose every verified row is effort, so it answers for the same sample),
or the LLM judge, batched and validated, priced and confirmed against ``--budget-usd``,
recorded in the run's ledger under the ``--max-cost-usd`` cap, and written to the verdict
cache. The judge is not shown the candidates' votes, so its answer cannot lean on their
consensus.

The verified pilot rows are not thrown away after scoring: :func:`keep_verified` appends
them to the run's ``verdicts.jsonl``, so they are applied to the labeled data, count as
verified (and against ``--max-verified``), teach the heads and the learned vote, and are
never put to a verifier again when the full run disputes them.

Paid verification is spent only where it decides something: choosing among discovered
candidates, or mapping opaque labels. A person (``--verifier human``) cannot answer during
the pilot and ``none`` verifies nothing: the consensus decides then.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.context import RunContext
from agent.discovery.label_names import all_opaque
from agent.errors import UserInputError
from agent.llm.pricing import price_for
from agent.state import Candidate, DatasetInfo, TaskPlan
from agent.verification.cache import VerdictCache, cache_namespace, text_key
from agent.verification.costs import (
    LEDGER_FILE,
    Ledger,
    SpendingCap,
    confirm_spending,
    estimate_verification,
    ledger_totals,
    terminal_ask,
    usd,
)
from agent.verification.judge import Judge, Verdict, judge_prompt_id
from agent.verification.store import (
    VERDICTS_FILE,
    VERIFIED_SOURCES,
    append_verdicts,
    drop_torn_tail,
    latest_verdicts,
    read_jsonl,
)


@dataclass(frozen=True)
class PilotVerdicts:
    """Verified labels of the pilot rows, by position in the pilot sample."""

    verifier: str
    """``llm:<model>`` or ``column:NAME``."""
    labels: list[str | None]
    """One per pilot row: the verified label, or None (not sampled, abstained, unresolved)."""
    asked: int
    """Pilot rows put to the verifier."""
    path: str
    """JSON Lines of the verdicts (dataset row, pilot row, label, source, reason)."""

    @property
    def verified(self) -> int:
        return sum(label is not None for label in self.labels)


def pilot_verifier(context: RunContext, candidates: Sequence[Candidate]) -> str | None:
    """Who verifies pilot rows in this run (``llm`` or ``column:NAME``), or None, with the
    reason the consensus decides instead reported by :func:`why_unverified`."""
    settings = context.settings
    verifier = settings.resolved_verifier()
    if settings.pilot_verify_rows == 0:
        return None
    if verifier.startswith("column:"):
        return verifier
    if verifier != "llm" or context.llm is None:
        return None
    if settings.models and not any(all_opaque(c.model_labels) for c in candidates):
        return None  # every named voter is kept and its labels are named: nothing to decide
    return "llm"


def why_unverified(context: RunContext) -> str:
    """Why no pilot row was put to a verifier, for the run log and the model card."""
    settings = context.settings
    verifier = settings.resolved_verifier()
    if settings.pilot_verify_rows == 0:
        return "--pilot-verify 0"
    if verifier == "none":
        return "--verifier none"
    if verifier == "human" and settings.verifier is not None:
        return "a person verifies only after the run (--verifier human)"
    if context.llm is None:
        return "no LLM endpoint" + (" (--offline)" if settings.offline else "")
    return "none of the named voters has opaque labels"


def verify_pilot(
    verifier: str,
    sample: Sequence[tuple[int, dict[str, Any]]],
    plan: TaskPlan,
    dataset: DatasetInfo,
    run_dir: Path,
    context: RunContext,
) -> PilotVerdicts:
    """Verify a reproducible uniform sample of ``--pilot-verify`` pilot rows (``sample``:
    dataset row number and row, in pilot order), the same sample whoever verifies."""
    positions = _sampled(len(sample), context.settings.pilot_verify_rows, dataset.sha256)
    if verifier.startswith("column:"):
        column = verifier.split(":", 1)[1]
        verdicts = _from_column(column, {pos: sample[pos][1] for pos in positions}, plan, dataset)
        name = verifier
    else:
        texts = {pos: _text(sample[pos][1].get(plan.text_column)) for pos in positions}
        verdicts = _from_llm(texts, plan, run_dir, context)
        name = f"llm:{context.llm.model_name}"
    path = run_dir / "pilot" / VERDICTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as sink:
        for verdict in verdicts:
            record = {"row": sample[verdict.row][0], "pilot_row": verdict.row}
            record |= {"label": verdict.label, "source": verdict.source, "reason": verdict.reason}
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    labels: list[str | None] = [None] * len(sample)
    for verdict in verdicts:
        labels[verdict.row] = verdict.label
    return PilotVerdicts(name, labels, len(verdicts), str(path))


def keep_verified(pilot: PilotVerdicts, run_dir: Path) -> int:
    """Append the pilot's verified rows (an LLM's or a person's label) to the run's
    ``verdicts.jsonl``, leaving out rows already there (a resumed pilot adds nothing twice).
    Returns the rows appended."""
    target = run_dir / VERDICTS_FILE
    drop_torn_tail(target)
    present = latest_verdicts(target)
    kept = []
    for record in read_jsonl(Path(pilot.path)):
        row = record["row"]
        if record["source"] not in VERIFIED_SOURCES or record["label"] is None or row in present:
            continue
        present[row] = record
        reason = f"pilot: {record['reason']}" if record["reason"] else "pilot"
        kept.append(Verdict(row, record["label"], record["source"], reason))
    if kept:
        with open(target, "a", encoding="utf-8") as sink:
            append_verdicts(sink, kept)
    return len(kept)


def _sampled(rows: int, wanted: int, seed: str) -> list[int]:
    """A reproducible uniform sample of pilot positions: accuracy on it estimates accuracy."""
    return sorted(random.Random(f"pilot-verify:{seed}").sample(range(rows), min(rows, wanted)))


def _from_column(
    column: str, rows: dict[int, dict[str, Any]], plan: TaskPlan, dataset: DatasetInfo
) -> list[Verdict]:
    """Verdicts for the pilot rows ``rows`` (pilot position -> row) from a data column."""
    if column not in dataset.columns:
        raise UserInputError(
            f"--verifier column:{column}: no such column; columns are {list(dataset.columns)}"
        )
    labels = set(plan.label_names)
    verdicts = []
    for position, row in rows.items():
        answer = _text(row.get(column)).strip()
        if answer in labels:
            verdicts.append(Verdict(position, answer, "human", f"from column {column}"))
        else:
            reason = f"column {column} holds {answer!r}"
            verdicts.append(Verdict(position, None, "unresolved", reason))
    return verdicts


def _from_llm(
    texts: dict[int, str], plan: TaskPlan, run_dir: Path, context: RunContext
) -> list[Verdict]:
    settings, llm, reporter = context.settings, context.llm, context.reporter
    cache = _open_cache(settings.verdict_cache, context, plan)
    try:
        cached = cache.get_many(texts.values()) if cache else {}
        to_ask: dict[str, int] = {}  # one position per distinct text not in the cache
        for position, text in texts.items():
            if text_key(text) not in cached:
                to_ask.setdefault(text_key(text), position)
        records = [{"row": pos, "text": texts[pos], "votes": {}} for pos in to_ask.values()]
        price = price_for(llm.model_name, settings.llm_prices)
        estimate = estimate_verification(
            plan, records, len(records), settings.judge_batch_size, llm.model_name, price
        )
        cost = usd(estimate.cost_usd) if price.known else "cost unknown"
        reporter.info(
            f"verifying {len(texts)} pilot rows to score the candidates: "
            f"{len(texts) - len(records)} from the verdict cache, {len(records)} to ask in "
            f"{estimate.llm_calls} LLM calls (~{estimate.tokens} tokens, {cost})"
        )
        confirm_spending(estimate, settings, lambda question: terminal_ask(question, reporter))
        answers = _judge(records, plan, run_dir, context, cache)
    finally:
        if cache is not None:
            cache.close()
    verdicts = []
    for position, text in texts.items():
        key = text_key(text)
        if key in cached:
            label, reason = cached[key]
            verdicts.append(Verdict(position, label, "llm", f"{reason} (cached)"))
        else:
            answer = answers[key]
            verdicts.append(Verdict(position, answer.label, answer.source, answer.reason))
    return verdicts


def _judge(
    records: list[dict[str, Any]],
    plan: TaskPlan,
    run_dir: Path,
    context: RunContext,
    cache: VerdictCache | None,
) -> dict[str, Verdict]:
    """Verdicts by text key; every valid one goes to the cache as its batch ends."""
    settings, llm = context.settings, context.llm
    ledger_path = run_dir / LEDGER_FILE
    drop_torn_tail(ledger_path)
    price = price_for(llm.model_name, settings.llm_prices)
    ledger = Ledger(ledger_path, llm.model_name, price)
    cap = SpendingCap(settings.max_cost_usd, plan, price, ledger_totals(ledger_path)["cost_usd"])
    judge = Judge(llm, plan, settings.judge_batch_size, on_call=ledger.record, gate=cap)
    size = settings.judge_batch_size
    batches = [records[start : start + size] for start in range(0, len(records), size)]

    def judge_batch(batch: list[dict[str, Any]]) -> list[Verdict]:
        verdicts = judge.judge(batch)
        if cache is not None:
            answered = zip(batch, verdicts, strict=True)
            cache.put_many((r["text"], v.label, v.reason) for r, v in answered if v.label)
        return verdicts

    with ThreadPoolExecutor(settings.llm_concurrency, thread_name_prefix="pilot") as pool:
        judged = list(pool.map(judge_batch, batches))
    if cap.refused:
        context.reporter.warn(
            f"spending cap {usd(settings.max_cost_usd)} reached while verifying pilot rows: "
            f"{cap.refused} LLM requests not sent"
        )
    return {
        text_key(record["text"]): verdict
        for batch, verdicts in zip(batches, judged, strict=True)
        for record, verdict in zip(batch, verdicts, strict=True)
    }


def _open_cache(path: Path, context: RunContext, plan: TaskPlan) -> VerdictCache | None:
    """The verdict cache under the namespace verify_disagreements uses, so verdicts carry over."""
    llm = context.llm
    namespace = cache_namespace(
        getattr(llm, "base_url", None), llm.model_name, judge_prompt_id(plan), plan.label_names
    )
    try:
        return VerdictCache(Path(path).expanduser(), namespace)
    except (OSError, sqlite3.Error) as error:
        context.reporter.warn(f"verdict cache {path} unusable ({error}); verifying without it")
        return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)
