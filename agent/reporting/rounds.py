"""The report's account of the verification rounds, the learned voters and the refused models.

After each labeling pass the agent estimates how good the final labels are (verified rows keep
their verified label; the accuracy of the rest is read off the held-out rows) and either opens
a round of verification or stops. This module turns those ``RoundRecord`` entries into the
page's learning curve, rounds table and summary lines, and lists the learned voters (latest
version of each) and the models refused, with their reasons. With an LLM as verifier, "right"
means "as the LLM said", and every heading here says so.
"""

from __future__ import annotations

from typing import Any

from agent.reporting.figures import CurvePoint, plot_learning_curve
from agent.reporting.records import share
from agent.state import RoundRecord, RunState


def rounds_fields(state: RunState) -> dict[str, Any]:
    """The page's fields for the Rounds, Learned voters and Rejected models sections."""
    estimated = [record for record in state.rounds if record.estimate is not None]
    what = accuracy_name(estimated[-1].estimate["basis"] if estimated else "")
    points = [
        CurvePoint(
            verified=record.verified,
            point=record.estimate["accuracy"]["point"],
            low=record.estimate["accuracy"]["low"],
            high=record.estimate["accuracy"]["high"],
        )
        for record in estimated
    ]
    return {
        "rounds_plot": (
            plot_learning_curve(points, state.target_accuracy, what) if points else None
        ),
        "rounds_note": _rounds_note(estimated[-1] if estimated else None),
        "rounds": tuple(_round_row(record, state.dataset.rows) for record in state.rounds),
        "learned": _learned_rows(state),
        "rejections": tuple((rejection.ref, rejection.reason) for rejection in state.rejections),
    }


def accuracy_name(basis: str) -> str:
    """What the estimate measures: accuracy, or agreement with the LLM when it verified."""
    if basis.startswith("llm"):
        return "estimated agreement with the LLM verifier"
    return "estimated accuracy"


def interval(value: dict[str, float]) -> str:
    """``0.912 (0.890-0.930)``: a point estimate and its interval."""
    return f"{value['point']:.3f} ({value['low']:.3f}-{value['high']:.3f})"


def rounds_summary(state: RunState) -> list[tuple[str, str]]:
    """Summary lines: the final estimate, the target and whether it was met, why rounds stopped."""
    if not state.rounds:
        return []
    last = state.rounds[-1]
    estimate = last.estimate
    rows = []
    if estimate is not None:
        level = f"{estimate.get('level', 0.95):.0%} interval"
        rests = f"{level}, {estimate['heldout_rows']} held-out rows"
        names = ((accuracy_name(estimate["basis"]), "accuracy"), ("estimated macro-F1", "macro_f1"))
        for name, key in names:
            rows.append((name, f"{interval(estimate[key])}; {rests}"))
    if state.target_accuracy is not None:
        if estimate is None:
            met = "not estimated"
        else:
            met = "met" if estimate["accuracy"]["point"] >= state.target_accuracy else "not met"
        rows.append(("target accuracy", f"{state.target_accuracy:g}: {met}"))
    rounds = sum(1 for record in state.rounds if record.chosen)
    rows.append(("verification rounds", str(rounds)))
    rows.append(("rounds stopped", _stop_text(last) or "-"))
    return rows


def _rounds_note(last: RoundRecord | None) -> str:
    if last is None:
        return "No estimate of the labels' accuracy: no held-out row was verified."
    estimate = last.estimate
    level = f"{estimate.get('level', 0.95):.0%}"
    note = (
        "Each point is the estimated accuracy of the final labels after a labeling pass: "
        "verified rows keep their verified label, and the accuracy of the rest is read off "
        f"the held-out rows (verified, their labels never trained on); the band is the {level} "
        "interval."
    )
    basis = estimate["basis"]
    if basis.startswith("llm"):
        model = basis.split(":", 1)[1] if ":" in basis else "an LLM"
        note += (
            f" The verifier is an LLM ({model}), so this is the estimated agreement with the "
            "LLM verifier, not accuracy against ground truth."
        )
    elif basis:
        note += f" Right means as verified by {basis}."
    return note


def _round_row(record: RoundRecord, rows: int) -> tuple[str, ...]:
    estimate = record.estimate
    chosen = f"{record.chosen} ({record.chosen_heldout} held out)" if record.chosen else "-"
    return (
        str(record.round),
        str(record.labeling_pass),
        f"{record.verified} ({share(record.verified, rows)})",
        str(record.heldout),
        interval(estimate["accuracy"]) if estimate else "-",
        interval(estimate["macro_f1"]) if estimate else "-",
        chosen,
        "-" if record.expected_yield is None else f"{record.expected_yield:.1%}",
        f"${record.cost_usd:.4f}",
        f"{record.seconds:.1f}",
        _stop_text(record),
    )


def _stop_text(record: RoundRecord) -> str:
    if record.stop is None:
        return ""
    return f"{record.stop}: {record.stop_note}" if record.stop_note else record.stop


def _learned_rows(state: RunState) -> tuple[tuple[str, ...], ...]:
    """The latest version of each learned voter, in the order they were first trained."""
    latest = {}
    for record in state.learned:
        latest[record.voter] = record
    return tuple(
        (
            record.voter,
            record.kind,
            record.version,
            str(record.examples),
            f"{record.cross_validated_accuracy:.1%}",
            str(record.before_pass),
        )
        for record in latest.values()
    )
