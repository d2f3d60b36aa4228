"""The run report: ``report.html`` in the run folder, one self-contained page a person can open.

It shows what happened in a run: the final labels by source, how the voters agreed with each
other and with the verified labels, how many rows were escalated, the confidence of the vote,
what the LLM cost, how long the stages took, and the rows the voters disputed most.

The labeler's output is streamed in chunks and joined to the verdicts sorted on disk, so a
run of any size needs only counts, a histogram and a heap of the most disputed rows in
memory. The page needs nothing from a network: styles are inline, plots are PNG data URIs
drawn by matplotlib's Agg renderer, there is no script, and a Content-Security-Policy forbids
loading anything else. Every value from the user's data goes through Jinja's HTML
autoescaping.
"""

from __future__ import annotations

import base64
import heapq
import io
import math
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from pydantic import BaseModel, ConfigDict

from agent.labeler_runtime import iter_chunks, output_text_column
from agent.state import RunState
from agent.verification.store import VERDICTS_FILE, VERIFIED_SOURCES, read_jsonl, resolve
from agent.verification.stream import latest_by_row, with_verdicts

REPORT_FILE = "report.html"
LEDGER_FILE = "ledger.jsonl"
SOURCES = ("consensus", "llm", "human", "vote", "unresolved")
SOURCE_COLOURS = {
    "consensus": "#4c78a8",
    "llm": "#f58518",
    "human": "#54a24b",
    "vote": "#b279a2",
    "unresolved": "#9d9d9d",
}
NO_LABEL = "(no label)"
DISPUTED_ROWS = 20
TEXT_CHARS = 240
CHUNK_ROWS = 10_000
CONFIDENCE_BINS = 20


class ReportRecord(BaseModel):
    model_config = ConfigDict(frozen=True)


class Plot(ReportRecord):
    title: str
    alt: str
    data_uri: str
    """``data:image/png;base64,...``: the page must load nothing from elsewhere."""


class DisputedRow(ReportRecord):
    row: int
    text: str
    label: str
    source: str
    agreement: str
    confidence: str
    votes: tuple[str, ...]
    """Each voter's own label, in voter order (``-`` where it abstained)."""
    reason: str


class ReportPage(ReportRecord):
    """Everything the template shows, as display strings; the template only loops over it."""

    run_id: str
    task: str
    data_path: str
    labels: tuple[str, ...]
    verifier: str
    summary: tuple[tuple[str, str], ...]
    voter_names: tuple[str, ...]
    voters: tuple[tuple[str, ...], ...]
    """Name, reference, kind, pilot consensus agreement, pilot verified accuracy, selected."""
    pilot_basis: str
    """How the candidates were scored and chosen ("" without a pilot)."""
    label_plot: Plot
    sources: tuple[tuple[str, str, str], ...]
    """Source, rows, share."""
    source_plot: Plot
    agreement_plot: Plot | None
    agreement_table: tuple[tuple[str, ...], ...]
    """One row per voter: its name, then its agreement with each voter."""
    verified_rows: int
    verified_plot: Plot | None
    verified_table: tuple[tuple[str, str, str], ...]
    """Voter, agreed / voted, share."""
    confidence_plot: Plot
    ledger: tuple[tuple[str, ...], ...]
    """Model, outcome, calls, rows, prompt tokens, completion tokens, cost, mean and max latency."""
    timings: tuple[tuple[str, str, str], ...]
    """Stage, seconds, detail."""
    finetune: tuple[tuple[str, ...], ...] = ()
    """Per stage and voter: stage, voter, rows, held-out accuracy, kept, disputes, agreement."""
    votes: tuple[tuple[str, ...], ...] = ()
    """Per learned vote: version, first pass, verified rows, weights, accuracy, outcome."""
    disputed: tuple[DisputedRow, ...]


