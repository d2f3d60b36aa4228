"""vet_models: run every candidate on a pilot sample and choose the voters.

The pilot is the real labeler, rendered with all candidates and run in the
sandbox on a reproducible sample of the data. When a verifier is at hand, a
uniform sample of ``--pilot-verify`` pilot rows is verified too
(:mod:`agent.verification.pilot`: by a data column or the LLM), and each
candidate is scored by its accuracy on them; those verdicts are kept as the
run's own (applied to the output, never asked again); otherwise, or
with fewer than :data:`~agent.discovery.calibration.MIN_ROWS` verified rows, by how
often it agrees with the majority of the *other* candidates (leave-one-out
consensus), which cannot tell a right majority from a wrong one. Before scoring,
the pilot settles label maps the names cannot (:mod:`agent.discovery.calibration`,
against the same reference): opaque labels are mapped by agreement or the model
is refused, inverted names are flipped. Voters the user named are all kept;
discovered ones are chosen by score, skipping near-duplicates, up to ``--voters``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows, sample_rows
from agent.discovery.calibration import MIN_ROWS, calibrate_label_maps, verified_reference
from agent.errors import UserInputError
from agent.labeler_runtime import TableWriter
from agent.packaging.build import build_package, build_spec, package_names, provenance
from agent.packaging.runner import LabelerJob, run_labeler_job
from agent.state import Candidate, PilotReport, RunState, VoterScore
from agent.verification.costs import check_verification_cost
from agent.verification.pilot import (
    PilotVerdicts,
    keep_verified,
    pilot_verifier,
    verify_pilot,
    why_unverified,
)

REDUNDANT_AGREEMENT = 0.99
"""Two voters agreeing this often add nothing to each other."""


def vet_models(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    plan = state.plan
    sample = sample_rows(state.dataset, settings.pilot_rows, seed=state.dataset.sha256)
    context.reporter.stage(
        "vet_models", f"{len(state.candidates)} candidates on {len(sample)} rows"
    )
    votes, output_path = run_pilot(state, context, sample)
    verifier = pilot_verifier(context, state.candidates)
    verdicts = None
    if verifier is not None:
        run_dir = Path(state.run_dir)
        verdicts = verify_pilot(verifier, sample, plan, state.dataset, run_dir, context)
        kept = keep_verified(verdicts, run_dir)
        if verdicts.verified:
            context.reporter.info(
                f"{verdicts.verified} verified pilot rows are kept as verdicts of the run "
                f"({kept} new): they count as verified and are not asked again"
            )
    truth = verified_reference(verdicts.labels) if verdicts else None
    calibration = calibrate_label_maps(state.candidates, votes, plan.label_names, truth)
    candidates, votes = calibration.candidates, calibration.votes
    for message in calibration.warnings:
        context.reporter.warn(message)
    for rejection in calibration.rejections:
        if settings.models:
            raise UserInputError(f"--model {rejection.ref} cannot be used: {rejection.reason}")
        context.reporter.info(f"refused {rejection.ref}: {rejection.reason}")
    if not candidates:
        raise UserInputError("no candidate survived the pilot; pass --model")
    agreement = {name: consensus_agreement(name, votes) for name in votes}
    accuracy = {name: verified_accuracy(votes[name], truth) for name in votes} if truth else {}
    skipped: dict[str, str] = {}
    if settings.models:
        chosen = list(candidates)
    else:
        chosen, skipped = choose_voters(
            candidates, accuracy or agreement, votes, settings.voters, tiebreak=agreement
        )
    verdict = {c.name: "selected" for c in chosen} | skipped
    report = PilotReport(
        rows=len(sample),
        scores=tuple(
            VoterScore(
                name=c.name,
                consensus_agreement=round(agreement[c.name], 4),
                verified_accuracy=round(accuracy[c.name], 4) if accuracy else None,
                selected=c in chosen,
                note=_note(
                    c,
                    agreement[c.name],
                    accuracy.get(c.name),
                    (len(sample), verdicts.verified if verdicts else 0),
                    verdict.get(c.name, "not selected"),
                    calibration.notes.get(c.name, ""),
                ),
            )
            for c in candidates
        ),
        disagreement_rate=expected_flag_rate(
            [votes[c.name] for c in chosen],
            [pilot_probabilities(output_path, c.name) for c in chosen],
            len(plan.label_names),
            settings.min_agreement,
            settings.min_confidence,
        ),
        output_path=str(output_path),
        basis="verified" if truth else "consensus",
        verifier=verdicts.verifier if verdicts else "",
        verified_rows=verdicts.verified if verdicts else 0,
        basis_note=basis_note(len(sample), verdicts, truth is not None, context),
        verdicts_path=verdicts.path if verdicts else None,
    )
    for line in (report.basis_note, *(score.note for score in report.scores)):
        context.reporter.info(line)
    if len(chosen) == 1:
        context.reporter.warn("only one voter: no row can be a disagreement")
    context.reporter.info(
        f"expected disagreement rate: {report.disagreement_rate:.1%} of rows "
        f"(pilot of {report.rows})"
    )
    texts = [row.get(plan.text_column) for _, row in sample]
    chosen_votes = {c.name: votes[c.name] for c in chosen}
    check_verification_cost(
        state, context, texts, chosen_votes, report.disagreement_rate, report.verified_rows
    )
    return {
        "voters": tuple(chosen),
        "pilot": report,
        "rejections": state.rejections + tuple(calibration.rejections),
    }


def run_pilot(
    state: RunState, context: RunContext, sample: Sequence[tuple[int, dict]]
) -> tuple[dict[str, list[str]], Path]:
    """Every candidate's vote on every pilot row, from the rendered labeler run in the sandbox."""
    plan, settings, candidates = state.plan, context.settings, state.candidates
    pilot_dir = Path(state.run_dir) / "pilot"
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
    return votes, job.output_path


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


