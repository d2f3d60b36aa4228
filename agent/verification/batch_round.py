"""One verification pass as one OpenAI Batch API job (``--llm-batch``).

:func:`judge_in_one_batch` is :func:`agent.verification.service.judge_rows`' batch mode:

* every judge request of the pass (the same messages, the same structured-output method as
  a synchronous call) goes into one JSONL file and one batch;
* the batch's expected cost, at the batch rate, is checked against ``--max-cost-usd``
  before anything is sent: a batch that would pass it is not submitted, and its rows go to
  review with the reason;
* the batch id and its requests (``custom_id`` -> records) are written to
  ``batches/pass-N.json`` as soon as the batch exists, so a killed run resumes waiting for
  the same batch and never pays twice;
* answers are validated like synchronous ones (a bad row is asked again alone, synchronously)
  and every request goes to the ledger at the batch price;
* a batch that expires, fails or is cancelled leaves the rows it did not answer for review,
  the reason naming the batch and its status;
* an interrupted wait cancels the batch and marks the record so: a resumed run submits anew.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.context import Reporter
from agent.files import write_text_atomically
from agent.llm.batch import BatchAnswer, BatchClient, BatchStatus, wait_for_batch
from agent.llm.client import TokenUsage
from agent.llm.pricing import Price
from agent.verification.costs import Ledger, SpendingCap, usd
from agent.verification.judge import CallRecord, Judge, Verdict, judge_messages

BATCH_FOLDER = "batches"
"""``pass-N.json``: the batch of verification pass N (its id and requests)."""


def batch_record_path(run_dir: Path, labeling_pass: int) -> Path:
    return Path(run_dir) / BATCH_FOLDER / f"pass-{labeling_pass}.json"


def judge_in_one_batch(
    batches: Sequence[list[dict[str, Any]]],
    judge: Judge,
    client: BatchClient,
    record_path: Path,
    cap: SpendingCap,
    ledger: Ledger,
    reporter: Reporter,
    hand_over: Callable[[list[dict[str, Any]], list[Verdict]], None],
) -> list[list[dict[str, Any]]]:
    """Judge ``batches`` (each one judge request's records) as one Batch API job, handing
    each request's records and verdicts to ``hand_over``. ``ledger`` prices at the batch rate.

    Returns the batches a resumed pass found outside its saved batch (none, unless the rows to
    verify changed since it was submitted): the caller judges them synchronously."""
    current = {record["row"] for batch in batches for record in batch}
    saved = _load(record_path)
    if saved is not None and not saved.get("cancelled"):
        batch_id, requests = saved["batch_id"], saved["requests"]
        reporter.info(f"resuming: waiting for batch {batch_id} ({len(requests)} requests)")
        asked = {record["row"] for records in requests.values() for record in records}
        left = [[r for r in batch if r["row"] not in asked] for batch in batches]
        outside = [batch for batch in left if batch]
    else:
        submitted = _submit(batches, judge, client, record_path, cap, ledger.price, reporter)
        if submitted is None:
            reason = (
                f"spending cap: this pass's batch of {len(batches)} requests would pass "
                f"--max-cost-usd {usd(cap.limit_usd or 0)}; not submitted, left for review"
            )
            for batch in batches:
                hand_over(batch, [Verdict(r["row"], None, "unresolved", reason) for r in batch])
            return []
        batch_id, requests = submitted
        outside = []
    status = _wait(client, batch_id, record_path, reporter)
    answers = client.answers(status, judge.schema)
    for custom_id, batch in requests.items():
        kept = _settle_request(
            batch, answers.get(custom_id), status, judge, cap, ledger, batch_id, current
        )
        if kept:
            hand_over([r for r, _ in kept], [v for _, v in kept])
    return outside


def _submit(
    batches: Sequence[list[dict[str, Any]]],
    judge: Judge,
    client: BatchClient,
    record_path: Path,
    cap: SpendingCap,
    price: Price,
    reporter: Reporter,
) -> tuple[str, dict[str, list[dict[str, Any]]]] | None:
    """Submit one request per batch as one job, once the cap admits its whole estimate (None
    when it does not); the job is saved before anything else, so a killed run resumes it."""
    requests = {_custom_id(i, batch): batch for i, batch in enumerate(batches)}
    messages = {cid: judge_messages(judge.plan, batch) for cid, batch in requests.items()}
    sizes = [(messages[cid], len(batch)) for cid, batch in requests.items()]
    reservation = cap.admit_batch(sizes, price)
    if reservation is None:
        return None
    lines = [client.request(cid, messages[cid], judge.schema) for cid in requests]
    metadata = {"autoannotator_run": record_path.parent.parent.name, "pass": record_path.stem}
    batch_id = client.submit(lines, metadata)
    _save(record_path, {"batch_id": batch_id, "requests": requests})
    cap.settle(reservation, TokenUsage())  # reserved again as the answers are settled
    reporter.info(
        f"batch {batch_id} submitted: {len(requests)} requests, "
        f"{sum(map(len, requests.values()))} rows; waiting for it "
        "(a killed run resumes waiting with --resume)"
    )
    return batch_id, requests


def _settle_request(
    batch: list[dict[str, Any]],
    answer: BatchAnswer | None,
    status: BatchStatus,
    judge: Judge,
    cap: SpendingCap,
    ledger: Ledger,
    batch_id: str,
    current: set[int],
) -> list[tuple[dict[str, Any], Verdict]]:
    """The (record, verdict) pairs of one request of the job that this pass still needs; an
    unanswered request leaves its rows for review, naming the job's status."""
    if answer is None:
        reason = _unanswered(status)
        return [
            (r, Verdict(r["row"], None, "unresolved", reason)) for r in batch if r["row"] in current
        ]
    outcome = "ok" if answer.reply is not None else "malformed"
    usage = answer.reply.usage if answer.reply is not None else answer.usage
    cap.settle(0.0, usage, ledger.price)
    answered, normalized, method = {}, 0, ""
    if answer.reply is not None:
        answered, normalized = judge.read_reply(answer.reply.value, len(batch))
        method = answer.reply.method
    ledger.record(CallRecord(len(batch), usage, 0.0, outcome, method, normalized, batch_id))
    verdicts = judge.verdicts_of(batch, answered, answer.problem)  # bad rows asked alone
    # A resumed pass may find rows of its batch already settled (killed while handing over)
    return [(r, v) for r, v in zip(batch, verdicts, strict=True) if r["row"] in current]


def _wait(client: BatchClient, batch_id: str, record_path: Path, reporter: Reporter) -> BatchStatus:
    seen: list[str] = []

    def on_poll(status: BatchStatus) -> None:
        if not seen or seen[-1] != status.status:
            seen.append(status.status)
            reporter.info(f"batch {batch_id}: {status.status}")

    try:
        return wait_for_batch(client, batch_id, on_poll)
    except BaseException:
        # wait_for_batch cancelled it: a resumed run must not wait for a cancelled batch
        saved = _load(record_path) or {}
        _save(record_path, saved | {"cancelled": True})
        raise


def _unanswered(status: BatchStatus) -> str:
    detail = f" ({status.detail})" if status.detail else ""
    return f"Batch API batch {status.id} {status.status}{detail} without answering; left for review"


def _custom_id(index: int, batch: list[dict[str, Any]]) -> str:
    """Names the request's rows: its position in the pass, and its first and last row."""
    return f"judge-{index}-rows-{batch[0]['row']}-{batch[-1]['row']}"


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _save(path: Path, record: dict[str, Any]) -> None:
    """Written whole or not at all (a crash mid-write must not lose the batch id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(record, ensure_ascii=False) + "\n")
