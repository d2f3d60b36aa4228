"""choose_voters: settle label maps on the pilot, score the candidates, choose the voters.

Before scoring, the pilot settles label maps the names cannot
(:mod:`agent.discovery.calibration`): opaque labels are mapped by agreement or the model
is refused, inverted names are flipped. Each candidate is then scored by its accuracy on
the verified pilot rows when there are at least
:data:`~agent.discovery.calibration.MIN_ROWS` of them, else by leave-one-out consensus
(:mod:`agent.discovery.pilot_scoring`). Voters the user named are all kept; discovered ones
are chosen by score, skipping near-duplicates, up to ``--voters``. The chosen voters' pilot
votes are kept for the cost estimate, and their expected disagreement rate reported. Each
candidate takes the CPU precision the pilot measured for it (:mod:`agent.nodes.run_pilot`),
and a chosen voter's note says which and why.
"""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows
from agent.discovery.calibration import Calibration, calibrate_label_maps, verified_reference
from agent.discovery.learned_voters import learned_candidates
from agent.discovery.pilot_scoring import (
    Signal,
    basis_note,
    consensus_agreement,
    expected_flag_rate,
    rank_voters,
    verified_accuracy,
    voter_note,
    voter_signals,
    without_signal,
)
from agent.errors import UserInputError
from agent.labeler_runtime import voter_label_column, voter_probability_column
from agent.state import Candidate, PilotReport, PilotRun, Rejection, RunState, VoterScore
from agent.verification.pilot import pilot_labels, why_unverified

VOTES_FILE = "votes.json"
"""The chosen voters' pilot votes, in the pilot folder."""


