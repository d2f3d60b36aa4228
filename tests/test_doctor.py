"""`autoannotator-agent doctor`: one line per sandbox backend, each saying ok or no and why.

Each backend's line comes from a real probe run in it (interpreter, torch, work folder,
network), so these tests break sandboxes for real and read what the doctor says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from sandbox.isolation import check_bubblewrap, check_unshare
from tests.sandbox.sandbox_helpers import BASE_IMAGE, docker_base_url, docker_client_or_skip
from tests.support.broken_sandboxes import SHM, venv_copy
from tests.support.docker_images import OFFLINE_PIP_ARGS, dependencies_image

BACKENDS = ("bubblewrap", "unshare", "docker", "none", "gpu")
ROW = re.compile(r"^│ (?P<name>[^│]+?) +│ (?P<verdict>ok|no): (?P<detail>.+?) +│$")
WORKS = re.compile(r"starts, torch \S+, work folder writable, network cut$")


def table(text: str) -> dict:
    """The doctor's table: check name -> (ok, reason)."""
    rows = {}
    for line in text.splitlines():
        match = ROW.match(line.strip())
        if match:
            rows[match["name"]] = (match["verdict"] == "ok", match["detail"])
    return rows


def doctor(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> dict:
    """What ``doctor`` printed: check name -> (ok, reason)."""
    monkeypatch.setenv("COLUMNS", "400")  # one table row per check, nothing wrapped
    monkeypatch.setenv("AUTOANNOTATOR_OFFLINE", "1")  # no LLM or Hub probes over the network
    assert main(["doctor"]) == 0
    return table(capsys.readouterr().err)


def assert_probed(row: tuple[bool, str], check: tuple[bool, str]) -> None:
    """A backend that starts is probed for real; one that cannot says why, as before."""
    if not check[0]:
        assert row == check
        return
    ok, detail = row
    assert ok, detail
    assert detail.startswith(f"{check[1]}; {sys.executable} starts, torch ")
    assert WORKS.search(detail), detail


@pytest.mark.slow
def test_reports_every_backend_with_a_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", missing)

    rows = doctor(capsys, monkeypatch)

    assert [name for name in rows if name.startswith("sandbox: ")] == [
        f"sandbox: {backend}" for backend in BACKENDS
    ]
    assert all(len(detail) > 5 for _ok, detail in rows.values())
    assert_probed(rows["sandbox: bubblewrap"], check_bubblewrap())
    assert_probed(rows["sandbox: unshare"], check_unshare())
    docker_ok, docker_reason = rows["sandbox: docker"]
    assert not docker_ok and f"no Docker engine reachable at {missing}" in docker_reason
    none_ok, none_reason = rows["sandbox: none"]
    assert not none_ok
    assert none_reason.startswith(
        "network isolation is off: the probe reached a listener on 127.0.0.1:"
    )
    assert rows["LLM endpoint"] == (False, "off (--offline)")


@pytest.mark.sandbox
@pytest.mark.slow
def test_names_an_interpreter_the_sandbox_cannot_see(tmp_path: Path) -> None:
    """The finding: bubblewrap worked, the labeler's interpreter did not start inside it."""
    if not check_bubblewrap()[0]:
        pytest.skip(f"bubblewrap unavailable here: {check_bubblewrap()[1]}")
    if not SHM.is_dir() or not os.access(SHM, os.W_OK):
        pytest.skip("no writable /dev/shm here")
    folder = SHM / f"doctor-test-{os.getpid()}"
    folder.mkdir()
    try:
        python = venv_copy(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOANNOTATOR_")}
        env |= {"COLUMNS": "400", "AUTOANNOTATOR_OFFLINE": "1"}
        env["AUTOANNOTATOR_DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
        done = subprocess.run(
            [str(python), "-m", "agent", "doctor"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 0, done.stderr
    ok, reason = table(done.stderr)["sandbox: bubblewrap"]
    assert not ok
    assert reason == (
        f"interpreter {python} cannot start inside bubblewrap: bwrap: execvp {python}: "
        "No such file or directory; keep the virtualenv outside /dev (the sandbox has its own "
        "/dev) or update autoannotator-agent"
    )
    # Without isolation the same interpreter runs: only its network line says no.
    ok, reason = table(done.stderr)["sandbox: none"]
    assert not ok and reason.startswith("network isolation is off")


@pytest.mark.docker
@pytest.mark.slow
def test_reports_that_package_images_can_be_built(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The base image present: the probe runs in it (pip, not torch: the build installs it)."""
    docker_client_or_skip().close()
    deps = dependencies_image(docker_base_url(), BASE_IMAGE)
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", docker_base_url())
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_BASE_IMAGE", deps)
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_PIP_ARGS", OFFLINE_PIP_ARGS)

    ok, reason = doctor(capsys, monkeypatch)["sandbox: docker"]

    assert ok, reason
    assert reason.startswith("package images buildable: engine ")
    assert f"image {deps} present" in reason and "nvidia runtime" in reason
    assert re.search(r"; python3 starts, pip \S+, work folder writable, network cut; ", reason)
    assert reason.endswith(f"network cut; PIP_INSTALL_ARGS '{OFFLINE_PIP_ARGS}'")


@pytest.mark.docker
def test_names_a_base_image_that_cannot_be_had(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_client_or_skip().close()
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", docker_base_url())
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_BASE_IMAGE", "local/absent:1")

    ok, reason = doctor(capsys, monkeypatch)["sandbox: docker"]

    assert not ok
    assert "image local/absent:1 is not on it and cannot be pulled: " in reason


@pytest.mark.docker
def test_names_a_base_image_without_the_configured_python(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    docker_client_or_skip().close()
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", docker_base_url())
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_BASE_IMAGE", BASE_IMAGE)

    ok, reason = doctor(capsys, monkeypatch)["sandbox: docker"]

    assert not ok
    assert reason.startswith(f'no python3 in image {BASE_IMAGE}: exec: "python3": executable')
    assert reason.endswith(
        "(--docker-base-image) or name its interpreter (AUTOANNOTATOR_DOCKER_PYTHON)"
    )
