"""The run report: ``report.html`` in the run folder, one self-contained page a person can open.

It shows what happened in a run: the final labels by source, how the voters agreed with each
other and with the verified labels, how many rows were escalated, the confidence of the vote,
what the LLM cost, how long the stages took, how the estimated accuracy rose over the rounds of
verification, the learned voters, the models refused, and the rows the voters disputed most.

The counts come from ``tally`` (streamed over the labeled output), the plots from ``figures``
and the rounds' records from ``rounds``; this module turns them and the run state into the
page's records and tables and writes the page. The page needs nothing from a network: styles
are inline, plots are PNG data URIs drawn by matplotlib's Agg renderer, there is no script,
and a Content-Security-Policy forbids loading anything else. Every value from the user's data
goes through Jinja's HTML autoescaping.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path

import jinja2

from agent.files import write_text_atomically
from agent.reporting.figures import (
    plot_agreement_matrix,
    plot_confidence_histogram,
    plot_label_distribution,
    plot_sources,
    plot_verified_agreement,
)
from agent.reporting.records import ReportPage, percent, share
from agent.reporting.rounds import rounds_fields, rounds_summary
from agent.reporting.tally import NO_LABEL, SOURCES, RunTally, tally_run
from agent.state import RunState
from agent.verification.store import read_jsonl

REPORT_FILE = "report.html"
LEDGER_FILE = "ledger.jsonl"


def write_report(
    state: RunState, run_dir: Path, reporter_timings: Mapping[str, float] | None = None
) -> Path:
    """Write ``report.html`` into ``run_dir`` (atomically) and return its path.

    ``reporter_timings`` maps stage names to seconds, when the caller measured them.
    """
    run_dir = Path(run_dir)
    page = build_page(state, run_dir, reporter_timings or {})
    html = _template().render(page=page)
    target = run_dir / REPORT_FILE
    write_text_atomically(target, html)
    return target


def build_page(state: RunState, run_dir: Path, timings: Mapping[str, float]) -> ReportPage:
    tally = tally_run(state)
    ledger = list(_ledger_rows(run_dir / LEDGER_FILE))
    voters = tally.voters
    labels = _label_order(state, tally)
    verifier = state.verification.verifier if state.verification else "none (no disagreements)"
    return ReportPage(
        run_id=state.run_id,
        task=state.task,
        data_path=state.dataset.path,
        labels=state.plan.label_names if state.plan else (),
        verifier=verifier,
        summary=_summary(state, tally, ledger),
        voter_names=voters,
        voters=_voter_rows(state),
        pilot_basis=state.pilot.basis_note if state.pilot else "",
        label_plot=plot_label_distribution(tally, labels),
        sources=tuple(
            (source, str(tally.sources[source]), share(tally.sources[source], tally.rows))
            for source in SOURCES
        ),
        source_plot=plot_sources(tally),
        agreement_plot=plot_agreement_matrix(tally) if len(voters) > 1 else None,
        agreement_table=tuple(
            (name, *(percent(tally.pair_agreement(i, j)) for j in range(len(voters))))
            for i, name in enumerate(voters)
        ),
        verified_rows=tally.verified_rows,
        verified_plot=plot_verified_agreement(tally) if tally.verified_rows else None,
        verified_table=tuple(
            (
                name,
                f"{tally.verified_agreed[name]} / {tally.verified_votes[name]}",
                share(tally.verified_agreed[name], tally.verified_votes[name]),
            )
            for name in voters
        ),
        confidence_plot=plot_confidence_histogram(tally),
        ledger=_ledger_table(ledger),
        timings=_timings(state, timings, ledger),
        finetune=_finetune_rows(state),
        votes=tuple(
            (
                vote.version,
                str(vote.before_pass),
                str(vote.examples),
                ", ".join(f"{name} {weight:.2f}" for name, weight in vote.weights.items()),
                f"{percent(vote.cross_validated_accuracy)} (plain vote "
                f"{percent(vote.plain_vote_accuracy)})",
                "used" if vote.adopted else "plain vote kept",
            )
            for vote in state.votes
        ),
        disputed=tuple(tally.most_disputed()),
        **rounds_fields(state),
    )


def _finetune_rows(state: RunState) -> tuple[tuple[str, ...], ...]:
    rows = []
    for stage in state.finetune:
        after = "-" if stage.escalated_after is None else str(stage.escalated_after)
        agreement = "-" if stage.agreement_after is None else percent(stage.agreement_after)
        for voter in stage.voters:
            rows.append(
                (
                    str(stage.stage),
                    voter.voter,
                    f"{stage.verified_rows} (+{stage.replay_rows} replayed)",
                    f"{percent(voter.holdout_before)} -> {percent(voter.holdout_after)} "
                    f"on {stage.holdout_rows} rows",
                    voter.version or "rolled back",
                    f"{stage.escalated_before} -> {after}",
                    f"{percent(stage.agreement_before)} -> {agreement}",
                )
            )
    return tuple(rows)


def _label_order(state: RunState, tally: RunTally) -> list[str]:
    labels = list(state.plan.label_names) if state.plan else []
    seen = sorted({label for label, _ in tally.labels_by_source} - set(labels) - {NO_LABEL})
    no_label = [NO_LABEL] if any(label == NO_LABEL for label, _ in tally.labels_by_source) else []
    return labels + seen + no_label


def _summary(state: RunState, tally: RunTally, ledger: list[dict]) -> tuple[tuple[str, str], ...]:
    escalated = tally.rows - tally.sources["consensus"]
    rows = [
        ("rows labeled", str(tally.rows)),
        ("voters", str(len(tally.voters))),
        ("rows escalated", f"{escalated} ({share(escalated, tally.rows)})"),
        ("rows verified (LLM or human)", str(tally.verified_rows)),
        ("rows unresolved", str(tally.sources["unresolved"])),
        ("LLM calls", str(len(ledger))),
        ("LLM cost", f"${sum(entry['cost_usd'] for entry in ledger):.4f}"),
    ]
    if state.pilot is not None:
        rows.append(("expected disagreement (pilot)", f"{state.pilot.disagreement_rate:.1%}"))
        scoring = "leave-one-out consensus"
        if state.pilot.basis == "verified":
            pilot = state.pilot
            scoring = f"accuracy on {pilot.verified_rows} pilot rows verified by {pilot.verifier}"
        rows.append(("candidates scored by", scoring))
    rows.extend(rounds_summary(state))
    return tuple(rows)


def _voter_rows(state: RunState) -> tuple[tuple[str, ...], ...]:
    candidates = {c.name: c for c in (*state.candidates, *state.voters)}
    selected = {voter.name for voter in state.voters}
    scores = {score.name: score for score in state.pilot.scores} if state.pilot else {}
    names = list(scores) + [name for name in candidates if name not in scores]
    rows = []
    for name in names:
        candidate, score = candidates.get(name), scores.get(name)
        rows.append(
            (
                name,
                candidate.ref if candidate else "",
                candidate.kind if candidate else "",
                percent(score.consensus_agreement) if score else "-",
                (
                    percent(score.verified_accuracy)
                    if score and score.verified_accuracy is not None
                    else "-"
                ),
                "yes" if name in selected else "no",
            )
        )
    return tuple(rows)


def _ledger_rows(path: Path) -> Iterator[dict]:
    for entry in read_jsonl(path):
        yield {
            "model": str(entry.get("model", "")),
            "outcome": str(entry.get("outcome", "")),
            "rows": int(entry.get("rows") or 0),
            "prompt_tokens": int(entry.get("prompt_tokens") or 0),
            "completion_tokens": int(entry.get("completion_tokens") or 0),
            "cost_usd": float(entry.get("cost_usd") or 0.0),
            "latency_s": float(entry.get("latency_s") or 0.0),
        }


def _ledger_table(ledger: list[dict]) -> tuple[tuple[str, ...], ...]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for entry in ledger:
        groups.setdefault((entry["model"], entry["outcome"]), []).append(entry)
    if ledger:
        groups[("all", "")] = ledger
    table = []
    for (model, outcome), entries in groups.items():
        latencies = [entry["latency_s"] for entry in entries]
        table.append(
            (
                model,
                outcome,
                str(len(entries)),
                str(sum(entry["rows"] for entry in entries)),
                str(sum(entry["prompt_tokens"] for entry in entries)),
                str(sum(entry["completion_tokens"] for entry in entries)),
                f"${sum(entry['cost_usd'] for entry in entries):.4f}",
                f"{sum(latencies) / len(latencies):.2f}",
                f"{max(latencies):.2f}",
            )
        )
    return tuple(table)


def _timings(
    state: RunState, timings: Mapping[str, float], ledger: list[dict]
) -> tuple[tuple[str, str, str], ...]:
    rows = [(str(stage), f"{float(seconds):.1f}", "") for stage, seconds in timings.items()]
    if state.pilot is not None:
        scored = len(state.pilot.scores)
        rows.append(("pilot", "-", f"{state.pilot.rows} rows, {scored} candidates scored"))
    if state.labeling is not None:
        labeling = state.labeling
        speed = labeling.rows / labeling.seconds if labeling.seconds > 0 else 0.0
        detail = f"{labeling.rows} rows ({speed:.0f} rows/s)"
        rows.append((f"labeling, pass {state.labeling_passes}", f"{labeling.seconds:.1f}", detail))
    if ledger:
        seconds = sum(entry["latency_s"] for entry in ledger)
        rows.append(("LLM calls (sum of latencies)", f"{seconds:.1f}", f"{len(ledger)} calls"))
    return tuple(rows)


def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    source = (resources.files("agent.reporting") / "report.html.jinja").read_text(encoding="utf-8")
    return environment.from_string(source)