@dataclass
class RunTally:
    """Counts over the final labeling pass, accumulated one row at a time."""

    voters: tuple[str, ...]
    rows: int = 0
    labels_by_source: Counter = field(default_factory=Counter)
    """(label, source) -> rows."""
    sources: Counter = field(default_factory=Counter)
    pair_votes: Counter = field(default_factory=Counter)
    """(voter a, voter b) -> rows where both voted."""
    pair_agreed: Counter = field(default_factory=Counter)
    verified_votes: Counter = field(default_factory=Counter)
    """Voter -> verified rows where it voted."""
    verified_agreed: Counter = field(default_factory=Counter)
    verified_rows: int = 0
    confidence_consensus: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    confidence_escalated: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    disputed_heap: list[tuple[float, float, int, DisputedRow]] = field(default_factory=list)
    """Max-heap (negated keys) of the rows with the lowest agreement, then confidence."""

    def add(self, row_number: int, row: dict[str, Any], verdict: dict | None, text_column: str):
        needs_review = _truthy(row.get("needs_review"))
        label, source, verdict = final_label(row, verdict, needs_review)
        votes = tuple(_text(row.get(f"label_{name}")) for name in self.voters)
        self.rows += 1
        self.labels_by_source[(label or NO_LABEL, source)] += 1
        self.sources[source] += 1
        self._count_votes(votes, label if source in VERIFIED_SOURCES else "")
        agreement, confidence = _number(row.get("agreement")), _number(row.get("confidence"))
        histogram = self.confidence_escalated if needs_review else self.confidence_consensus
        histogram[min(max(int(confidence * CONFIDENCE_BINS), 0), CONFIDENCE_BINS - 1)] += 1
        key = (-agreement, -confidence, -row_number)
        if len(self.disputed_heap) == DISPUTED_ROWS and key <= self.disputed_heap[0][:3]:
            return  # no more disputed than any row kept so far
        disputed = DisputedRow(
            row=row_number,
            text=_truncate(_text(row.get(text_column))),
            label=label or NO_LABEL,
            source=source,
            agreement=f"{agreement:.2f}",
            confidence=f"{confidence:.2f}",
            votes=tuple(vote or "-" for vote in votes),
            reason=_truncate(_text(verdict.get("reason"))),
        )
        if len(self.disputed_heap) == DISPUTED_ROWS:
            heapq.heappop(self.disputed_heap)
        heapq.heappush(self.disputed_heap, (*key, disputed))

    def _count_votes(self, votes: tuple[str, ...], verified_label: str) -> None:
        """Pairwise agreement of the voters, and each one's with a verified label ("" if none)."""
        for i, first in enumerate(votes):
            for j in range(i, len(votes)):
                if first and votes[j]:
                    self.pair_votes[i, j] += 1
                    self.pair_agreed[i, j] += first == votes[j]
        if not verified_label:
            return
        self.verified_rows += 1
        for name, vote in zip(self.voters, votes, strict=True):
            if vote:
                self.verified_votes[name] += 1
                self.verified_agreed[name] += vote == verified_label

    def pair_agreement(self, i: int, j: int) -> float:
        i, j = min(i, j), max(i, j)
        votes = self.pair_votes[i, j]
        return self.pair_agreed[i, j] / votes if votes else math.nan

    def most_disputed(self) -> list[DisputedRow]:
        return [entry[3] for entry in sorted(self.disputed_heap, reverse=True)]


