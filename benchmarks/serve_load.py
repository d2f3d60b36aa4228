"""Processes of ``benchmarks/serve.py``: Locust, headless, in its own process, and what the
kernel says of a process's CPU time and memory."""

from __future__ import annotations

import csv
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().with_name("serve_locust.py")
LOCUST = Path(sys.executable).with_name("locust")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_locust(
    url: str, clients: int, seconds: float, prefix: Path, env: dict[str, str]
) -> subprocess.Popen:
    command = [
        str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "-u", str(clients),
        "-r", str(clients), "--run-time", f"{int(seconds)}s", "--host", url,
        "--csv", str(prefix), "--only-summary", "--stop-timeout", "600", "--loglevel", "ERROR",
    ]  # fmt: skip
    with open(f"{prefix}.stderr", "wb") as log:  # a file: a full pipe would stall Locust
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)


def wait_locust(process: subprocess.Popen, timeout: float) -> float:
    """Wait for Locust to finish; the CPU seconds it (and only it) used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process.wait(timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode not in (0, 1):  # 1: some requests failed (a burst's 503s)
        prefix = process.args[process.args.index("--csv") + 1]
        log = Path(f"{prefix}.stderr").read_text(errors="replace")
        raise RuntimeError(f"locust exited {process.returncode}: {log[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def locust_stats(prefix: Path) -> dict[str, str]:
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as handle:
        return next(row for row in csv.DictReader(handle) if row["Name"] == "/v1/label")


def locust_failures(prefix: Path) -> dict[str, int]:
    with open(f"{prefix}_failures.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # Locust writes a failure as the exception it raised: CatchResponseError('503').
    found: dict[str, int] = {}
    for row in rows:
        error = re.sub(r"^CatchResponseError\('(.*)'\)$", r"\1", row["Error"])
        found[error] = found.get(error, 0) + int(row["Occurrences"])
    return found
