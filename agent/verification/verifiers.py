"""The verifiers of disputed rows, each giving :class:`~agent.verification.judge.Verdict` s.

* ``llm``: :func:`verify_with_llm`, the judge through :func:`agent.verification.service.
  judge_rows` (cache, ledger, spending cap, concurrency), verdicts appended in order;
* ``column:NAME``: :func:`column_verdict`, answers from a data column (the paper's
  human-verifier setting with gold labels);
* ``human``: :func:`awaiting_review`, rows left unresolved for the review file;
* ``none`` and rows over the ``--max-verified`` budget: :func:`left_to_vote`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agent.context import RunContext
from agent.dataset import cell_text, iter_rows
from agent.errors import UserInputError
from agent.state import DatasetInfo, RunState
from agent.verification.batch_round import batch_record_path
from agent.verification.costs import usd
from agent.verification.judge import Verdict
from agent.verification.service import JudgingPlan, judge_rows
from agent.verification.store import append_verdicts


def left_to_vote(pairs, reason: str) -> Iterator[Verdict]:
    """``vote`` verdicts for the (record, latest verdict) pairs not left to the vote already
    (the vote is the row's current one whenever it is read: see
    :func:`agent.verification.store.resolve`)."""
    for record, verdict in pairs:
        if (verdict or {}).get("source") != "vote":
            yield Verdict(record["row"], record["vote"], "vote", reason)


def awaiting_review(records: Iterable[dict]) -> Iterator[Verdict]:
    """``unresolved`` verdicts: a person answers in the review file, after the run."""
    return (Verdict(r["row"], None, "unresolved", "awaits review") for r in records)


def check_column(column: str, dataset: DatasetInfo) -> None:
    if column not in dataset.columns:
        raise UserInputError(
            f"--verifier column:{column}: no such column; columns are {list(dataset.columns)}"
        )


def column_value(values: dict[str, Any], column: str) -> str:
    """What ``column`` holds in the row ``values``, as stripped text ("" for nothing)."""
    return cell_text(values.get(column)).strip()


def column_verdict(row: int, values: dict[str, Any], column: str, labels: set[str]) -> Verdict:
    """The verdict ``column`` gives the row ``values``: its label (matched ignoring case
    when only one label matches so), or unresolved."""
    answer = column_value(values, column)
    if answer not in labels:
        matches = [label for label in labels if label.casefold() == answer.casefold()]
        answer = matches[0] if len(matches) == 1 else answer
    if answer in labels:
        return Verdict(row, answer, "human", f"from column {column}")
    return Verdict(row, None, "unresolved", f"column {column} holds {answer!r}")


def column_verdicts(rows: Iterable[int], state: RunState, column: str) -> Iterator[Verdict]:
    """Verdicts from ``column`` for ``rows`` (ascending), in file order."""
    check_column(column, state.dataset)
    wanted = iter(rows)
    next_row = next(wanted, None)
    labels = set(state.plan.label_names)
    for row_number, row in enumerate(iter_rows(state.dataset.path)):
        if next_row is None:
            return
        if row_number != next_row:
            continue
        next_row = next(wanted, None)
        yield column_verdict(row_number, row, column, labels)


def verify_with_llm(pending: list[dict], state: RunState, context: RunContext, sink) -> None:
    """Judge the ``pending`` disagreement records, appending the verdicts to ``sink``."""
    reporter, settings = context.reporter, context.settings

    def announce(judging: JudgingPlan) -> None:
        reporter.info(
            f"{judging.cached} rows from the verdict cache; "
            f"{len(judging.to_ask)} rows to ask in {judging.calls} LLM calls"
            + (" as one Batch API job" if context.batch is not None and judging.calls else "")
        )

    outcome = judge_rows(
        pending,
        state.plan,
        Path(state.run_dir),
        context,
        announce,
        keep=lambda verdicts: append_verdicts(sink, verdicts),
        progress="verifying",
        batch_record=batch_record_path(Path(state.run_dir), state.labeling_passes),
    )
    if outcome.refused:
        reporter.warn(
            f"spending cap {usd(settings.max_cost_usd)} reached after {usd(outcome.spent_usd)}: "
            f"{outcome.refused} LLM requests not sent; their rows await review"
        )
