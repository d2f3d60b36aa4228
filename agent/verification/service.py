"""Judging rows with the LLM: the one implementation the pilot and verification share.

:func:`judge_rows` takes records (a row id and its text) and gives their verdicts:

* the price of the model is looked up once; an unknown price is warned about once, the
  same way for every caller: its cost shows as 0 and no spending cap is enforced;
* every call goes to the run's ledger (``ledger.jsonl``) and through the ``--max-cost-usd``
  cap, counted from what the run spent before;
* the verdict cache answers what it can, and every valid verdict goes into it as soon as
  its batch ends, so a crash before the caller keeps the verdicts loses nothing paid for;
* identical texts are asked once, and their verdict copied to every row holding them;
* batches of ``judge_batch_size`` rows are judged ``llm_concurrency`` at a time, and handed
  back in order as each is ready (cache hits first);
* or, given a batch record (``--llm-batch``), all of them go as one OpenAI Batch API job
  priced at the batch rate (:mod:`agent.verification.batch_round`).

The caller says what to announce before anything is asked (and may stop there, e.g. when
the expected cost is refused), and what to do with each handful of verdicts.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.context import RunContext
from agent.llm.negotiation import METHODS
from agent.llm.pricing import Price, price_for
from agent.state import TaskPlan
from agent.verification.batch_round import judge_in_one_batch
from agent.verification.cache import VerdictCache, cache_namespace, text_key
from agent.verification.costs import LEDGER_FILE, Ledger, SpendingCap, ledger_totals
from agent.verification.judge import Judge, Verdict, judge_instructions
from agent.verification.store import drop_torn_tail


@dataclass(frozen=True)
class JudgingPlan:
    """What :func:`judge_rows` will do, known before anything is asked."""

    cached: int
    """Rows answered by the verdict cache."""
    to_ask: list[dict[str, Any]]
    """Records to put to the LLM, one per distinct text."""
    calls: int
    """LLM requests they take (batches)."""
    price: Price


@dataclass(frozen=True)
class JudgingOutcome:
    refused: int
    """LLM requests the spending cap refused (their rows are ``unresolved``)."""
    spent_usd: float
    """What the run has spent on LLM calls in all, this pass included."""


def judge_rows(
    records: Sequence[dict[str, Any]],
    plan: TaskPlan,
    run_dir: Path,
    context: RunContext,
    announce: Callable[[JudgingPlan], None],
    keep: Callable[[list[Verdict]], None],
    progress: str | None = None,
    batch_record: Path | None = None,
) -> JudgingOutcome:
    """Verdicts for ``records`` (each with ``row`` and ``text``), handed to ``keep`` a batch at
    a time: first the cache's, then each LLM batch's in order with the rows sharing its texts.

    ``announce`` is called once the cache has answered and before any request is sent;
    ``progress`` names the progress display, if one is shown. With ``batch_record`` (where the
    pass's batch is kept) and a Batch API in ``context``, the rows to ask go as one batch."""
    price = _price(context)
    cache = open_verdict_cache(context, plan)
    try:
        cached = cache.get_many(r["text"] for r in records) if cache else {}
        to_ask, twins, hits = split_by_text(records, cached)
        size = context.settings.judge_batch_size
        batches = [to_ask[start : start + size] for start in range(0, len(to_ask), size)]
        if context.batch is None:
            batch_record = None
        shown = price.batch_rate() if batch_record is not None else price
        announce(JudgingPlan(len(hits), to_ask, len(batches), shown))
        keep(hits)
        asking = _Asking(plan, run_dir, context, price, cache, keep, progress)
        cap = asking.ask(batches, twins, len(to_ask), batch_record)
    finally:
        if cache is not None:
            cache.close()
    return JudgingOutcome(cap.refused, cap.spent_usd)


def _price(context: RunContext) -> Price:
    """The model's price; an unknown one is said once, the same way for every caller."""
    llm = context.llm
    price = price_for(llm.model_name, context.settings.llm_prices)
    if not price.known:
        context.reporter.warn(
            f"no price known for {llm.model_name}: cost shown as 0, no cap enforced"
        )
    return price


@dataclass
class _Asking:
    """Putting the rows the cache could not answer to the LLM, under the run's ledger and cap."""

    plan: TaskPlan
    run_dir: Path
    context: RunContext
    price: Price
    cache: RunVerdictCache | None
    keep: Callable[[list[Verdict]], None]
    progress: str | None

    def remember(self, batch: list[dict[str, Any]], verdicts: list[Verdict]) -> list[Verdict]:
        if self.cache is not None:  # now: a crash before ``keep`` then loses nothing
            answers = zip(batch, verdicts, strict=True)
            self.cache.put_many((r["text"], v.label, v.reason) for r, v in answers if v.label)
        return verdicts

    def ask(
        self,
        batches: list[list[dict[str, Any]]],
        twins: dict[str, list[int]],
        rows: int,
        batch_record: Path | None,
    ) -> SpendingCap:
        """Judge ``batches`` (one Batch API job first when ``batch_record`` is given; what it
        could not settle synchronously after), handing verdicts over in order."""
        llm, context = self.context.llm, self.context
        ledger_path = self.run_dir / LEDGER_FILE
        drop_torn_tail(ledger_path)
        ledger = Ledger(ledger_path, llm.model_name, self.price)
        spent = ledger_totals(ledger_path)["cost_usd"]
        cap = SpendingCap(context.settings.max_cost_usd, self.plan, self.price, spent)
        size = context.settings.judge_batch_size
        judge = Judge(llm, self.plan, size, on_call=ledger.record, gate=cap)
        if batch_record is not None and batches:
            counter = _HandOver(twins, self.keep, context, self.progress, rows)
            batches = judge_in_one_batch(
                batches,
                judge,
                context.batch,
                batch_record,
                cap,
                Ledger(ledger_path, llm.model_name, self.price.batch_rate()),
                context.reporter,
                lambda batch, verdicts: counter(batch, self.remember(batch, verdicts)),
            )

        def judge_batch(batch: list[dict[str, Any]]) -> list[Verdict]:
            return self.remember(batch, judge.judge(batch))

        _judge_in_order(batches, judge_batch, twins, self.keep, context, self.progress)
        return cap


def split_by_text(
    records: Sequence[dict[str, Any]], cached: dict[str, tuple[str, str]]
) -> tuple[list[dict[str, Any]], dict[str, list[int]], list[Verdict]]:
    """Records to ask (the first of each distinct text), the other rows sharing a text with
    one asked, and the verdicts of the rows the cache answered."""
    to_ask: dict[str, dict[str, Any]] = {}
    twins: dict[str, list[int]] = defaultdict(list)
    hits = []
    for record in records:
        key = text_key(record["text"])
        if key in cached:
            label, reason = cached[key]
            hits.append(Verdict(record["row"], label, "llm", f"{reason} (cached)"))
        elif key in to_ask:
            twins[key].append(record["row"])
        else:
            to_ask[key] = record
    return list(to_ask.values()), twins, hits


class _HandOver:
    """Hands a batch's verdicts, and copies for the rows sharing its texts, to ``keep``."""

    def __init__(self, twins, keep, context: RunContext, progress: str | None, total: int):
        self.twins, self.keep, self.context = twins, keep, context
        self.progress, self.total, self.done = progress, total, 0

    def __call__(self, batch: list[dict[str, Any]], verdicts: list[Verdict]) -> None:
        copies = [
            Verdict(row, v.label, v.source, v.reason)
            for record, v in zip(batch, verdicts, strict=True)
            for row in self.twins.get(text_key(record["text"]), ())
        ]
        self.keep([*verdicts, *copies])
        self.done += len(batch)
        if self.progress is not None:
            self.context.reporter.progress(self.progress, self.done, self.total)


def _judge_in_order(batches, judge_batch, twins, keep, context: RunContext, progress):
    """Judge batches concurrently; hand each batch's verdicts to ``keep`` in order."""
    if not batches:
        return
    hand_over = _HandOver(twins, keep, context, progress, sum(len(batch) for batch in batches))
    workers = context.settings.llm_concurrency
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
        futures = [pool.submit(judge_batch, batch) for batch in batches]
        try:
            for batch, future in zip(batches, futures, strict=True):
                hand_over(batch, future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@dataclass
class RunVerdictCache:
    """The verdict cache as this run's judge uses it: keyed on the run's endpoint, model and
    instructions, and on the structured-output method in use at each call: a lookup before
    any call is made uses the method the client will try first, a store the one that got
    the answers (negotiated by then)."""

    cache: VerdictCache
    llm: Any
    instructions: dict[str, Any]

    def namespace(self) -> str:
        method = getattr(self.llm, "structured_method", "default") or METHODS[0]
        endpoint = getattr(self.llm, "base_url", None)
        return cache_namespace(endpoint, self.llm.model_name, method, self.instructions)

    def get_many(self, texts) -> dict[str, tuple[str, str]]:
        return self.cache.get_many(self.namespace(), texts)

    def put_many(self, verdicts) -> None:
        self.cache.put_many(self.namespace(), verdicts)

    def close(self) -> None:
        self.cache.close()


def open_verdict_cache(context: RunContext, plan: TaskPlan) -> RunVerdictCache | None:
    """The verdict cache of this model, endpoint and instructions; None with
    ``--no-llm-cache`` or when it cannot be opened (then rows are verified without it)."""
    settings = context.settings
    if not settings.llm_cache:
        return None
    path = settings.verdict_cache
    try:
        cache = VerdictCache(Path(path).expanduser())
    except (OSError, sqlite3.Error) as error:
        context.reporter.warn(f"verdict cache {path} unusable ({error}); verifying without it")
        return None
    return RunVerdictCache(cache, context.llm, judge_instructions(plan))
