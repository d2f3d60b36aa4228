"""Peak memory of a whole agent run, against the number of input rows.

Runs the agent offline with a cheap voter set (three lexicon specialists, no verifier, the
process sandbox) on synthetic sentences and records the peak memory of the agent and its
sandboxed children together, with the wall time, at each size:

    python benchmarks/memory.py --rows 20000 200000 2000000

How the peak is measured, best first (the output says which was used):

``cgroup v2 memory.peak``
    The run goes into a cgroup of its own; the kernel's own high-water mark of everything in
    it. Needs a writable cgroup v2 hierarchy with the memory controller.
``sampled tree RSS``
    Otherwise: the summed resident set of the agent and every descendant, read from /proc
    every ``--interval`` seconds. Shared pages (the interpreter, libraries) count once per
    process, and a spike shorter than the interval can be missed. The rusage high-water marks
    are printed beside it as a check: the agent's own ``ru_maxrss`` plus its largest child's
    (``RUSAGE_CHILDREN``), an upper bound on the two at once.

The rows are generated deterministically from a word list and written as CSV under /var/tmp
(the sandbox hides /tmp), once per size.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path("/var/tmp/autoannotator-memory")
MB = 1024 * 1024
VOTERS = ("specialist:vader", "specialist:textblob", "specialist:afinn")
WORDS = {
    "positive": "good great lovely superb charming delightful brilliant fun warm clever".split(),
    "negative": "bad awful dull boring clumsy tedious weak ugly messy annoying".split(),
    "neutral": "the film story plot actor scene movie script ending music director".split(),
    "joiners": "a an and but is was really quite not very somewhat".split(),
}

# Runs the agent in-process and reports its own high-water marks, so that the agent's
# ru_maxrss is not mixed with its children's (wait4 would give their maximum).
AGENT_WRAPPER = """
import json, resource, sys
sys.path.insert(0, {root!r})
from agent.cli import main
code = main(sys.argv[2:])
marks = {{
    "agent_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}}
with open(sys.argv[1], "w") as handle:
    json.dump(marks, handle)
sys.exit(code)
"""


def sentence(generator: random.Random) -> str:
    words = []
    for _ in range(generator.randint(5, 14)):
        kind = generator.choices(
            ("positive", "negative", "neutral", "joiners"), weights=(2, 2, 4, 3)
        )[0]
        words.append(generator.choice(WORDS[kind]))
    return " ".join(words).capitalize() + "."


def synthetic_csv(rows: int, folder: Path = DATA, seed: int = 0) -> Path:
    """``rows`` short sentences in a ``text`` column, the same for the same arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rows-{rows}-seed-{seed}.csv"
    if path.exists():
        return path
    generator = random.Random(f"memory:{seed}")
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for number in range(rows):
            writer.writerow([number, sentence(generator)])
    temporary.replace(path)
    return path


def agent_args(data: Path, work: Path, learn_vote: bool) -> list[str]:
    models = [part for voter in VOTERS for part in ("--model", voter)]
    return [
        "label these sentences by sentiment", "--data", str(data), "--text-column", "text",
        "--labels", "negative,positive", *models, "--offline", "--verifier", "none",
        "--sandbox", "process", *([] if learn_vote else ["--no-learn-vote"]),
        "--out", str(work / "out"), "--output", str(work / "labeled.csv"),
        "--runs-dir", str(work / "runs"), "--yes",
    ]  # fmt: skip


def cgroup_v2_root() -> Path | None:
    """A folder under which this process may create a cgroup with the memory controller."""
    try:
        line = next(
            line
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return None
    for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        own = mount / line[3:].lstrip("/")
        try:
            if "memory" in (own / "cgroup.controllers").read_text().split():
                return own
        except OSError:
            continue
    return None


def make_cgroup() -> Path | None:
    root = cgroup_v2_root()
    if root is None:
        return None
    group = root / f"autoannotator-memory-{os.getpid()}"
    try:
        group.mkdir()
        if (group / "memory.peak").exists():
            return group
        group.rmdir()
    except OSError:
        pass
    return None


def tree_rss(root: int, page: int = os.sysconf("SC_PAGE_SIZE")) -> int:
    """Summed RSS in bytes of ``root`` and all its descendants now."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: the fields start after the last ')'.
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(parents.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * page
        except OSError:
            continue
    return total


@dataclass
class Measurement:
    rows: int
    method: str
    peak_bytes: int
    seconds: float
    agent_maxrss_bytes: int
    children_maxrss_bytes: int
    exit_code: int


def measure(rows: int, data: Path, interval: float, learn_vote: bool) -> Measurement:
    work = Path(tempfile.mkdtemp(prefix=f"run-{rows}-", dir=DATA))
    marks = work / "rusage.json"
    command = [
        sys.executable, "-c", AGENT_WRAPPER.format(root=str(ROOT)), str(marks),
        *agent_args(data, work, learn_vote),
    ]  # fmt: skip
    group = make_cgroup()
    env = os.environ | {"AUTOANNOTATOR_VERDICT_CACHE": str(work / "verdicts.sqlite")}

    def enter_cgroup() -> None:
        (group / "cgroup.procs").write_text(str(os.getpid()))

    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "agent.log", "w"),  # noqa: SIM115 - closed with the child
        preexec_fn=enter_cgroup if group else None,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    if group is None:
        sampler.start()
    code = process.wait()
    seconds = time.monotonic() - started
    done.set()
    if group is None:
        sampler.join()
        method = f"sampled tree RSS (every {interval * 1000:.0f} ms)"
    else:
        peak = int((group / "memory.peak").read_text())
        group.rmdir()
        method = "cgroup v2 memory.peak"
    if code != 0:
        log = (work / "agent.log").read_text(errors="replace")[-2000:]
        raise SystemExit(f"the agent failed with exit {code} on {rows} rows:\n{log}")
    figures = json.loads(marks.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return Measurement(
        rows=rows,
        method=method,
        peak_bytes=peak,
        seconds=seconds,
        agent_maxrss_bytes=figures["agent_kb"] * 1024,
        children_maxrss_bytes=figures["children_kb"] * 1024,
        exit_code=code,
    )


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def table(results: list[Measurement], learn_vote: bool) -> str:
    base = results[0]
    allowed = max(0.10 * base.peak_bytes, 30 * MB)
    lines = [
        f"{machine()}; method: {base.method}; voters {', '.join(VOTERS)}; "
        "--verifier none --sandbox process" + ("" if learn_vote else " --no-learn-vote"),
        "",
        "| rows | peak MB | agent ru_maxrss MB | largest child ru_maxrss MB | wall s |",
        "|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        lines.append(
            f"| {result.rows:,} | {result.peak_bytes / MB:.0f} | "
            f"{result.agent_maxrss_bytes / MB:.0f} | {result.children_maxrss_bytes / MB:.0f} | "
            f"{result.seconds:.0f} |"
        )
    last = results[-1]
    growth = last.peak_bytes - base.peak_bytes
    verdict = "met" if growth <= allowed else "NOT met"
    lines += [
        "",
        f"{last.rows:,} rows against {base.rows:,}: {growth / MB:+.0f} MB "
        f"(allowed max(10%, 30 MB) = {allowed / MB:.0f} MB): target {verdict}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between samples")
    parser.add_argument(
        "--no-learn-vote",
        dest="learn_vote",
        action="store_false",
        help="pass --no-learn-vote (by default the learned vote stays on, as in a plain run; "
        "with no verifier it finds no verified rows and learns nothing)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        data = synthetic_csv(rows)
        result = measure(rows, data, args.interval, args.learn_vote)
        print(
            f"{rows} rows: peak {result.peak_bytes / MB:.0f} MB ({result.method}), "
            f"{result.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
    print(table(results, args.learn_vote))
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
