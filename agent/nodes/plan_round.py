"""plan_round: after each labeling pass, measure the labels, then choose the next round or stop.

The estimate: every verified row gets its verified label, and the accuracy of the rest is
read off the unmarked held-out rows (:mod:`agent.rounds.heldout`, :mod:`agent.estimate`:
accuracy and macro-F1 with 95% intervals; with the LLM as verifier it is agreement with
the LLM). The pilot's verified rows are the first held-out slice. Then the rounds stop at
the first rule that holds (:mod:`agent.rounds.schedule`: no verifier, the target reached,
the budget spent, every row verified, the learning curve flat), or the next round's rows
are chosen (:mod:`agent.rounds.selection`: by expected gain, plus a uniform held-out
slice) and written to ``rounds/round-N.jsonl`` for ``verify_round``. A round's choice is
saved before the held-out registry changes, so a resumed run makes the same choice.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows
from agent.estimate import describe
from agent.files import replace_durably, write_text_atomically
from agent.labeler_runtime import LEARNED_KINDS, output_text_column
from agent.rounds.heldout import estimate as estimate_labels
from agent.rounds.heldout import gather, open_round, predicted_labels
from agent.rounds.schedule import (
    StopCheck,
    round_rows,
    split_round,
    stop_after_choosing,
    stop_before_choosing,
)
from agent.rounds.selection import choose_rows
from agent.state import RoundRecord, RunState
from agent.verification.costs import LEDGER_FILE, ledger_totals
from agent.verification.store import (
    PILOT_REASON,
    VERDICTS_FILE,
    VERIFIED_SOURCES,
    read_heldout,
    write_heldout,
)
from agent.verification.stream import latest_by_row

FOLDER = "rounds"


def plan_round(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context, settings = runtime.context, runtime.context.settings
    run_dir = Path(state.run_dir)
    number = sum(1 for record in state.rounds if record.chosen) + 1
    verified, spent, pilot = _verdicts(run_dir)
    heldout = read_heldout(run_dir)
    if not state.rounds and not heldout:
        heldout = {row: False for row in pilot}  # the pilot's uniform sample: held out
        write_heldout(run_dir, heldout)
    verifier = verifier_basis(settings.resolved_verifier(), context)
    evidence = gather(
        predicted_labels(iter_rows(state.labeling.output_path)), verified, spent, heldout
    )
    estimate = estimate_labels(evidence, state.plan.label_names)
    limit = settings.verification_limit(state.dataset.rows)
    left = None if limit is None else limit - len(spent)
    record = RoundRecord(
        round=number,
        labeling_pass=state.labeling_passes,
        verified=len(verified),
        heldout=len(heldout),
        unverified=state.dataset.rows - len(verified),
        estimate=None if estimate is None else estimate.as_dict() | {"basis": verifier},
        cost_usd=ledger_totals(run_dir / LEDGER_FILE)["cost_usd"],
        seconds=round(time.time() - state.started_at, 1) if state.started_at else 0.0,
    )
    context.reporter.info(_progress_line(record, state, estimate, verifier, left))
    check = StopCheck(
        verifier=settings.resolved_verifier(),
        estimate=None if estimate is None else estimate.accuracy.point,
        target=settings.target_accuracy,
        heldout_rows=0 if estimate is None else estimate.heldout_rows,
        left=left,
        unverified=state.dataset.rows - len(spent),
    )
    stop = stop_before_choosing(check)
    if stop is None:
        size = round_rows(number, state.dataset.rows, settings.round_rows, left)
        choice = _saved_or_chosen(state, number, size, spent, heldout, settings.heldout_share)
        if choice["candidates"] == 0:
            stop = ("exhausted", "every row is verified")
        else:
            stop = stop_after_choosing(
                number, choice["expected_yield"], len(choice["gain"]), settings.min_round_yield
            )
        if stop is None:
            record = _open_round(state, record, choice, heldout, context)
            return {"rounds": (*state.rounds, record), "target_accuracy": settings.target_accuracy}
    record = record.model_copy(update={"stop": stop[0], "stop_note": stop[1]})
    _report_stop(record, state, settings, context)
    return {"rounds": (*state.rounds, record), "target_accuracy": settings.target_accuracy}


def verifier_basis(verifier: str, context: RunContext) -> str:
    """What "right" means for the estimate: ``column:NAME``, ``human`` or ``llm:<model>``."""
    if verifier == "llm":
        return f"llm:{getattr(context.llm, 'model_name', 'unknown')}"
    return verifier


def _verdicts(run_dir: Path) -> tuple[dict[int, str], set[int], set[int]]:
    """(row -> verified label; rows spent: verified or awaiting a verdict; the pilot's
    verified rows)."""
    verified, spent, pilot = {}, set(), set()
    for verdict in latest_by_row(run_dir / VERDICTS_FILE):
        if verdict["source"] == "vote":
            continue
        spent.add(verdict["row"])
        if verdict["source"] in VERIFIED_SOURCES and verdict["label"] is not None:
            verified[verdict["row"]] = verdict["label"]
            if str(verdict.get("reason", "")).startswith(PILOT_REASON):
                pilot.add(verdict["row"])
    return verified, spent, pilot


def _saved_or_chosen(state, number, size, spent, heldout, share) -> dict:
    """This round's choice: the one saved by an interrupted attempt at it, else a new one."""
    path = Path(state.run_dir) / FOLDER / f"round-{number}.json"
    if path.exists():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["labeling_pass"] == state.labeling_passes:
            return saved
    gain_rows, heldout_rows = split_round(size, share)
    choice = choose_rows(
        iter_rows(state.labeling.output_path),
        spent=spent,
        heldout=heldout,
        gain_rows=gain_rows,
        heldout_rows=heldout_rows,
        seed=f"{state.dataset.sha256}:round-{number}",
        text_column=output_text_column(state),
        voters=tuple(voter.name for voter in state.voters),
        learned=tuple(v.name for v in state.voters if v.kind in LEARNED_KINDS),
    )
    saved = {
        "round": number,
        "labeling_pass": state.labeling_passes,
        "candidates": choice.candidates,
        "expected_yield": choice.expected_yield,
        "gain": [record["row"] for record in choice.gain],
        "heldout": [record["row"] for record in choice.heldout],
        "marked": sorted(choice.marked),
        "records": choice.records,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(saved, ensure_ascii=False) + "\n")
    return saved


