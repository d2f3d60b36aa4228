"""The service's metrics, written in the Prometheus text exposition format (version 0.0.4).

The package carries no Prometheus client library: the few metric types the service needs
(counters, a gauge, histograms) are small enough to keep here. Every update happens on the
event loop, so nothing needs a lock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds: a request's latency, from its first byte read to its answer."""
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
"""Rows in one model batch."""


def escape(value: str) -> str:
    """A label value as the exposition format quotes it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A count that only grows, per value of one label (or a single count without)."""

    def __init__(self, name: str, help_text: str, label: str | None = None) -> None:
        self.name, self.help_text, self.label = name, help_text, label
        self.values: dict[str, float] = {} if label else {"": 0.0}

    def inc(self, amount: float = 1.0, label_value: str = "") -> None:
        self.values[label_value] = self.values.get(label_value, 0.0) + amount

    def value(self, label_value: str = "") -> float:
        return self.values.get(label_value, 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} counter"]
        for label_value, value in sorted(self.values.items()):
            labels = f'{{{self.label}="{escape(label_value)}"}}' if self.label else ""
            lines.append(f"{self.name}{labels} {number(value)}")
        return lines


class Gauge:
    """A value that goes up and down."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help_text, self.value = name, help_text, 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def render(self) -> list[str]:
        return [
            f"# HELP {self.name} {self.help_text}",
            f"# TYPE {self.name} gauge",
            f"{self.name} {number(self.value)}",
        ]


class Histogram:
    """Observations counted in cumulative buckets, with their sum and count."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help_text = name, help_text
        self.bounds = tuple(sorted(buckets)) + (math.inf,)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.sum += value
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[index] += 1
                break

    @property
    def count(self) -> int:
        return sum(self.counts)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        cumulative = 0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            cumulative += count
            lines.append(f'{self.name}_bucket{{le="{number(bound)}"}} {cumulative}')
        lines.append(f"{self.name}_sum {number(self.sum)}")
        lines.append(f"{self.name}_count {cumulative}")
        return lines


class ServeMetrics:
    """Everything ``/metrics`` shows."""

    def __init__(self) -> None:
        self.requests = Counter(
            "labeler_requests_total", "Label requests answered, by HTTP status.", "status"
        )
        self.rows = Counter("labeler_rows_total", "Rows labeled and answered.")
        self.latency = Histogram(
            "labeler_request_duration_seconds",
            "Time from reading a label request to answering it, whatever the status.",
            LATENCY_BUCKETS,
        )
        self.batch_rows = Histogram(
            "labeler_batch_rows",
            "Rows in each model batch (rows of concurrent requests share a batch).",
            BATCH_BUCKETS,
        )
        self.batch_seconds = Histogram(
            "labeler_batch_duration_seconds",
            "Time the voters took for each model batch.",
            LATENCY_BUCKETS,
        )
        self.queue_rows = Gauge(
            "labeler_queue_rows", "Rows accepted and not yet answered (waiting or in a batch)."
        )
        self.ready = Gauge("labeler_ready", "1 once the voters are loaded, else 0.")

    def render(self) -> str:
        metrics = (
            self.requests,
            self.rows,
            self.latency,
            self.batch_rows,
            self.batch_seconds,
            self.queue_rows,
            self.ready,
        )
        return "\n".join(line for metric in metrics for line in metric.render()) + "\n"