def verified_accuracy(own: Sequence[str], verified: Sequence[str | None]) -> float:
    """Share of the verified rows where ``own`` gave the verified label (no vote is wrong)."""
    pairs = [(vote, label) for vote, label in zip(own, verified, strict=True) if label is not None]
    return sum(vote == label for vote, label in pairs) / len(pairs) if pairs else 0.0


def choose_voters(
    candidates: Sequence[Candidate],
    scores: dict[str, float],
    votes: dict[str, list[str]],
    k: int,
    tiebreak: dict[str, float] | None = None,
) -> tuple[list[Candidate], dict[str, str]]:
    """Best-scoring candidates first, skipping one that duplicates a voter already chosen.

    Returns the voters and, for each candidate skipped as a duplicate, why.
    """
    tiebreak = tiebreak or {}
    ranked = sorted(
        candidates,
        key=lambda c: (-scores[c.name], -tiebreak.get(c.name, 0.0), -(c.downloads or 0), c.name),
    )
    chosen: list[Candidate] = []
    skipped: dict[str, str] = {}
    for candidate in ranked:
        if len(chosen) == k:
            break
        own = votes[candidate.name]
        twin = next(
            (c for c in chosen if _agreement(own, votes[c.name]) >= REDUNDANT_AGREEMENT), None
        )
        if twin is not None:
            share = _agreement(own, votes[twin.name])
            skipped[candidate.name] = (
                f"not selected: it duplicates {twin.name} (the same vote on {share:.0%} of "
                "pilot rows)"
            )
            continue
        chosen.append(candidate)
    if not chosen:
        return list(ranked[:k]), {}
    return chosen, skipped


def _agreement(first: list[str], second: list[str]) -> float:
    return sum(a == b for a, b in zip(first, second, strict=True)) / max(len(first), 1)


def pilot_probabilities(output_path: Path, name: str) -> list[float]:
    """The probability ``name`` gave its own label on each pilot row."""
    return [float(row[f"prob_{name}"]) for row in iter_rows(output_path)]


def expected_flag_rate(
    votes: Sequence[list[str | None]],
    probabilities: Sequence[list[float]],
    labels: int,
    min_agreement: float,
    min_confidence: float = 0.0,
) -> float:
    """Share of rows the review rule would flag under the plain vote: the winning label's vote
    share below ``min_agreement`` or the voters' mean probability for it below
    ``min_confidence``. Abstaining voters (no label) do not count. An estimate for more than
    two labels: a voter's probability for a label it did not choose is taken as an even share
    of what its own label left."""
    rows = len(votes[0]) if votes else 0
    if rows == 0:
        return 0.0
    flagged = 0
    for row in range(rows):
        ballots = [
            (own[row], chance[row])
            for own, chance in zip(votes, probabilities, strict=True)
            if own[row] not in (None, "")
        ]
        if not ballots:
            flagged += 1
            continue
        counts = Counter(label for label, _ in ballots)
        top = max(counts.values())

        def support(label: str, ballots=ballots) -> float:
            rest = max(labels - 1, 1)
            return sum(p if own == label else (1 - p) / rest for own, p in ballots)

        winner = max((label for label in counts if counts[label] == top), key=support)
        agreement = round(top / len(ballots), 6)
        flagged += agreement < min_agreement or support(winner) / len(ballots) < min_confidence
    return flagged / rows


def _note(
    candidate: Candidate,
    agreement: float,
    accuracy: float | None,
    rows: tuple[int, int],
    verdict: str,
    calibrated: str,
) -> str:
    """One line on a candidate: its scores (``rows``: pilot rows, verified rows), whether it
    was selected, and how its label map was decided when its names did not say."""
    pilot_rows, verified_rows = rows
    consensus = (
        f"agreed with the other voters' majority on {agreement:.0%} of {pilot_rows} pilot rows"
    )
    if accuracy is None:
        note = f"{candidate.name} ({candidate.ref}): {consensus}; {verdict}"
    else:
        note = (
            f"{candidate.name} ({candidate.ref}): right on {accuracy:.0%} of {verified_rows} "
            f"verified pilot rows ({consensus}); {verdict}"
        )
    return "".join(
        [note, *(f"; {more}" for more in (candidate.label_map_note, calibrated) if more)]
    )


def basis_note(
    rows: int, verdicts: PilotVerdicts | None, scored_on_verified: bool, context: RunContext
) -> str:
    """How the candidates were scored and chosen, and why on that basis."""
    if scored_on_verified:
        who = verdicts.verifier
        who = f"the LLM ({who[4:]})" if who.startswith("llm:") else who.replace(":", " ", 1)
        scored = (
            f"scored on a pilot of {rows} rows by accuracy against the {verdicts.verified} of "
            f"them verified by {who}"
        )
    else:
        if verdicts is not None:
            why = f"only {verdicts.verified} could be verified, fewer than {MIN_ROWS}"
        else:
            why = why_unverified(context)
        scored = (
            f"scored on a pilot of {rows} rows by leave-one-out consensus (agreement with the "
            f"other candidates' majority), not by verified rows: {why}"
        )
    if context.settings.models:
        return f"Voters named with --model, all kept; {scored}."
    return f"Candidates {scored}; the best are kept, skipping near-duplicates."