def final_label(row: dict[str, Any], verdict: dict | None, needs_review: bool):
    """A row's (label, source, verdict), merged as emit_package merges them.

    A verified label wins; a row under review takes its verdict, or stays unresolved without
    one; every other row keeps the vote as consensus.
    """
    label, source = resolve(row.get("label"), verdict, needs_review)
    return _text(label), source, verdict or {}


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
    temporary = target.with_name(f".{REPORT_FILE}.tmp-{os.getpid()}")
    temporary.write_text(html, encoding="utf-8")
    temporary.replace(target)
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
        label_plot=_plot_label_distribution(tally, labels),
        sources=tuple(
            (source, str(tally.sources[source]), _share(tally.sources[source], tally.rows))
            for source in SOURCES
        ),
        source_plot=_plot_sources(tally),
        agreement_plot=_plot_agreement_matrix(tally) if len(voters) > 1 else None,
        agreement_table=tuple(
            (name, *(_percent(tally.pair_agreement(i, j)) for j in range(len(voters))))
            for i, name in enumerate(voters)
        ),
        verified_rows=tally.verified_rows,
        verified_plot=_plot_verified_agreement(tally) if tally.verified_rows else None,
        verified_table=tuple(
            (
                name,
                f"{tally.verified_agreed[name]} / {tally.verified_votes[name]}",
                _share(tally.verified_agreed[name], tally.verified_votes[name]),
            )
            for name in voters
        ),
        confidence_plot=_plot_confidence_histogram(tally),
        ledger=_ledger_table(ledger),
        timings=_timings(state, timings, ledger),
        finetune=_finetune_rows(state),
        votes=tuple(
            (
                vote.version,
                str(vote.before_pass),
                str(vote.examples),
                ", ".join(f"{name} {weight:.2f}" for name, weight in vote.weights.items()),
                f"{_percent(vote.cross_validated_accuracy)} (plain vote "
                f"{_percent(vote.plain_vote_accuracy)})",
                "used" if vote.adopted else "plain vote kept",
            )
            for vote in state.votes
        ),
        disputed=tuple(tally.most_disputed()),
    )


def _finetune_rows(state: RunState) -> tuple[tuple[str, ...], ...]:
    rows = []
    for stage in state.finetune:
        after = "-" if stage.escalated_after is None else str(stage.escalated_after)
        agreement = "-" if stage.agreement_after is None else _percent(stage.agreement_after)
        for voter in stage.voters:
            rows.append(
                (
                    str(stage.stage),
                    voter.voter,
                    f"{stage.verified_rows} (+{stage.replay_rows} replayed)",
                    f"{_percent(voter.holdout_before)} -> {_percent(voter.holdout_after)} "
                    f"on {stage.holdout_rows} rows",
                    voter.version or "rolled back",
                    f"{stage.escalated_before} -> {after}",
                    f"{_percent(stage.agreement_before)} -> {agreement}",
                )
            )
    return tuple(rows)


def tally_run(state: RunState) -> RunTally:
    """Stream the final labeling pass, merging the verdicts as the labeled data does."""
    tally = RunTally(voters=tuple(voter.name for voter in state.voters))
    if state.labeling is None:
        return tally
    verdicts = latest_by_row(Path(state.run_dir) / VERDICTS_FILE)
    text_column = output_text_column(state) if state.plan else ""
    rows = (row for chunk in iter_chunks(state.labeling.output_path, CHUNK_ROWS) for row in chunk)
    for row_number, row, verdict in with_verdicts(rows, verdicts):
        tally.add(row_number, row, verdict, text_column)
    return tally


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
        ("rows escalated", f"{escalated} ({_share(escalated, tally.rows)})"),
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
                _percent(score.consensus_agreement) if score else "-",
                (
                    _percent(score.verified_accuracy)
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


# Plots: matplotlib's object API on the Agg renderer (no pyplot, no display, no global figure).
# Labels and voter names come from the user, so mathtext ($...$) is off for every text drawn.


def _figure(width: float = 7.0, height: float = 3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _plot(figure, title: str, alt: str) -> Plot:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Plot(title=title, alt=alt, data_uri=f"data:image/png;base64,{encoded}")


def _rows_axis(axes) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.set_ylabel("rows")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))


def _no_math():
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False, "text.usetex": False})


