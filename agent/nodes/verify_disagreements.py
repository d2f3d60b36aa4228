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

import csv
import hashlib
import json
import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from ..context import RunContext
from ..costs import Ledger, SpendingCap, ledger_totals, usd
from ..data import iter_rows
from ..errors import UserInputError
from ..judge import Judge, Verdict, judge_prompt_id
from ..pricing import price_for
from ..settings import Settings
from ..state import RunState, VerificationResult
from ..verdict_cache import VerdictCache, cache_namespace, text_key
from ..verdicts import VERIFIED_SOURCES

LEDGER_FILE = "ledger.jsonl"
VERDICTS_FILE = "verdicts.jsonl"
"""Every verdict of the run, the pilot's included, in the run folder."""
BUDGET_FOLDER = "budget"
"""``pass-N.json``: the share of ``--max-verified`` each pass takes, and the rows it verifies."""


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
    latest = latest_verdicts(verdicts_path)
    disputed = list(read_jsonl(Path(labeling.disagreements_path)))
    pending = [r for r in disputed if _open(latest.get(r["row"]))]
    budget = plan_budget(state, context.settings, verifier, disputed, pending, latest)
    if budget is not None:
        pending, over = budget.split(pending)
        context.reporter.info(budget.describe(context.settings, len(pending), len(over)))
    with open(verdicts_path, "a", encoding="utf-8") as sink:
        if budget is not None:
            reason = (
                f"over the verification budget (--max-verified {context.settings.max_verified})"
            )
            append_verdicts(sink, _left_to_vote(over, latest, reason))
        if verifier == "llm":
            _verify_with_llm(pending, state, context, sink, run_dir / LEDGER_FILE)
        elif verifier.startswith("column:"):
            append_verdicts(sink, _verify_with_column(pending, state, verifier.split(":", 1)[1]))
        elif verifier == "human":
            append_verdicts(
                sink, (Verdict(r["row"], None, "unresolved", "awaits review") for r in pending)
            )
        else:
            append_verdicts(sink, _left_to_vote(pending, latest, "not verified"))
    latest = latest_verdicts(verdicts_path)
    verified, unresolved = count_verdicts(latest.values())
    if budget is not None:
        left = sum(latest.get(r["row"], {}).get("source") == "vote" for r in disputed)
        context.reporter.info(
            f"{verified} rows verified in all (--max-verified {context.settings.max_verified}: "
            f"{budget.limit}); {left} disputed rows left to the vote"
        )
    review_path = None
    if unresolved:
        review_path = str(run_dir / "review.csv")
        write_review_file(
            Path(review_path), list(latest.values()), Path(labeling.disagreements_path)
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


def latest_verdicts(path: Path) -> dict[int, dict[str, Any]]:
    """Row -> its latest verdict (a row left to the vote may be verified in a later pass)."""
    return {verdict["row"]: verdict for verdict in read_jsonl(path)}


def count_verdicts(latest) -> tuple[int, int]:
    """(rows verified by an LLM or a person, the pilot's included; rows awaiting review)."""
    verified = unresolved = 0
    for verdict in latest:
        verified += verdict["source"] in VERIFIED_SOURCES
        unresolved += verdict["source"] == "unresolved"
    return verified, unresolved


def _open(verdict: dict | None) -> bool:
    """Whether a row may still be verified: it has no verdict, or was left to the vote."""
    return verdict is None or verdict["source"] == "vote"


def _left_to_vote(records, latest: dict[int, dict], reason: str) -> Iterator[Verdict]:
    """``vote`` verdicts for rows not left to the vote already (the vote is the row's current
    one whenever it is read: see :func:`agent.verdicts.resolve`)."""
    for record in records:
        if latest.get(record["row"], {}).get("source") != "vote":
            yield Verdict(record["row"], record["vote"], "vote", reason)


def spent_rows(latest: dict[int, dict]) -> int:
    """Rows the verification budget has paid for: every row with a verdict not ``vote``
    (verified, the pilot's included, or put to a verifier and unresolved)."""
    return sum(1 for verdict in latest.values() if verdict["source"] != "vote")


def least_confident_first(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Disagreement records by the labeler's confidence, then agreement, then row number."""

    def key(record: dict[str, Any]) -> tuple[float, float, int]:
        return (
            float(record.get("confidence", 1.0)),
            float(record.get("agreement", 1.0)),
            record["row"],
        )

    return sorted(records, key=key)


@dataclass(frozen=True)
class BudgetPlan:
    """The rows a pass verifies under ``--max-verified``; the others it leaves to the vote."""

    limit: int
    """Rows the whole run may verify."""
    spent: int
    """Rows spent before this pass: verified (the pilot's included) or awaiting review."""
    allowance: int
    """Rows this pass may verify."""
    kept: bool
    """Part of what was left is kept for the relabeled pass that follows."""
    verify: tuple[int, ...]
    """Rows to verify, least confident first."""

    def split(self, pending: Sequence[dict]) -> tuple[list[dict], list[dict]]:
        """(records to verify, least confident first; records left to the vote)."""
        chosen = set(self.verify)
        by_row = {record["row"]: record for record in pending}
        to_verify = [by_row[row] for row in self.verify if row in by_row]
        return to_verify, [record for record in pending if record["row"] not in chosen]

    def describe(self, settings: Settings, verify: int, vote: int) -> str:
        """The run log's line on this pass's share of the budget."""
        left = max(self.limit - self.spent, 0)
        share = f"half of the {left} left" if self.kept else f"all {left} left"
        return (
            f"--max-verified {settings.max_verified}: {self.limit} rows in all, {self.spent} "
            f"spent before this pass; this pass may verify {self.allowance} ({share}"
            + ("; the relabeled pass gets the rest" if self.kept else "")
            + f"): verifying {verify} disputed rows, least confident first; {vote} left to "
            "the vote"
        )


def plan_budget(
    state: RunState,
    settings: Settings,
    verifier: str,
    disputed: Sequence[dict],
    pending: Sequence[dict],
    latest: dict[int, dict],
) -> BudgetPlan | None:
    """This pass's share of ``--max-verified`` (None: no budget, or nothing is verified), made
    once per pass and kept, so that a resumed pass verifies the rows it chose."""
    limit = settings.verification_limit(state.dataset.rows)
    if limit is None or verifier == "none":
        return None
    fingerprint = hashlib.sha256(
        json.dumps(sorted(record["row"] for record in disputed)).encode()
    ).hexdigest()
    path = Path(state.run_dir) / BUDGET_FOLDER / f"pass-{state.labeling_passes}.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.pop("disputed") == fingerprint and saved["limit"] == limit:
            return BudgetPlan(**saved | {"verify": tuple(saved["verify"])})
    from .learn_vote import relabel_follows  # not at the top: it imports this module

    spent = spent_rows(latest)
    left = max(limit - spent, 0)
    # A person's verdicts arrive only after the run, so they teach no pass of it.
    kept = verifier != "human" and relabel_follows(state, settings, spent + left // 2)
    allowance = left // 2 if kept else left
    plan = BudgetPlan(
        limit=limit,
        spent=spent,
        allowance=allowance,
        kept=kept,
        verify=tuple(record["row"] for record in least_confident_first(pending)[:allowance]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    record = {
        "disputed": fingerprint,
        "limit": limit,
        "spent": spent,
        "allowance": allowance,
        "kept": kept,
        "verify": list(plan.verify),
    }
    temporary.write_text(json.dumps(record) + "\n", encoding="utf-8")
    temporary.replace(path)
    return plan


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


def append_verdicts(sink, verdicts) -> None:
    """Append verdicts as records (row, label, source, reason), flushed to disk at once."""
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
