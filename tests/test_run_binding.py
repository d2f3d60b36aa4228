"""A run is bound to its input and has one writer.

Verdicts are joined to rows by position, so ``--resume``, ``review import`` and
``finetune`` refuse a data file that is not the one the run started with (sorted, appended,
edited), in one line naming what changed, exit 2, with nothing written. A run folder has one
writer: a second ``--resume`` (or an import during one) is refused while the first holds the
folder's lock, and a killed holder leaves no stale lock.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.files import LOCK_FILE, hold_run_folder

# Two agent runs on the example tweets with tiny voters for the module: about 20 s.
pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parent.parent / "examples" / "tweets.csv"


def start(folder: Path, toxic_voters: dict, *flags: str) -> tuple[list[str], int]:
    """Label a copy of the example tweets in ``folder``; the arguments and the exit status."""
    data = folder / "tweets.csv"
    data.write_bytes(EXAMPLE.read_bytes())
    runs = folder / "runs"
    args = ["label tweets for toxicity", "--data", str(data), "--sandbox", "none", "--offline"]
    args += ["--runs-dir", str(runs), "--out", str(folder / "out")]
    args += ["--output", str(folder / "labeled.csv"), *flags]
    for path in toxic_voters.values():
        args += ["--model", str(path)]
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("OPENAI_API_KEY", raising=False)
        status = main(args)
    return args, status


def run_with(folder: Path, toxic_voters: dict, verifier: str, status: int) -> dict:
    """A run with ``--verifier VERIFIER`` that ended with ``status``: its folder and id."""
    assert start(folder, toxic_voters, "--verifier", verifier)[1] == status
    (run_dir,) = (folder / "runs").iterdir()
    return {"folder": folder, "run_dir": run_dir, "run_id": run_dir.name}


@pytest.fixture(scope="module")
def paused_run(tmp_path_factory, toxic_voters) -> dict:
    """A run paused for a person's review of round 1 (``--verifier human``)."""
    return run_with(tmp_path_factory.mktemp("paused"), toxic_voters, "human", 3)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, toxic_voters) -> dict:
    return run_with(tmp_path_factory.mktemp("finished"), toxic_voters, "none", 0)


def shuffled(data: Path) -> bytes:
    """The same rows, the header first, in another order: same size, other content."""
    original = data.read_bytes()
    header, *rows = original.decode("utf-8").splitlines(keepends=True)
    data.write_text(header + "".join(reversed(rows)), encoding="utf-8")
    assert data.stat().st_size == len(original) and data.read_bytes() != original
    return original


def digests(run_dir: Path) -> dict[str, str]:
    """What the run folder holds, file by file (the lock file aside)."""
    return {
        str(path.relative_to(run_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE and not path.name.startswith("checkpoints")
    }


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(lines) == 1, lines
    return lines[0]


def test_resume_and_review_import_refuse_a_shuffled_input_and_write_nothing(paused_run, capsys):
    run_id, run_dir = paused_run["run_id"], paused_run["run_dir"]
    data = paused_run["folder"] / "tweets.csv"
    before = digests(run_dir)
    decisions = paused_run["folder"] / "decisions.csv"
    decisions.write_text((run_dir / "review.csv").read_text(encoding="utf-8"), encoding="utf-8")
    original = shuffled(data)
    try:
        capsys.readouterr()
        assert main(["--resume", run_id, "--runs-dir", str(run_dir.parent)]) == 2
        line = one_error_line(capsys)
        assert f"changed since run {run_id} started" in line and "sha256" in line

        review = ["review", "import", run_id, str(decisions), "--runs-dir", str(run_dir.parent)]
        assert main(review) == 2
        assert f"changed since run {run_id} started" in one_error_line(capsys)

        data.write_bytes(original + b"appended row,\n")
        assert main(["--resume", run_id, "--runs-dir", str(run_dir.parent)]) == 2
        assert "bytes" in one_error_line(capsys)  # the size names what changed
    finally:
        data.write_bytes(original)
    assert digests(run_dir) == before


def test_finetune_refuses_a_shuffled_input_and_writes_nothing(finished_run, capsys):
    run_id, run_dir = finished_run["run_id"], finished_run["run_dir"]
    data = finished_run["folder"] / "tweets.csv"
    before = digests(run_dir)
    original = shuffled(data)
    try:
        capsys.readouterr()
        assert main(["finetune", run_id, "--runs-dir", str(run_dir.parent), "--yes"]) == 2
        assert f"changed since run {run_id} started" in one_error_line(capsys)
    finally:
        data.write_bytes(original)
    assert digests(run_dir) == before


def test_a_second_writer_is_refused_and_a_killed_one_leaves_no_lock(paused_run, capsys):
    run_id, run_dir = paused_run["run_id"], paused_run["run_dir"]
    before = digests(run_dir)
    # Another process holds the run (a resume going on), as the agent holds it.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from agent.files import hold_run_folder\n"
            "with hold_run_folder(sys.argv[1], 'x'):\n"
            "    print('held', flush=True); time.sleep(120)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        capsys.readouterr()
        assert main(["--resume", run_id, "--runs-dir", str(run_dir.parent)]) == 2
        line = one_error_line(capsys)
        assert f"run {run_id} is in use by another process (process {holder.pid})" in line
        csv = run_dir / "review.csv"
        review = ["review", "import", run_id, str(csv), "--runs-dir", str(run_dir.parent)]
        assert main(review) == 2
        assert "in use by another process" in one_error_line(capsys)
        assert digests(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock: the folder can be held again at once.
    with hold_run_folder(run_dir, run_id):
        pass
