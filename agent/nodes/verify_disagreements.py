"""verify_disagreements: settle only the rows the voters disagree on.

The node orchestrates; the verifiers live in :mod:`agent.verification.verifiers`:
``llm`` (the judge, through the one implementation of judging rows,
:func:`agent.verification.service.judge_rows`: cache, ledger, spending cap,
identical texts asked once, concurrent batches appended in order), ``column:NAME``
(answers from a data column: the paper's human-verifier setting with gold
labels), ``human`` (a review file; rows stay unresolved until ``review import``)
and ``none`` (the vote stands). Verdicts are appended to ``verdicts.jsonl``
(:mod:`agent.verification.store`) batch by batch. The result records the rows
verified so far and their distinct labels, which the router after this node
decides from.

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

from collections.abc import Iterable
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.errors import UserInputError
from agent.learning import relabel_follows
from agent.state import RunState, VerificationResult
from agent.verification.budget import plan_budget
from agent.verification.costs import LEDGER_FILE, ledger_totals
from agent.verification.review_files import write_review_file
from agent.verification.store import (
    VERDICTS_FILE,
    Disputed,
    append_verdicts,
    count_verdicts,
    drop_torn_tail,
    verified_labels,
)
from agent.verification.stream import latest_by_row
from agent.verification.verifiers import (
    awaiting_review,
    column_verdicts,
    left_to_vote,
    verify_with_llm,
)


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
            append_verdicts(sink, left_to_vote(over, reason))
        _verify(verifier, pending, budget is not None, disputed, state, context, sink)
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
        verified_labels=len(set(verified_labels(state).values())),
        review_path=review_path,
        **ledger_totals(run_dir / LEDGER_FILE),
    )
    return {"verification": result}


def _verify(verifier: str, pending, budgeted: bool, disputed: Disputed, state, context, sink):
    """Append the verdicts of ``verifier`` on the ``pending`` records (least confident first
    under a budget) to ``sink``; ``none`` leaves every pending row to the vote."""
    if verifier == "llm":
        verify_with_llm(list(pending), state, context, sink)
    elif verifier.startswith("column:"):
        rows = sorted(r["row"] for r in pending) if budgeted else (r["row"] for r in pending)
        append_verdicts(sink, column_verdicts(rows, state, verifier.split(":", 1)[1]))
    elif verifier == "human":
        append_verdicts(sink, awaiting_review(pending))
    else:
        append_verdicts(sink, left_to_vote(disputed.pending(), "not verified"))
