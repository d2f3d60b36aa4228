"""verify_disagreements: settle only the rows the voters disagree on.

Verifiers: ``llm`` (the judge, batched), ``column:NAME`` (answers from a data
column: the paper's human-verifier setting with gold labels), ``human`` (a
review file; rows stay unresolved until ``review import``) and ``none`` (the
vote stands). Verdicts are appended to ``verdicts.jsonl`` batch by batch, and
every valid LLM verdict goes to the verdict cache as soon as its batch ends, so
neither a resumed run nor a rerun pays twice for a row. LLM batches run
concurrently (``llm_concurrency``) under the spending cap; results are appended
in order.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from ..context import RunContext
from ..costs import Ledger, SpendingCap, ledger_totals, usd
from ..data import iter_rows
from ..errors import UserInputError
from ..judge import Judge, Verdict, judge_prompt_id
from ..pricing import price_for
from ..state import RunState, VerificationResult
from ..verdict_cache import VerdictCache, cache_namespace, text_key

LEDGER_FILE = "ledger.jsonl"


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
    verdicts_path = run_dir / "verdicts.jsonl"
    drop_torn_tail(verdicts_path)
    done = {v["row"] for v in read_jsonl(verdicts_path)}
    pending = [r for r in read_jsonl(Path(labeling.disagreements_path)) if r["row"] not in done]
    with open(verdicts_path, "a", encoding="utf-8") as sink:
        if verifier == "llm":
            _verify_with_llm(pending, state, context, sink, run_dir / LEDGER_FILE)
        elif verifier.startswith("column:"):
            _append(sink, _verify_with_column(pending, state, verifier.split(":", 1)[1]))
        elif verifier == "human":
            _append(sink, (Verdict(r["row"], None, "unresolved", "awaits review") for r in pending))
        else:
            _append(sink, (Verdict(r["row"], r["vote"], "vote", "not verified") for r in pending))
    verdicts = list(read_jsonl(verdicts_path))
    unresolved = sum(1 for v in verdicts if v["source"] == "unresolved")
    review_path = None
    if unresolved:
        review_path = str(run_dir / "review.csv")
        write_review_file(Path(review_path), verdicts, Path(labeling.disagreements_path))
        context.reporter.warn(f"{unresolved} rows await human review: {review_path}")
    result = VerificationResult(
        verifier=verifier,
        verdicts_path=str(verdicts_path),
        verified=len(verdicts) - unresolved,
        unresolved=unresolved,
        review_path=review_path,
        **ledger_totals(run_dir / LEDGER_FILE),
    )
    return {"verification": result}


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                return  # torn by a crash mid-write: that record was never acknowledged
            if line.strip():
                yield json.loads(line)


def drop_torn_tail(path: Path) -> None:
    """Cut a last line that a crash left half-written, before appending after it."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def _append(sink, verdicts) -> None:
    lines = []
    for verdict in verdicts:
        record = {"row": verdict.row, "label": verdict.label, "source": verdict.source}
        record["reason"] = verdict.reason
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    sink.write("".join(lines))
    sink.flush()
    os.fsync(sink.fileno())


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
        _append(sink, hits)
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
                _append(sink, [*verdicts, *copies])
                done += len(batch)
                context.reporter.progress("verifying", done, total)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _open_cache(path: Path, context: RunContext, plan) -> VerdictCache | None:
    llm = context.llm
    namespace = cache_namespace(
        getattr(llm, "base_url", None), llm.model_name, judge_prompt_id(plan), plan.label_names
    )
    try:
        return VerdictCache(Path(path).expanduser(), namespace)
    except (OSError, sqlite3.Error) as error:
        context.reporter.warn(f"verdict cache {path} unusable ({error}); verifying without it")
        return None


def _verify_with_column(pending, state: RunState, column: str) -> Iterator[Verdict]:
    if column not in state.dataset.columns:
        raise UserInputError(
            f"--verifier column:{column}: no such column; columns are {list(state.dataset.columns)}"
        )
    wanted = {record["row"] for record in pending}
    labels = set(state.plan.label_names)
    for row_number, row in enumerate(iter_rows(state.dataset.path)):
        if row_number not in wanted:
            continue
        answer = "" if row.get(column) is None else str(row.get(column)).strip()
        if answer in labels:
            yield Verdict(row_number, answer, "human", f"from column {column}")
        else:
            yield Verdict(row_number, None, "unresolved", f"column {column} holds {answer!r}")


def write_review_file(path: Path, verdicts: list[dict], disagreements: Path) -> None:
    """A CSV of the unresolved rows: fill in ``label`` and import it back."""
    unresolved = {v["row"]: v for v in verdicts if v["source"] == "unresolved"}
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "text", "vote", "votes", "reason", "label"])
        for record in read_jsonl(disagreements):
            verdict = unresolved.get(record["row"])
            if verdict is not None:
                votes = json.dumps(record["votes"], ensure_ascii=False)
                writer.writerow(
                    [record["row"], record["text"], record["vote"], votes, verdict["reason"], ""]
                )
    temporary.replace(path)
