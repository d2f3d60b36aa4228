"""vet_models: run every candidate on a pilot sample and choose the voters.

The pilot is the real labeler, rendered with all candidates and run in the
sandbox on a reproducible sample of the data. Each candidate is scored by how
often it agrees with the majority of the *other* candidates (leave-one-out
consensus). Before scoring, the pilot settles label maps the names cannot
(:mod:`agent.label_calibration`): opaque labels are mapped by agreement or the
model is refused, inverted names are flipped. Voters the user named are all
kept; discovered ones are chosen by score, skipping near-duplicates, up to
``--voters``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from langgraph.runtime import Runtime

from templates.labeler.pkg.tabular import TableWriter

from ..context import RunContext
from ..costs import check_verification_cost
from ..data import iter_rows, sample_rows
from ..errors import UserInputError
from ..label_calibration import calibrate_label_maps
from ..labeler_runs import LabelerJob, run_labeler_job
from ..packaging import build_package, build_spec, package_names, provenance
from ..state import Candidate, PilotReport, RunState, VoterScore

REDUNDANT_AGREEMENT = 0.99
"""Two voters agreeing this often add nothing to each other."""


def vet_models(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    plan = state.plan
    candidates = state.candidates
    pilot_dir = Path(state.run_dir) / "pilot"
    sample = sample_rows(state.dataset, settings.pilot_rows, seed=state.dataset.sha256)
    context.reporter.stage("vet_models", f"{len(candidates)} candidates on {len(sample)} rows")
    pilot_input = pilot_dir / "input.jsonl"
    with TableWriter(pilot_input, [plan.text_column]) as writer:
        writer.write({plan.text_column: row.get(plan.text_column)} for _, row in sample)
    spec = build_spec(plan, candidates, settings)
    package_dir = build_package(
        pilot_dir / "package", spec, provenance(state, settings, None), candidates
    )
    job = LabelerJob(
        package_dir=package_dir,
        module=package_names(plan)[1],
        input_path=pilot_input,
        output_path=pilot_dir / "work" / "output.jsonl",
        workdir=pilot_dir / "work",
        text_column=plan.text_column,
    )
    run_labeler_job(
        context.sandbox,
        job,
        settings,
        lambda done, total: context.reporter.progress("pilot", done, total),
    )
    votes = {
        c.name: [row[f"label_{c.name}"] for row in iter_rows(job.output_path)] for c in candidates
    }
    calibration = calibrate_label_maps(candidates, votes, plan.label_names)
    candidates, votes = calibration.candidates, calibration.votes
    for message in calibration.warnings:
        context.reporter.warn(message)
    for rejection in calibration.rejections:
        if settings.models:
            raise UserInputError(f"--model {rejection.ref} cannot be used: {rejection.reason}")
        context.reporter.info(f"refused {rejection.ref}: {rejection.reason}")
    if not candidates:
        raise UserInputError("no candidate survived the pilot; pass --model")
    scores = {name: consensus_agreement(name, votes) for name in votes}
    if settings.models:
        chosen = list(candidates)
    else:
        chosen = choose_voters(candidates, scores, votes, settings.voters)
    chosen_names = {c.name for c in chosen}
    report = PilotReport(
        rows=len(sample),
        scores=tuple(
            VoterScore(
                name=c.name,
                consensus_agreement=round(scores[c.name], 4),
                selected=c.name in chosen_names,
                note=_note(c, scores[c.name], len(sample), c.name in chosen_names)
                + (f"; {calibration.notes[c.name]}" if c.name in calibration.notes else ""),
            )
            for c in candidates
        ),
        disagreement_rate=disagreement_rate(
            [votes[c.name] for c in chosen], settings.min_agreement
        ),
        output_path=str(job.output_path),
    )
    for score in report.scores:
        context.reporter.info(score.note)
    if len(chosen) == 1:
        context.reporter.warn("only one voter: no row can be a disagreement")
    context.reporter.info(
        f"expected disagreement rate: {report.disagreement_rate:.1%} of rows "
        f"(pilot of {report.rows})"
    )
    texts = [row.get(plan.text_column) for _, row in sample]
    chosen_votes = {c.name: votes[c.name] for c in chosen}
    check_verification_cost(state, context, texts, chosen_votes, report.disagreement_rate)
    return {
        "voters": tuple(chosen),
        "pilot": report,
        "rejections": state.rejections + tuple(calibration.rejections),
    }


def consensus_agreement(name: str, votes: dict[str, list[str]]) -> float:
    """Share of rows where ``name`` agrees with the strict majority of the other voters."""
    others = [labels for other, labels in votes.items() if other != name]
    if not others:
        return 1.0
    agreed = counted = 0
    for row, own in enumerate(votes[name]):
        tally = Counter(labels[row] for labels in others).most_common(2)
        if len(tally) > 1 and tally[0][1] == tally[1][1]:
            continue  # the others are split: no consensus to compare with
        counted += 1
        agreed += own == tally[0][0]
    return agreed / counted if counted else 0.0


def choose_voters(
    candidates: Sequence[Candidate],
    scores: dict[str, float],
    votes: dict[str, list[str]],
    k: int,
) -> list[Candidate]:
    """Best-scoring candidates first, skipping one that duplicates a voter already chosen."""
    ranked = sorted(candidates, key=lambda c: (-scores[c.name], -(c.downloads or 0), c.name))
    chosen: list[Candidate] = []
    for candidate in ranked:
        if len(chosen) == k:
            break
        own = votes[candidate.name]
        if any(_agreement(own, votes[c.name]) >= REDUNDANT_AGREEMENT for c in chosen):
            continue
        chosen.append(candidate)
    return chosen or list(ranked[:k])


def _agreement(first: list[str], second: list[str]) -> float:
    return sum(a == b for a, b in zip(first, second, strict=True)) / max(len(first), 1)


def disagreement_rate(votes: Sequence[list[str]], min_agreement: float) -> float:
    """Share of rows whose winning label has a vote share below ``min_agreement``."""
    rows = len(votes[0]) if votes else 0
    if rows == 0:
        return 0.0
    disputed = 0
    for row in range(rows):
        top = Counter(labels[row] for labels in votes).most_common(1)[0][1]
        disputed += round(top / len(votes), 6) < min_agreement
    return disputed / rows


def _note(candidate: Candidate, score: float, rows: int, selected: bool) -> str:
    verdict = "selected" if selected else "not selected"
    return (
        f"{candidate.name} ({candidate.ref}): agreed with the other voters' majority on "
        f"{score:.0%} of {rows} pilot rows; {verdict}"
    )
