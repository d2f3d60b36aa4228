"""The labeler's HTTP service under load, beside its batch command, on the same voters.

Three voters with random weights and the real architectures (bert-base, roberta-base,
distilbert-base, as in ``benchmarks/throughput.py``; ``--size small`` shrinks them for a quick
run) are bundled into a labeler package. Then, each as a process of its own:

1. the batch command labels ``--rows`` synthetic tweets (its own rows/s, loading excluded);
2. the service (``<labeler> serve``) is loaded by Locust, headless, at 1, 8 and 32 concurrent
   clients, each posting ``--texts-per-request`` texts and posting again once answered:
   rows/s (counted by the service's ``/metrics`` over a measured window), p50 and p99
   latency (Locust's), and the CPU the service and the load generator each used (they share
   the machine's cores);
3. a burst of 10x the queue: a second service with ``--max-queue-rows Q`` gets ``10 Q`` rows
   at once, one request per client thread, all released together (a plain client, so that
   every request is accounted for: answered, shed with 503, or lost); how many are shed, the
   slowest answer, and the service's memory (RSS) before, at its peak and after.

    python -m benchmarks.serve [--size base|small] [--rows N] [--duration S] [--quick]

Prints markdown tables, the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from benchmarks.serve_load import (
    cpu_seconds,
    locust_failures,
    locust_stats,
    rss_mib,
    start_locust,
    wait_locust,
)
from benchmarks.throughput import (
    build_voters,
    labeler_spec,
    machine,
    synthetic_tweets,
    write_table,
)
from tests.support.packages import PACKAGE_SOURCE
from tests.support.serving import ServedLabeler, metrics, sample

MODULE = "serve_bench"
SMALL = {"hidden": 256, "layers": 4, "heads": 4, "intermediate": 1024}


def bundle_package(root: Path, corpus: list[str], size: str) -> Path:
    """``root/serve_bench``: the template's modules, the voters bundled, the benchmark spec."""
    package = root / MODULE
    package.mkdir(parents=True)
    for source in PACKAGE_SOURCE.glob("*.py"):
        shutil.copy(source, package / source.name)
    (package / "__init__.py").write_text("", encoding="utf-8")
    build_voters(package, corpus, SMALL if size == "small" else None)
    (package / "spec.py").write_text(
        f"from .config import LabelerSpec, VoterConfig\nSPEC = {labeler_spec()!r}\n",
        encoding="utf-8",
    )
    return package


def package_env(package: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(package.parent), "HF_HUB_OFFLINE": "1"}
    return env | {"TRANSFORMERS_VERBOSITY": "error"}


@dataclass(frozen=True)
class BatchRun:
    rows: int
    rows_per_s: float
    """The command's own rate, from its first progress report (voters loaded) to its last."""
    process_seconds: float