def _plot_label_distribution(tally: RunTally, labels: list[str]) -> Plot:
    with _no_math():
        figure = _figure()
        axes = figure.add_subplot()
        bottoms = [0] * len(labels)
        for source in SOURCES:
            counts = [tally.labels_by_source[(label, source)] for label in labels]
            if any(counts):
                axes.bar(
                    range(len(labels)),
                    counts,
                    bottom=bottoms,
                    label=source,
                    color=SOURCE_COLOURS[source],
                )
                bottoms = [b + c for b, c in zip(bottoms, counts, strict=True)]
        axes.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
        _rows_axis(axes)
        if tally.rows:
            axes.legend(title="source", fontsize="small")
        return _plot(figure, "Label distribution", "Rows per final label, stacked by source")


def _plot_sources(tally: RunTally) -> Plot:
    with _no_math():
        figure = _figure(height=3.0)
        axes = figure.add_subplot()
        counts = [tally.sources[source] for source in SOURCES]
        bars = axes.bar(SOURCES, counts, color=[SOURCE_COLOURS[s] for s in SOURCES])
        axes.bar_label(bars, labels=[str(count) for count in counts])
        _rows_axis(axes)
        return _plot(figure, "Escalations by source", "Rows per source of their final label")


def _plot_agreement_matrix(tally: RunTally) -> Plot:
    voters = tally.voters
    size = len(voters)
    matrix = [[tally.pair_agreement(i, j) for j in range(size)] for i in range(size)]
    with _no_math():
        figure = _figure(width=2.0 + 0.9 * size, height=1.6 + 0.8 * size)
        axes = figure.add_subplot()
        image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        for i in range(size):
            for j in range(size):
                value = matrix[i][j]
                colour = "black" if not math.isnan(value) and value > 0.6 else "white"
                axes.text(j, i, _percent(value), ha="center", va="center", color=colour)
        axes.set_xticks(range(size), voters, rotation=30 if size > 3 else 0)
        axes.set_yticks(range(size), voters)
        figure.colorbar(image, ax=axes, label="share of rows where both voted")
        return _plot(figure, "Voter agreement", "Pairwise agreement of the voters' own labels")


def _plot_verified_agreement(tally: RunTally) -> Plot:
    voters = tally.voters
    shares = [
        tally.verified_agreed[n] / tally.verified_votes[n] if tally.verified_votes[n] else 0.0
        for n in voters
    ]
    with _no_math():
        figure = _figure(height=1.4 + 0.45 * len(voters))
        axes = figure.add_subplot()
        bars = axes.barh(range(len(voters)), shares, color="#54a24b")
        counts = [f"{tally.verified_agreed[n]} / {tally.verified_votes[n]}" for n in voters]
        axes.bar_label(bars, labels=counts, padding=3)
        axes.set_yticks(range(len(voters)), voters)
        axes.invert_yaxis()
        axes.set_xlim(0.0, 1.15)
        axes.set_xlabel(f"share of {tally.verified_rows} verified rows agreed with")
        return _plot(figure, "Agreement with verified labels", "Each voter's agreement")


def _plot_confidence_histogram(tally: RunTally) -> Plot:
    width = 1.0 / CONFIDENCE_BINS
    edges = [i * width for i in range(CONFIDENCE_BINS)]
    with _no_math():
        figure = _figure(height=3.0)
        axes = figure.add_subplot()
        axes.bar(
            edges,
            tally.confidence_consensus,
            width=width,
            align="edge",
            label="not escalated",
            color=SOURCE_COLOURS["consensus"],
        )
        axes.bar(
            edges,
            tally.confidence_escalated,
            width=width,
            align="edge",
            bottom=tally.confidence_consensus,
            label="escalated",
            color=SOURCE_COLOURS["llm"],
        )
        axes.set_xlim(0.0, 1.0)
        axes.set_xlabel("vote confidence")
        _rows_axis(axes)
        axes.legend(fontsize="small")
        return _plot(figure, "Confidence", "Histogram of the vote's confidence per row")


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "\u2026"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"
