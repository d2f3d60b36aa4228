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
verified (and against ``--max-verified``), and are never put to a verifier again. A uniform
sample, they are the first held-out slice: their labels never trained on, they measure the labels.

Paid verification of pilot rows is never wasted: it scores the candidates, drops those no
better than the majority label, and measures the labels. A person (``--verifier human``)
cannot answer during the pilot and ``none`` verifies nothing: the consensus decides then.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from textwrap import shorten
from typing import Any

from agent.context import RunContext
from agent.dataset import cell_text
from agent.errors import UserInputError
from agent.state import Candidate, DatasetInfo, TaskPlan
from agent.verification.costs import confirm_spending, estimate_verification, terminal_ask, usd
from agent.verification.judge import Verdict
from agent.verification.service import JudgingPlan, judge_rows
from agent.verification.store import (
    PILOT_REASON,
    VERDICTS_FILE,
    VERIFIED_SOURCES,
    append_verdicts,
    drop_torn_tail,
    latest_verdicts,
    read_jsonl,
)
from agent.verification.verifiers import check_column, column_value, column_verdict


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
    # Even named voters are checked against the majority label, and the verified rows are
    # the first held-out slice the labels are measured on.
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


def verify_pilot_rows(
    verifier: str,
    sample: Sequence[tuple[int, dict[str, Any]]],
    plan: TaskPlan,
    dataset: DatasetInfo,
    run_dir: Path,
    context: RunContext,
) -> PilotVerdicts:
    """Verify a reproducible uniform sample of ``--pilot-verify`` pilot rows (``sample``:
    dataset row number and row, in pilot order), the same sample whoever verifies."""
    count = context.settings.pilot_verify_count(dataset.rows)
    positions = _sampled(len(sample), count, dataset.sha256)
    if verifier.startswith("column:"):
        column = verifier.split(":", 1)[1]
        verdicts = _from_column(column, {pos: sample[pos][1] for pos in positions}, plan, dataset)
        name = verifier
    else:
        texts = {pos: cell_text(sample[pos][1].get(plan.text_column)) for pos in positions}
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


def pilot_labels(path: Path, rows: int) -> list[str | None]:
    """One per pilot row, from the pilot's verdicts file: the verified label, or None."""
    labels: list[str | None] = [None] * rows
    for record in read_jsonl(path):
        labels[record["pilot_row"]] = record["label"]
    return labels


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
        reason = f"{PILOT_REASON}: {record['reason']}" if record["reason"] else PILOT_REASON
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
    check_column(column, dataset)
    labels = set(plan.label_names)
    verdicts = [column_verdict(position, row, column, labels) for position, row in rows.items()]
    held = {column_value(row, column) for row in rows.values()} - {""}
    if held and not any(verdict.label is not None for verdict in verdicts):
        shown = ", ".join(sorted(map(repr, held)))
        raise UserInputError(
            f"--verifier column:{column}: none of the {len(rows)} pilot rows it verifies holds "
            f"a label of the task {list(plan.label_names)}; it holds {shorten(shown, 120)}: "
            "check --labels"
        )
    return verdicts


def _from_llm(
    texts: dict[int, str], plan: TaskPlan, run_dir: Path, context: RunContext
) -> list[Verdict]:
    """The judge's verdicts on the pilot rows ``texts`` (pilot position -> text), asked once
    the expected cost is confirmed against ``--budget-usd``."""
    settings, reporter = context.settings, context.reporter

    def announce(judging: JudgingPlan) -> None:
        asked = len(judging.to_ask)
        estimate = estimate_verification(
            plan,
            judging.to_ask,
            asked,
            settings.judge_batch_size,
            context.llm.model_name,
            judging.price,
        )
        cost = usd(estimate.cost_usd) if judging.price.known else "cost unknown"
        reporter.info(
            f"verifying {len(texts)} pilot rows to score the candidates: "
            f"{len(texts) - asked} from the verdict cache, {asked} to ask in "
            f"{estimate.llm_calls} LLM calls (~{estimate.tokens} tokens, {cost})"
        )
        confirm_spending(estimate, settings, lambda question: terminal_ask(question, reporter))

    records = [{"row": position, "text": text, "votes": {}} for position, text in texts.items()]
    verdicts: list[Verdict] = []
    outcome = judge_rows(records, plan, run_dir, context, announce, keep=verdicts.extend)
    if outcome.refused:
        reporter.warn(
            f"spending cap {usd(settings.max_cost_usd)} reached while verifying pilot rows: "
            f"{outcome.refused} LLM requests not sent"
        )
    return sorted(verdicts, key=lambda verdict: verdict.row)