def _open_round(
    state: RunState, record: RoundRecord, choice: dict, heldout: dict[int, bool], context
) -> RoundRecord:
    """Register the round's held-out rows and marks, and write its rows for the verifier."""
    run_dir = Path(state.run_dir)
    open_round(heldout, choice["heldout"], choice["marked"])
    write_heldout(run_dir, heldout)
    path = run_dir / FOLDER / f"round-{record.round}.jsonl"
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        for entry in choice["records"]:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    replace_durably(temporary, path)
    chosen, held = len(choice["records"]), len(choice["heldout"])
    expected = choice["expected_yield"]
    context.reporter.info(
        f"round {record.round} verifies {chosen} rows: {chosen - held} by expected gain"
        + (f" (the vote expects {expected:.0%} of them wrong)" if expected is not None else "")
        + f", {held} held out"
    )
    return record.model_copy(
        update={
            "chosen": chosen,
            "chosen_heldout": held,
            "expected_yield": None if expected is None else round(expected, 4),
            "records_path": str(path),
        }
    )


def _progress_line(record: RoundRecord, state: RunState, estimate, verifier: str, left) -> str:
    rows = state.dataset.rows
    line = (
        f"after pass {record.labeling_pass}: {record.verified} rows verified "
        f"({record.verified / max(rows, 1):.1%}; {record.heldout} held out)"
    )
    if estimate is not None:
        line += "; " + describe(estimate, verifier)
    if record.cost_usd:
        line += f"; LLM cost so far ${record.cost_usd:.4f}"
    line += f"; {record.seconds:.0f} s so far"
    if left is not None and left > 0 and record.round > 1 and record.seconds:
        per_row = record.seconds / max(record.verified, 1)
        line += f", about {per_row * left:.0f} s left at this pace"
    return line


def _report_stop(record: RoundRecord, state: RunState, settings, context) -> None:
    context.reporter.info(f"rounds stop: {record.stop_note}")
    target, estimate = settings.target_accuracy, record.estimate
    if target is None or estimate is None or record.stop in ("target", "no-verifier"):
        return
    accuracy = estimate["accuracy"]
    context.reporter.warn(
        f"--target-accuracy {target:g} not reached: estimated accuracy {accuracy['point']:.3f} "
        f"({accuracy['low']:.3f}-{accuracy['high']:.3f}) with {record.verified} rows verified "
        f"({record.verified / max(state.dataset.rows, 1):.1%}); "
        + _what_it_takes(record, state, target)
    )


def _what_it_takes(record: RoundRecord, state: RunState, target: float) -> str:
    """What reaching the target would take, from the learning curve's last slope."""
    earlier = [r for r in state.rounds if r.estimate is not None and r.verified < record.verified]
    if earlier:
        before = earlier[-1]
        gained = record.estimate["accuracy"]["point"] - before.estimate["accuracy"]["point"]
        per_row = gained / (record.verified - before.verified)
        if per_row > 0:
            more = (target - record.estimate["accuracy"]["point"]) / per_row
            if more < record.unverified:
                return (
                    f"at the last round's pace about {more:.0f} more verified rows would reach "
                    "it (raise --max-verified)"
                )
    return "the learning curve does not reach it within the data: better voters would"
