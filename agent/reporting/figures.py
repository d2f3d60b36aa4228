"""The report's figures, drawn by matplotlib and embedded as PNG data URIs.

The page must load nothing from elsewhere, so every plot is rendered here to PNG bytes and
returned as a ``Plot`` record holding a ``data:`` URI; the template only places it. Plots use
matplotlib's object API on the Agg renderer (no pyplot, no display, no global figure). Labels and
voter names come from the user, so mathtext (``$...$``) is off for every text drawn.
"""

from __future__ import annotations

import base64
import io
import math
from typing import NamedTuple

from agent.reporting.records import Plot, percent
from agent.reporting.tally import CONFIDENCE_BINS, SOURCES, RunTally

SOURCE_COLOURS = {
    "consensus": "#4c78a8",
    "llm": "#f58518",
    "human": "#54a24b",
    "vote": "#b279a2",
    "unresolved": "#9d9d9d",
}


class CurvePoint(NamedTuple):
    """One point of the learning curve: rows verified, and the estimate with its interval."""

    verified: int
    point: float
    low: float
    high: float


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


def plot_label_distribution(tally: RunTally, labels: list[str]) -> Plot:
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


def plot_sources(tally: RunTally) -> Plot:
    with _no_math():
        figure = _figure(height=3.0)
        axes = figure.add_subplot()
        counts = [tally.sources[source] for source in SOURCES]
        bars = axes.bar(SOURCES, counts, color=[SOURCE_COLOURS[s] for s in SOURCES])
        axes.bar_label(bars, labels=[str(count) for count in counts])
        _rows_axis(axes)
        return _plot(figure, "Escalations by source", "Rows per source of their final label")


def plot_agreement_matrix(tally: RunTally) -> Plot:
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
                axes.text(j, i, percent(value), ha="center", va="center", color=colour)
        axes.set_xticks(range(size), voters, rotation=30 if size > 3 else 0)
        axes.set_yticks(range(size), voters)
        figure.colorbar(image, ax=axes, label="share of rows where both voted")
        return _plot(figure, "Voter agreement", "Pairwise agreement of the voters' own labels")


def plot_verified_agreement(tally: RunTally) -> Plot:
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


def plot_confidence_histogram(tally: RunTally) -> Plot:
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


def plot_learning_curve(points: list[CurvePoint], target: float | None, measure: str) -> Plot:
    """The estimate of the final labels against rows verified, its interval as a band, and
    the target accuracy (dashed) when the run had one; ``measure`` names the y axis."""
    from matplotlib.ticker import MaxNLocator

    verified = [p.verified for p in points]
    with _no_math():
        figure = _figure()
        axes = figure.add_subplot()
        colour = SOURCE_COLOURS["consensus"]
        lows, highs = [p.low for p in points], [p.high for p in points]
        axes.fill_between(verified, lows, highs, color=colour, alpha=0.25, label="95% interval")
        if len(points) == 1:  # a band needs two points: show the interval as an error bar
            axes.errorbar(
                verified,
                [points[0].point],
                yerr=[[points[0].point - lows[0]], [highs[0] - points[0].point]],
                color=colour,
                capsize=4,
            )
        axes.plot(verified, [p.point for p in points], marker="o", color=colour, label="estimate")
        bottom = min(lows)
        if target is not None:
            axes.axhline(target, linestyle="--", color="#e45756", label=f"target {target:g}")
            bottom = min(bottom, target)
        axes.set_ylim(max(0.0, bottom - 0.05), 1.0)
        axes.set_xlabel("rows verified")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(measure)
        axes.legend(fontsize="small", loc="lower right")
        return _plot(
            figure, "Learning curve", f"{measure[:1].upper()}{measure[1:]} against rows verified"
        )
