"""verify_disagreements: settle only the rows the voters disagree on.

Verifiers: ``llm`` (the judge, batched), ``column:NAME`` (answers from a data
column: the paper's human-verifier setting with gold labels), ``human`` (a
review file; rows stay unresolved until ``review import``) and ``none`` (the
vote stands). Verdicts are appended to ``verdicts.jsonl`` batch by batch, and
every valid LLM verdict goes to the verdict cache as soon as its batch ends, so
neither a resumed run nor a rerun pays twice for a row. LLM batches run
concurrently (``llm_concurrency``) under the spending cap; results are appended
in order.

A row with a verdict is not asked again (the pilot's verified rows included),
except a row left to the vote, which a later pass may still verify. With
``--max-verified`` the disputed rows are verified least confident first (the
labeler's confidence, then agreement, then row number) until the budget is
spent; every row verified so far counts against it, the pilot's included. The
rows beyond it are left to the vote (source ``vote``: they take the latest
pass's vote). When the verified rows will teach the labeler before another
labeling pass, this pass spends at most half of what is left, and the
better-informed pass the rest. The rows chosen in a pass are kept in
``budget/pass-N.json``, so a resumed pass verifies the same rows.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows
from agent.errors import UserInputError
from agent.learning import relabel_follows
from agent.llm.pricing import price_for
from agent.state import RunState, VerificationResult
from agent.verification.budget import plan_budget
from agent.verification.cache import VerdictCache, cache_namespace, text_key
from agent.verification.costs import LEDGER_FILE, Ledger, SpendingCap, ledger_totals, usd
from agent.verification.judge import Judge, Verdict, judge_prompt_id
from agent.verification.review_files import write_review_file
from agent.verification.store import (
    VERDICTS_FILE,
    Disputed,
    append_verdicts,
    count_verdicts,
    drop_torn_tail,
)
from agent.verification.stream import latest_by_row


def verify_disagreements(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    verifier = context.settings.resolved_verifier()
    if verifier == "llm" and context.llm is None:
        raise UserInputError(
            "--verifier llm needs an LLM endpoint: set OPENAI_API_KEY or --llm-base-url"
        )
    labeling = state.labeling
    context.reporter.stage("verify_disagreements", f"{labeling.disagreements} rows by {verifier}")
    run_dir = Path(state.run_dir)
    verdicts_path = run_dir / VERDICTS_FILE
    drop_torn_tail(verdicts_path)
    disputed = Disputed(Path(labeling.disagreements_path), verdicts_path)
    budget = plan_budget(
        state,
        context.settings,
        verifier,
        disputed,
        teaches=lambda verified_after: relabel_follows(state, context.settings, verified_after),
    )
    over: Iterable[tuple[dict, dict | None]] = ()
    if budget is None:
        pending: Iterable[dict] = (record for record, _ in disputed.pending())
    else:
        pending, over = budget.split(disputed)
        to_vote = sum(1 for _ in disputed.pending()) - len(pending)
        context.reporter.info(budget.describe(context.settings, len(pending), to_vote))
    with open(verdicts_path, "a", encoding="utf-8") as sink:
        if budget is not None:
            reason = (
                f"over the verification budget (--max-verified {context.settings.max_verified})"
            )
            append_verdicts(sink, _left_to_vote(over, reason))
        if verifier == "llm":
            _verify_with_llm(list(pending), state, context, sink, run_dir / LEDGER_FILE)
        elif verifier.startswith("column:"):
            rows = sorted(r["row"] for r in pending) if budget else (r["row"] for r in pending)
            append_verdicts(sink, _verify_with_column(rows, state, verifier.split(":", 1)[1]))
        elif verifier == "human":
            append_verdicts(
                sink, (Verdict(r["row"], None, "unresolved", "awaits review") for r in pending)
            )
        else:
            append_verdicts(sink, _left_to_vote(disputed.pending(), "not verified"))
    verified, unresolved = count_verdicts(latest_by_row(verdicts_path))
    if budget is not None:
        left = sum(1 for _, v in disputed.pairs() if v is not None and v["source"] == "vote")
        context.reporter.info(
            f"{verified} rows verified in all (--max-verified {context.settings.max_verified}: "
            f"{budget.limit}); {left} disputed rows left to the vote"
        )
    review_path = None
    if unresolved:
        review_path = str(run_dir / "review.csv")
        write_review_file(
            Path(review_path), latest_by_row(verdicts_path), Path(labeling.disagreements_path)
        )
        context.reporter.warn(f"{unresolved} rows await human review: {review_path}")
    result = VerificationResult(
        verifier=verifier,
        verdicts_path=str(verdicts_path),
        verified=verified,
        unresolved=unresolved,
        review_path=review_path,
        **ledger_totals(run_dir / LEDGER_FILE),
    )
    return {"verification": result}


def _left_to_vote(pairs, reason: str) -> Iterator[Verdict]:
    """``vote`` verdicts for the (record, latest verdict) pairs not left to the vote already
    (the vote is the row's current one whenever it is read: see
    :func:`agent.verification.store.resolve`)."""
    for record, verdict in pairs:
        if (verdict or {}).get("source") != "vote":
            yield Verdict(record["row"], record["vote"], "vote", reason)


def _verify_with_llm(pending, state: RunState, context: RunContext, sink, ledger_path: Path):
    settings, llm, plan, reporter = context.settings, context.llm, state.plan, context.reporter
    price = price_for(llm.model_name, settings.llm_prices)
    if not price.known:
        reporter.warn(f"no price known for {llm.model_name}: cost shown as 0, no cap enforced")
    drop_torn_tail(ledger_path)
    ledger = Ledger(ledger_path, llm.model_name, price)
    spent = ledger_totals(ledger_path)["cost_usd"]
    cap = SpendingCap(settings.max_cost_usd, plan, price, spent)
    judge = Judge(llm, plan, settings.judge_batch_size, on_call=ledger.record, gate=cap)
    cache = _open_cache(settings.verdict_cache, context, plan)
    try:
        cached = cache.get_many(r["text"] for r in pending) if cache else {}
        to_ask, twins, hits = _split_pending(pending, cached)
        append_verdicts(sink, hits)
        size = settings.judge_batch_size
        batches = [to_ask[start : start + size] for start in range(0, len(to_ask), size)]
        reporter.info(
            f"{len(hits)} rows from the verdict cache; "
            f"{len(to_ask)} rows to ask in {len(batches)} LLM calls"
        )

        def judge_batch(batch: list[dict]) -> list[Verdict]:
            verdicts = judge.judge(batch)
            if cache is not None:  # now: a crash before the in-order append then loses nothing
                answers = zip(batch, verdicts, strict=True)
                cache.put_many((r["text"], v.label, v.reason) for r, v in answers if v.label)
            return verdicts

        _judge_in_order(batches, judge_batch, twins, sink, context)
    finally:
        if cache is not None:
            cache.close()
    if cap.refused:
        reporter.warn(
            f"spending cap {usd(settings.max_cost_usd)} reached after {usd(cap.spent_usd)}: "
            f"{cap.refused} LLM requests not sent; their rows await review"
        )


def _split_pending(pending, cached):
    """Rows to ask (one per distinct text), rows sharing a text with one asked, cache hits."""
    to_ask: dict[str, dict] = {}
    twins: dict[str, list[int]] = defaultdict(list)
    hits = []
    for record in pending:
        key = text_key(record["text"])
        if key in cached:
            label, reason = cached[key]
            hits.append(Verdict(record["row"], label, "llm", f"{reason} (cached)"))
        elif key in to_ask:
            twins[key].append(record["row"])
        else:
            to_ask[key] = record
    return list(to_ask.values()), twins, hits


def _judge_in_order(batches, judge_batch, twins, sink, context: RunContext) -> None:
    """Judge batches concurrently; append each batch's verdicts in order as it is ready."""
    total = sum(len(batch) for batch in batches)
    workers = context.settings.llm_concurrency
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
        futures = [pool.submit(judge_batch, batch) for batch in batches]
        try:
            done = 0
            for batch, future in zip(batches, futures, strict=True):
                verdicts = future.result()
                copies = [
                    Verdict(row, v.label, v.source, v.reason)
                    for record, v in zip(batch, verdicts, strict=True)
                    for row in twins.get(text_key(record["text"]), ())
                ]
                append_verdicts(sink, [*verdicts, *copies])
                done += len(batch)
                context.reporter.progress("verifying", done, total)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _open_cache(path: Path, context: RunContext, plan) -> VerdictCache | None:
    llm = context.llm
    if not context.settings.llm_cache:
        return None
    namespace = cache_namespace(
        getattr(llm, "base_url", None), llm.model_name, judge_prompt_id(plan), plan.label_names
    )
    try:
        return VerdictCache(Path(path).expanduser(), namespace)
    except (OSError, sqlite3.Error) as error:
        context.reporter.warn(f"verdict cache {path} unusable ({error}); verifying without it")
        return None


def _verify_with_column(rows: Iterable[int], state: RunState, column: str) -> Iterator[Verdict]:
    """Verdicts from ``column`` for ``rows`` (ascending), in file order."""
    if column not in state.dataset.columns:
        raise UserInputError(
            f"--verifier column:{column}: no such column; columns are {list(state.dataset.columns)}"
        )
    wanted = iter(rows)
    next_row = next(wanted, None)
    labels = set(state.plan.label_names)
    for row_number, row in enumerate(iter_rows(state.dataset.path)):
        if next_row is None:
            return
        if row_number != next_row:
            continue
        next_row = next(wanted, None)
        answer = "" if row.get(column) is None else str(row.get(column)).strip()
        if answer in labels:
            yield Verdict(row_number, answer, "human", f"from column {column}")
        else:
            yield Verdict(row_number, None, "unresolved", f"column {column} holds {answer!r}")
