"""Labeler packages emitted from loopback-Hub voters, and running them as a user would.

:func:`emit_from_hub` runs the agent against a :class:`~tests.support.hub_server.LoopbackHub`
(discovery picks the voters) and returns the package with the labeler's own output from the
run; :func:`offline_env` is a user's machine with no network and an empty Hugging Face cache;
:func:`run_labeler` starts the package's CLI in a fresh process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.datasets import EXAMPLE_TWEETS

PACKAGE = "toxicity-labeler"
MODULE = "toxicity_labeler"
UNREACHABLE = "http://127.0.0.1:9"
"""An endpoint nothing listens on: any request to the Hub fails at once."""


@dataclass(frozen=True)
class Emitted:
    package: Path
    """The emitted package folder."""
    data: Path
    """The input the agent labeled."""
    raw_output: Path
    """What the agent's own run of the labeler wrote (before verification)."""


def emit_from_hub(folder: Path, sandbox: str, *args: str) -> Emitted:
    """``label tweets for toxicity`` on ``examples/tweets.csv``: two voters from the Hub the
    client points at, nothing verified; runs and output under ``folder``."""
    from agent.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "tweets.csv"
    shutil.copy(EXAMPLE_TWEETS, data)
    command = ["label tweets for toxicity", "--data", str(data), "--verifier", "none"]
    command += ["--voters", "2", "--sandbox", sandbox, "--out", str(folder / "out")]
    command += ["--output", str(folder / "labeled.csv"), "--runs-dir", str(folder / "runs")]
    assert main(command + list(args)) == 0
    raw = sorted(folder.glob("runs/*/labeled/*/output.csv"))
    assert len(raw) == 1, raw
    return Emitted(folder / "out" / PACKAGE, data, raw[0])


def offline_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a machine with no Hub and an empty Hugging Face cache in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_"))}
    home.mkdir(parents=True, exist_ok=True)
    env |= {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": UNREACHABLE}
    env.pop("PYTHONPATH", None)
    return env | extra


def run_labeler(
    package: Path, args: Sequence[str], env: Mapping[str, str], cwd: Path
) -> subprocess.CompletedProcess:
    """``python -m toxicity_labeler ARGS`` from the package folder, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", MODULE, *args],
        env={**env, "PYTHONPATH": str(package)},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path (caches left out)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
