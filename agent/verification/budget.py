"""The verification budget (``--max-verified``): which disputed rows a pass verifies.

Rows are verified least confident first (the labeler's confidence, then agreement, then
row number) until the budget is spent; every row verified so far counts against it, the
pilot's included. When the verified rows will teach the labeler before another labeling
pass, a pass spends at most half of what is left, and the better-informed pass the rest.
The rows a pass chose are kept in ``budget/pass-N.json``, so a resumed pass verifies them.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.settings import Settings
from agent.state import RunState
from agent.verification.store import Disputed, spent_rows
from agent.verification.stream import latest_by_row

BUDGET_FOLDER = "budget"
"""``pass-N.json``: the share of ``--max-verified`` each pass takes, and the rows it verifies."""


def _confidence_key(record: dict[str, Any]) -> tuple[float, float, int]:
    return (
        float(record.get("confidence", 1.0)),
        float(record.get("agreement", 1.0)),
        record["row"],
    )


def least_confident_first(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Disagreement records by the labeler's confidence, then agreement, then row number."""
    return sorted(records, key=_confidence_key)


def least_confident_rows(records: Iterable[dict[str, Any]], count: int) -> list[int]:
    """The rows of ``least_confident_first(records)[:count]``, holding ``count`` keys at most
    rather than every record (the row number breaks every tie, so the order is the same)."""
    return [key[2] for key in heapq.nsmallest(count, map(_confidence_key, records))]


def rows_fingerprint(rows: Iterable[int]) -> str:
    """``sha256(json.dumps(sorted(rows)))`` in one pass over rows already in ascending order,
    without holding them."""
    digest = hashlib.sha256(b"[")
    previous = None
    for row in rows:
        if previous is not None:
            if row < previous:
                raise ValueError(f"rows out of order: {row} after {previous}")
            digest.update(b", ")
        digest.update(str(int(row)).encode())
        previous = row
    digest.update(b"]")
    return digest.hexdigest()


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

    def split(self, disputed: Disputed) -> tuple[list[dict], Iterator[tuple[dict, dict | None]]]:
        """(records to verify, least confident first; the pending (record, verdict) pairs
        left to the vote, read as they are consumed)."""
        chosen = set(self.verify)
        by_row = {r["row"]: r for r, _ in disputed.pending() if r["row"] in chosen}
        to_verify = [by_row[row] for row in self.verify if row in by_row]
        over = (pair for pair in disputed.pending() if pair[0]["row"] not in chosen)
        return to_verify, over

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
    disputed: Disputed,
    teaches: Callable[[int], bool],
) -> BudgetPlan | None:
    """This pass's share of ``--max-verified`` (None: no budget, or nothing is verified), made
    once per pass and kept, so that a resumed pass verifies the rows it chose.

    ``teaches(verified_after)``: whether the rows verified in all once this pass is done
    will teach the labeler before another labeling pass (the learning policy decides).
    """
    limit = settings.verification_limit(state.dataset.rows)
    if limit is None or verifier == "none":
        return None
    fingerprint = rows_fingerprint(disputed.rows())
    path = Path(state.run_dir) / BUDGET_FOLDER / f"pass-{state.labeling_passes}.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.pop("disputed") == fingerprint and saved["limit"] == limit:
            return BudgetPlan(**saved | {"verify": tuple(saved["verify"])})

    spent = spent_rows(latest_by_row(disputed.verdicts))
    left = max(limit - spent, 0)
    # A person's verdicts arrive only after the run, so they teach no pass of it.
    kept = verifier != "human" and teaches(spent + left // 2)
    allowance = left // 2 if kept else left
    plan = BudgetPlan(
        limit=limit,
        spent=spent,
        allowance=allowance,
        kept=kept,
        verify=tuple(least_confident_rows((r for r, _ in disputed.pending()), allowance)),
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
