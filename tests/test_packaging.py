"""Distribution: the agent's wheel carries its templates; an emitted package installs and runs."""

from __future__ import annotations

import csv
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from agent.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_templates_and_prompts(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    wheel = next(tmp_path.glob("autoannotator_agent-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "templates/labeler/pkg/spec.py.jinja",
        "templates/labeler/pkg/engine.py",
        "templates/labeler/Dockerfile.jinja",
        "templates/labeler/.dockerignore",
        "agent/nodes/plan_task.prompt.jinja",
        "agent/nodes/verify_disagreements.prompt.jinja",
        "sandbox/process.py",
    ):
        assert expected in names, expected


@pytest.mark.slow
def test_an_emitted_package_installs_in_a_fresh_venv_and_labels_from_its_console_script(
    tmp_path, monkeypatch, toxic_voters, tweets_csv
):
    monkeypatch.chdir(tmp_path)
    args = ["label tweets for toxicity", "--data", str(tweets_csv), "--offline"]
    args += ["--sandbox", "none", "--verifier", "none", "--output", "agent.csv"]
    for path in toxic_voters.values():
        args += ["--model", str(path)]
    assert main(args) == 0
    package = tmp_path / "generated" / "toxicity-labeler"
    environment = tmp_path / "fresh-venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(package)], check=True, capture_output=True
    )
    subprocess.run(
        [str(environment / "bin" / "toxicity-labeler"), str(tweets_csv), "--output", "pkg.csv",
         "--progress", "none"],
        check=True, cwd=tmp_path, capture_output=True,
    )  # fmt: skip
    with open(tmp_path / "agent.csv", newline="") as first, open(tmp_path / "pkg.csv") as second:
        agent_rows, package_rows = list(csv.DictReader(first)), list(csv.DictReader(second))
    voters = [c for c in agent_rows[0] if c.startswith("label_")]
    assert len(package_rows) == len(agent_rows)
    assert [[r[c] for c in voters] for r in agent_rows] == [
        [r[c] for c in voters] for r in package_rows
    ]