def choose_voters(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings, pilot, candidates = context.settings, state.pilot_run, state.candidates
    output_rows = list(iter_rows(pilot.output_path))
    votes = {c.name: [row[voter_label_column(c.name)] for row in output_rows] for c in candidates}
    checked = state.pilot_verification
    truth = None
    if checked is not None:
        truth = verified_reference(pilot_labels(Path(checked.verdicts_path), pilot.rows))
    calibration = calibrate_label_maps(candidates, votes, state.plan.label_names, truth)
    _report_calibration(calibration, context)
    candidates, votes = _with_precision(calibration.candidates, pilot), calibration.votes
    agreement = {name: consensus_agreement(name, votes) for name in votes}
    accuracy = {name: verified_accuracy(votes[name], truth) for name in votes} if truth else {}
    signals = voter_signals(candidates, votes, truth) if truth else {}
    dropped = without_signal(signals)
    chosen, skipped = [c for c in candidates if c.name not in dropped], {}
    if not settings.models and chosen:
        chosen, skipped = rank_voters(
            chosen, accuracy or agreement, votes, settings.voters, tiebreak=agreement
        )
    learned = _learned(state, candidates, context)
    if not chosen and not learned:
        raise UserInputError(
            "no voter's votes carry signal about the labels of the verified pilot rows (none "
            "is right more often than chance), and no learned voter can be trained "
            "(--no-learned-voters or --verifier none): pass --model or a verifier"
        )
    verified_rows = checked.verified if checked else 0
    verdict = {c.name: _selected(c, pilot, signals.get(c.name)) for c in chosen} | skipped
    verdict |= {name: f"dropped, {reason}" for name, reason in dropped.items()}
    scores = tuple(
        _score(
            c, c in chosen, agreement, accuracy, (pilot.rows, verified_rows), verdict, calibration
        )
        for c in candidates
    )
    votes_path = Path(pilot.input_path).parent / VOTES_FILE
    chosen_votes = {c.name: votes[c.name] for c in chosen}
    votes_path.write_text(json.dumps(chosen_votes) + "\n", encoding="utf-8")
    report = PilotReport(
        rows=pilot.rows,
        scores=scores,
        disagreement_rate=_flag_rate(chosen, chosen_votes, output_rows, state, settings),
        output_path=pilot.output_path,
        basis="verified" if truth else "consensus",
        verifier=checked.verifier if checked else "",
        verified_rows=verified_rows,
        basis_note=_basis_note(state, truth is not None, context),
        verdicts_path=checked.verdicts_path if checked else None,
        votes_path=str(votes_path),
    )
    _report_choice(report, len(chosen) + len(learned), context)
    refused = tuple(
        Rejection(ref=c.ref, reason=dropped[c.name]) for c in candidates if c.name in dropped
    )
    return {
        "voters": (*chosen, *learned),
        "pilot": report,
        "rejections": state.rejections + tuple(calibration.rejections) + refused,
    }


def _flag_rate(chosen, chosen_votes, output_rows, state: RunState, settings) -> float:
    """The share of pilot rows the chosen voters would flag for review (1.0 with none)."""
    if not chosen:
        return 1.0
    return expected_flag_rate(
        list(chosen_votes.values()),
        [[float(row[voter_probability_column(c.name)]) for row in output_rows] for c in chosen],
        len(state.plan.label_names),
        settings.min_agreement,
        settings.min_confidence,
    )


def _with_precision(candidates, pilot: PilotRun) -> list[Candidate]:
    """The candidates, each transformer one with the CPU precision the pilot measured for it:
    the spec and the lock pin it, and the labeler applies it without measuring again."""
    return [
        (
            c.model_copy(update={"precision": pilot.precisions[c.name]})
            if c.name in pilot.precisions
            else c
        )
        for c in candidates
    ]


def _selected(candidate: Candidate, pilot: PilotRun, signal: Signal | None) -> str:
    """A chosen voter's verdict: why it is kept (the signal its votes carry, when the pilot
    was verified), and the CPU precision it will run at and why."""
    verdict = "selected" if signal is None else f"selected, {signal.brief()}"
    if candidate.precision is None:
        return verdict
    why = pilot.precision_notes.get(candidate.name)
    return f"{verdict}, {candidate.precision} on CPU" + (f" ({why})" if why else "")


def _learned(state: RunState, candidates, context: RunContext) -> list[Candidate]:
    """The learned voters, when they can learn: a verifier is at hand and they are on."""
    settings = context.settings
    if not settings.learned_voters or settings.resolved_verifier() == "none":
        return []
    learned = learned_candidates(state.plan, candidates)
    for candidate in learned:
        context.reporter.info(
            f"{candidate.name}: learned voter ({candidate.kind}), trained on the verified rows"
        )
    return learned


def _basis_note(state: RunState, scored_on_verified: bool, context: RunContext) -> str:
    checked = state.pilot_verification
    return basis_note(
        state.pilot_run.rows,
        checked.verifier if checked else "",
        checked.verified if checked else None,
        scored_on_verified,
        why_unverified(context),
        bool(context.settings.models),
    )


def _score(
    candidate: Candidate,
    selected: bool,
    agreement: dict[str, float],
    accuracy: dict[str, float],
    rows: tuple[int, int],
    verdict: dict[str, str],
    calibration: Calibration,
) -> VoterScore:
    """A candidate's scores and its note (``rows``: pilot rows, verified pilot rows)."""
    name = candidate.name
    return VoterScore(
        name=name,
        consensus_agreement=round(agreement[name], 4),
        verified_accuracy=round(accuracy[name], 4) if accuracy else None,
        selected=selected,
        note=voter_note(
            candidate,
            agreement[name],
            accuracy.get(name),
            rows,
            verdict.get(name, "not selected"),
            calibration.notes.get(name, ""),
        ),
    )


def _report_calibration(calibration: Calibration, context: RunContext) -> None:
    """Warn of what calibration found; a refused named voter stops the run."""
    for message in calibration.warnings:
        context.reporter.warn(message)
    for rejection in calibration.rejections:
        if context.settings.models:
            raise UserInputError(f"--model {rejection.ref} cannot be used: {rejection.reason}")
        context.reporter.info(f"refused {rejection.ref}: {rejection.reason}")
    if not calibration.candidates:
        raise UserInputError("no candidate survived the pilot; pass --model")


def _report_choice(report: PilotReport, chosen: int, context: RunContext) -> None:
    for line in (report.basis_note, *(score.note for score in report.scores)):
        context.reporter.info(line)
    if chosen == 1:
        context.reporter.warn("only one voter: no row can be a disagreement")
    context.reporter.info(
        f"expected disagreement rate: {report.disagreement_rate:.1%} of rows "
        f"(pilot of {report.rows})"
    )
