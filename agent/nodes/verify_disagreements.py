"""verify_disagreements: settle only the rows the voters disagree on.

Verifiers: ``llm`` (the judge, batched), ``column:NAME`` (answers from a data
column: the paper's human-verifier setting with gold labels), ``human`` (a
review file; rows stay unresolved until ``review import``) and ``none`` (the
vote stands). Verdicts are appended to ``verdicts.jsonl`` batch by batch, so a
resumed run never asks twice about a row.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from ..context import RunContext
from ..data import iter_rows
from ..errors import UserInputError
from ..judge import CallRecord, Judge, Verdict
from ..pricing import price_for
from ..state import RunState, VerificationResult


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
    done = {v["row"] for v in read_jsonl(verdicts_path)}
    pending = [r for r in read_jsonl(Path(labeling.disagreements_path)) if r["row"] not in done]
    with open(verdicts_path, "a", encoding="utf-8") as sink:
        if verifier == "llm":
            _verify_with_llm(pending, state, context, sink, run_dir / "ledger.jsonl")
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
        **_ledger_totals(run_dir / "ledger.jsonl"),
    )
    return {"verification": result}


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _append(sink, verdicts) -> None:
    for verdict in verdicts:
        record = {"row": verdict.row, "label": verdict.label, "source": verdict.source}
        record["reason"] = verdict.reason
        sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    sink.flush()
    os.fsync(sink.fileno())


def _verify_with_llm(pending, state: RunState, context: RunContext, sink, ledger: Path) -> None:
    settings = context.settings
    price = price_for(context.llm.model_name, settings.llm_prices)

    def log_call(call: CallRecord) -> None:
        entry = {
            "time": round(time.time(), 3),
            "model": context.llm.model_name,
            "rows": call.rows,
            "prompt_tokens": call.usage.prompt_tokens,
            "completion_tokens": call.usage.completion_tokens,
            "cost_usd": round(price.cost(call.usage), 8),
            "latency_s": round(call.latency_s, 3),
            "outcome": call.outcome,
        }
        with open(ledger, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    judge = Judge(context.llm, state.plan, settings.judge_batch_size, on_call=log_call)
    size = settings.judge_batch_size
    for start in range(0, len(pending), size):
        _append(sink, judge.judge(pending[start : start + size]))
        context.reporter.progress("verifying", min(start + size, len(pending)), len(pending))
    if not price.known:
        context.reporter.warn(f"no price known for {context.llm.model_name}: cost shown as 0")


def _ledger_totals(ledger: Path) -> dict[str, Any]:
    entries = list(read_jsonl(ledger))
    return {
        "llm_calls": len(entries),
        "prompt_tokens": sum(e["prompt_tokens"] for e in entries),
        "completion_tokens": sum(e["completion_tokens"] for e in entries),
        "cost_usd": round(sum(e["cost_usd"] for e in entries), 6),
    }


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
