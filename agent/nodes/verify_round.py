"""verify_round: verify the rows ``plan_round`` chose for this round.

The verifiers live in :mod:`agent.verification.verifiers`: ``llm`` (the judge, through the
one implementation of judging rows, :func:`agent.verification.service.judge_rows`: cache,
ledger, spending cap, identical texts asked once), ``column:NAME`` (answers from a data
column: the paper's human-verifier setting with gold labels) and ``human`` (a review
file: the run pauses, exit status 3, until ``review import`` brings the verdicts and
``--resume`` continues). Verdicts are appended to ``verdicts.jsonl``
(:mod:`agent.verification.store`) batch by batch; a row with a verdict is not asked again,
so a resumed round asks only the rest.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.errors import AwaitingReview, UserInputError
from agent.state import RunState, VerificationResult
from agent.verification.costs import LEDGER_FILE, ledger_totals
from agent.verification.review_files import disputed_records, write_review_file
from agent.verification.store import (
    VERDICTS_FILE,
    VERIFIED_SOURCES,
    append_verdicts,
    count_verdicts,
    drop_torn_tail,
    latest_verdicts,
    read_jsonl,
)
from agent.verification.stream import latest_by_row
from agent.verification.verifiers import awaiting_review, column_verdicts, verify_with_llm

REVIEW_FILE = "review.csv"


def verify_round(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    verifier = context.settings.resolved_verifier()
    if verifier == "llm" and context.llm is None:
        raise UserInputError(
            "--verifier llm needs an LLM endpoint: set OPENAI_API_KEY or --llm-base-url"
        )
    current = state.rounds[-1]
    run_dir = Path(state.run_dir)
    verdicts_path = run_dir / VERDICTS_FILE
    drop_torn_tail(verdicts_path)
    records_path = Path(current.records_path)
    latest = latest_verdicts(verdicts_path)
    pending = [
        record
        for record in read_jsonl(records_path)
        if latest.get(record["row"], {}).get("source", "vote") == "vote"
    ]
    context.reporter.stage(
        "verify_round", f"round {current.round}: {len(pending)} rows by {verifier}"
    )
    with open(verdicts_path, "a", encoding="utf-8") as sink:
        if verifier == "llm":
            verify_with_llm(pending, state, context, sink)
        elif verifier.startswith("column:"):
            rows = sorted(record["row"] for record in pending)
            append_verdicts(sink, column_verdicts(rows, state, verifier.split(":", 1)[1]))
        elif verifier == "human":
            append_verdicts(sink, awaiting_review(pending))
    verified, unresolved = count_verdicts(latest_by_row(verdicts_path))
    review_path = None
    if unresolved:
        review_path = run_dir / REVIEW_FILE
        # every round's rows: one left unresolved in an earlier round still awaits review
        write_review_file(
            review_path, latest_by_row(verdicts_path), disputed_records(state), state.run_id
        )
        if verifier != "human":
            context.reporter.warn(f"{unresolved} rows await human review: {review_path}")
    if verifier == "human" and _waiting(records_path, verdicts_path):
        raise AwaitingReview(
            f"round {current.round}: {unresolved} rows await review in {review_path}: fill in "
            f"their labels, then `autoannotator-agent review import {state.run_id} "
            f"{review_path}` and continue with --resume {state.run_id}"
        )
    labels = {v["label"] for v in latest_by_row(verdicts_path) if _verified(v)}
    result = VerificationResult(
        verifier=verifier,
        verdicts_path=str(verdicts_path),
        verified=verified,
        unresolved=unresolved,
        verified_labels=len(labels),
        review_path=None if review_path is None else str(review_path),
        **ledger_totals(run_dir / LEDGER_FILE),
    )
    return {"verification": result}


def _verified(verdict: dict) -> bool:
    return verdict["source"] in VERIFIED_SOURCES and verdict["label"] is not None


def _waiting(records_path: Path, verdicts_path: Path) -> bool:
    """Whether a row of this round still waits for a person's verdict."""
    latest = latest_verdicts(verdicts_path)
    return any(
        latest.get(record["row"], {}).get("source") == "unresolved"
        for record in read_jsonl(records_path)
    )
