"""scripts/docker-engine.sh keeps its unix sockets short whatever the clone's path.

A unix socket path holds at most 107 bytes; dockerd puts containerd's sockets under its exec
root, so an engine whose runtime state lived under a deep clone died at start. These tests run
the real script from copies placed at deep paths; they start no engine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sandbox_helpers import ENGINE_SCRIPT, engine_socket

SOCKET_MAX_BYTES = 107


def clone_at(base: Path, *parts: str) -> Path:
    """A folder holding a copy of the script as scripts/docker-engine.sh, like a clone."""
    root = base.joinpath(*parts)
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ENGINE_SCRIPT, root / "scripts" / "docker-engine.sh")
    return root


def run_script(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOANNOTATOR_DOCKER_")}
    return subprocess.run(
        ["bash", str(root / "scripts" / "docker-engine.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


def test_every_socket_of_a_deep_clone_fits(tmp_path: Path) -> None:
    root = clone_at(tmp_path, "d" * 60, "e" * 60, "autoannotator-agent-checkout")
    assert len(str(root).encode()) > 108

    answer = run_script(root, "paths")

    assert answer.returncode == 0, answer.stderr
    sockets = answer.stdout.split()
    socket = run_script(root, "socket").stdout.strip()
    assert sockets[0] == socket
    assert any(path.endswith("/containerd/containerd.sock") for path in sockets)
    for path in sockets:
        assert len(path.encode()) <= SOCKET_MAX_BYTES, path
        assert not path.startswith(str(root)), path


def test_each_clone_has_its_own_engine_socket(tmp_path: Path) -> None:
    first = clone_at(tmp_path, "one", "checkout")
    second = clone_at(tmp_path, "two", "checkout")

    sockets = [run_script(root, "socket").stdout.strip() for root in (first, second, first)]

    assert sockets[0] == sockets[2]
    assert sockets[0] != sockets[1]


def test_a_socket_path_too_long_is_refused_before_anything_starts(tmp_path: Path) -> None:
    root = clone_at(tmp_path, "checkout")
    runtime = tmp_path / ("r" * 90)

    for command in ("paths", "start"):
        answer = run_script(root, command, AUTOANNOTATOR_DOCKER_RUN=str(runtime))

        assert answer.returncode == 1
        assert "too long" in answer.stderr
        assert f"{runtime}/exec/containerd/containerd" in answer.stderr
        assert answer.stdout == ""
    assert not runtime.exists()


def test_the_tests_look_where_the_script_starts_the_engine() -> None:
    answer = subprocess.run(
        ["bash", str(ENGINE_SCRIPT), "socket"], capture_output=True, text=True, check=True
    )
    assert engine_socket() == Path(answer.stdout.strip())