def run_batch_command(package: Path, table: Path, options: list[str]) -> BatchRun:
    output = table.with_name("labeled.csv")
    command = [sys.executable, "-m", MODULE, str(table), "-o", str(output), "--progress", "json"]
    started = time.perf_counter()
    done = subprocess.run(
        command + options, env=package_env(package), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the batch command failed:\n{done.stderr}")
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    last = [event for event in events if event["event"] == "progress"][-1]
    return BatchRun(last["rows"], last["rows_per_s"], seconds)


def rows_answered(url: str) -> float:
    return sample(metrics(url), "labeler_rows", "labeler_rows_total")


def batches_run(url: str) -> float:
    return sample(metrics(url), "labeler_batch_rows", "labeler_batch_rows_count")


@dataclass(frozen=True)
class Level:
    clients: int
    rows_per_s: float
    mean_batch: float
    """Rows per model batch over the measured window."""
    p50_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    failures: dict[str, int]
    service_cpu: float
    """Cores the service used over the measured window (1.0: one core busy)."""
    locust_cpu: float
    """Cores Locust used over its whole run."""
    load: float


def measure_level(service: ServedLabeler, clients: int, args, folder: Path, env) -> Level:
    """Locust at ``clients`` for warm-up plus ``args.duration`` seconds; the window after the
    warm-up is measured on the service's own counters."""
    url, pid = service.url, service.process.pid
    load = os.getloadavg()[0]
    prefix = folder / f"locust-{clients}"
    total = args.warmup + args.duration + 15
    started = time.monotonic()
    process = start_locust(url, clients, total, prefix, env)
    first = rows_answered(url)
    while rows_answered(url) == first:  # Locust is up once rows are answered
        if process.poll() is not None:
            raise RuntimeError(f"locust exited {process.returncode}: see {prefix}.stderr")
        time.sleep(0.1)
    time.sleep(args.warmup)
    rows, batches = rows_answered(url), batches_run(url)
    cpu, at = cpu_seconds(pid), time.monotonic()
    time.sleep(args.duration)
    rows, batches = rows_answered(url) - rows, batches_run(url) - batches
    cpu, seconds = cpu_seconds(pid) - cpu, time.monotonic() - at
    locust_cpu = wait_locust(process, total + 600)
    stats = locust_stats(prefix)
    return Level(
        clients=clients,
        rows_per_s=rows / seconds,
        mean_batch=rows / max(batches, 1),
        p50_ms=float(stats["50%"]),
        p99_ms=float(stats["99%"]),
        max_ms=float(stats["Max Response Time"]),
        requests=int(stats["Request Count"]),
        failures=locust_failures(prefix),
        service_cpu=cpu / seconds,
        locust_cpu=locust_cpu / (time.monotonic() - started),
        load=load,
    )


@dataclass(frozen=True)
class Burst:
    queue_rows: int
    users: int
    requests: int
    """Requests that got an answer, whatever its status (all of them, or some hung)."""
    rows: int
    answered: int
    shed: int
    other_failures: dict[str, int]
    max_ms: float
    rss_before: float
    rss_peak: float
    rss_after: float
    queue_peak: float


def post_once(url: str, texts: list[str], start: threading.Barrier, timeout: float) -> tuple:
    """One request, sent when every client is ready: (status or error, seconds)."""
    body = json.dumps({"texts": texts}).encode()
    request = urllib.request.Request(
        url + "/v1/label", data=body, headers={"Content-Type": "application/json"}
    )
    start.wait()
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return str(response.status), time.perf_counter() - began
    except urllib.error.HTTPError as error:
        error.read()
        return str(error.code), time.perf_counter() - began
    except OSError as error:  # a timeout or a refused connection: the request is lost
        return type(error).__name__, time.perf_counter() - began


def measure_burst(args, package: Path, folder: Path, env: dict[str, str]) -> Burst:
    """``10 x --burst-queue-rows`` rows at once, one request of ``--burst-texts`` texts per
    client thread, all released together; every request is accounted for."""
    queue, per_request = args.burst_queue_rows, args.burst_texts
    users = 10 * queue // per_request
    options = ["--quantize", "none", "--max-queue-rows", str(queue)]
    service = ServedLabeler(package.parent, MODULE, *options, "--max-texts", str(per_request))
    texts = json.loads(Path(env["SERVE_BENCH_TEXTS"]).read_text(encoding="utf-8"))
    peaks = {"rss": 0.0, "queue": 0.0}
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            peaks["rss"] = max(peaks["rss"], rss_mib(service.process.pid))
            queued = sample(metrics(service.url), "labeler_queue_rows", "labeler_queue_rows")
            peaks["queue"] = max(peaks["queue"], queued)
            time.sleep(0.05)

    try:
        before = rss_mib(service.process.pid)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        start = threading.Barrier(users)
        with ThreadPoolExecutor(max_workers=users) as pool:
            futures = [
                pool.submit(
                    post_once,
                    service.url,
                    [texts[(user * per_request + i) % len(texts)] for i in range(per_request)],
                    start,
                    args.burst_seconds,
                )
                for user in range(users)
            ]
            outcomes = [future.result() for future in futures]
        watching.set()
        watcher.join()
        after = rss_mib(service.process.pid)
    finally:
        service.close()
    statuses: dict[str, int] = {}
    for status, _ in outcomes:
        statuses[status] = statuses.get(status, 0) + 1
    answered, shed = statuses.pop("200", 0), statuses.pop("503", 0)
    lost = sum(count for status, count in statuses.items() if not status.isdigit())
    return Burst(
        queue_rows=queue,
        users=users,
        requests=len(outcomes) - lost,
        rows=users * per_request,
        answered=answered,
        shed=shed,
        other_failures=statuses,
        max_ms=1000 * max(seconds for _, seconds in outcomes),
        rss_before=before,
        rss_peak=peaks["rss"],
        rss_after=after,
        queue_peak=peaks["queue"],
    )


def level_table(batches: list[BatchRun], levels: list[Level], per_request: int) -> list[str]:
    """The service at each load against the batch command's mean rate (run before and after)."""
    reference = sum(batch.rows_per_s for batch in batches) / len(batches)
    lines = [
        "| load | rows/s | vs batch command | rows per model batch | p50 ms | p99 ms | max ms "
        "| requests | failed | service CPU (cores) | Locust CPU (cores) | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for when, batch in zip(("before", "after"), batches, strict=False):
        lines.append(
            f"| batch command, {batch.rows} rows ({when}) | {batch.rows_per_s:.1f} "
            f"| {batch.rows_per_s / reference:.2f}x | | | | | | | | | |"
        )
    for level in levels:
        failed = sum(level.failures.values())
        lines.append(
            f"| service, {level.clients} client(s) x {per_request} text(s) "
            f"| {level.rows_per_s:.1f} | {level.rows_per_s / reference:.2f}x "
            f"| {level.mean_batch:.1f} "
            f"| {level.p50_ms:.0f} | {level.p99_ms:.0f} | {level.max_ms:.0f} | {level.requests} "
            f"| {failed} | {level.service_cpu:.2f} | {level.locust_cpu:.2f} | {level.load:.2f} |"
        )
    return lines


def burst_table(burst: Burst) -> list[str]:
    return [
        "| queue (rows) | burst | answered (any status) | 200 | shed 503 | other or lost "
        "| slowest answer "
        "| peak queue (rows) | RSS before / peak / after (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {burst.queue_rows} | {burst.users} requests, {burst.rows} rows | {burst.requests} "
        f"| {burst.answered} "
        f"| {burst.shed} | {sum(burst.other_failures.values())} | {burst.max_ms / 1000:.1f} s "
        f"| {burst.queue_peak:.0f} | {burst.rss_before:.0f} / {burst.rss_peak:.0f} / "
        f"{burst.rss_after:.0f} |",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--size", choices=("base", "small"), default="base", help="voter size")
    add("--rows", type=int, default=400, help="rows the batch command labels")
    add("--clients", default="1,8,32", help="concurrent clients, comma-separated")
    add("--texts-per-request", type=int, default=1)
    add("--duration", type=float, default=60, help="measured seconds per level")
    add("--warmup", type=float, default=10, help="seconds before each measured window")
    add("--serve-option", action="append", default=[], help="extra option for the service")
    add("--burst-queue-rows", type=int, default=256)
    add("--burst-texts", type=int, default=8, help="texts per request in the burst")
    add("--burst-seconds", type=float, default=900, help="longest wait of a burst request")
    add("--quick", action="store_true", help="small voters, 100 rows, 15 s per level")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.rows, args.duration, args.warmup = "small", 100, 15, 3
    return args


def run(args: argparse.Namespace, root: Path) -> tuple[list[BatchRun], list[Level], Burst]:
    step(f"building the {args.size} voters")
    package = bundle_package(root, synthetic_tweets(30_000, seed=2), args.size)
    texts = synthetic_tweets(max(args.rows, 2_000), seed=1)
    table = write_table(root / "tweets.csv", texts[: args.rows])
    step(f"batch command on {args.rows} rows")
    batches = [run_batch_command(package, table, ["--quantize", "none"])]
    step(f"batch command: {batches[0].rows_per_s:.1f} rows/s")
    (root / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    env = package_env(package) | {
        "SERVE_BENCH_TEXTS": str(root / "texts.json"),
        "SERVE_BENCH_PER_REQUEST": str(args.texts_per_request),
    }
    levels = []
    options = ["--quantize", "none", *args.serve_option]
    service = ServedLabeler(package.parent, MODULE, *options)
    try:
        for clients in [int(value) for value in args.clients.split(",")]:
            step(f"service at {clients} client(s)")
            levels.append(measure_level(service, clients, args, root, env))
            step(f"  {levels[-1].rows_per_s:.1f} rows/s, p99 {levels[-1].p99_ms:.0f} ms")
            time.sleep(2)
    finally:
        service.signal(signal.SIGTERM)
        service.close()
    # Again after the service: the machine is shared, so its speed drifts.
    batches.append(run_batch_command(package, table, ["--quantize", "none"]))
    step(f"batch command again: {batches[1].rows_per_s:.1f} rows/s")
    step(f"burst of 10 x {args.burst_queue_rows} rows")
    return batches, levels, measure_burst(args, package, root, env)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    described = machine("cpu")
    with tempfile.TemporaryDirectory() as temporary:
        batches, levels, burst = run(args, Path(temporary))
    print(f"Machine: {described}\n")
    print(
        f"Voters: bert, roberta, distilbert ({args.size}, random weights), fp32; synthetic "
        f"tweets. Service options: {' '.join(args.serve_option) or 'defaults'}; "
        f"{args.duration:.0f} s measured per level after {args.warmup:.0f} s of warm-up.\n"
    )
    print("\n".join(level_table(batches, levels, args.texts_per_request)))
    wholes = " and ".join(f"{batch.process_seconds:.1f} s" for batch in batches)
    print(f"\nBatch command as a whole process (loading included): {wholes}.\n")
    print("\n".join(burst_table(burst)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
