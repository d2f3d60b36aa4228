"""Generated code tries to get out; every isolating backend must stop it.

Each attempt is a real script (tests/sandbox/escapes/) run inside the real backend:
bubblewrap, unshare (root) and Docker (the engine from scripts/docker-engine.sh).
"""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import pytest
from sandbox_helpers import ESCAPES, REPO_ROOT, escape, processes_with, unique

from sandbox import GiB, Limits, Sandbox

MiB = 1024**2
QUICK = Limits(wall_seconds=60, memory_bytes=2 * GiB)


def run_json(sandbox: Sandbox, workdir: Path, argv: list[str], **kwargs: object) -> dict:
    kwargs.setdefault("limits", QUICK)
    result = sandbox.run(argv, workdir, read_only_mounts=[ESCAPES], **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cannot_reach_host_loopback(isolated: Sandbox, workdir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        report = run_json(isolated, workdir, escape(isolated, "connect_loopback.py", port))
        knocked, _, _ = select.select([server], [], [], 0)
    assert report["connected"] is False, report
    assert knocked == [], "the listener on the host received a connection"


def test_cannot_reach_host_unix_socket(isolated: Sandbox, workdir: Path, host_dir: Path) -> None:
    """Like the Docker socket: connectable across network namespaces and read-only mounts."""
    path = host_dir / "engine.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        report = run_json(isolated, workdir, escape(isolated, "connect_unix.py", path))
        knocked, _, _ = select.select([server], [], [], 0)
    assert report["connected"] is False, report
    assert knocked == []


def test_cannot_write_outside_workdir(isolated: Sandbox, workdir: Path, host_dir: Path) -> None:
    name = unique("escape") + ".txt"
    # Under /tmp the sandbox has a private tmpfs: writing may succeed, but never on the host.
    private = [workdir.parent / name, Path("/tmp") / name]
    # A checkout under /tmp is behind that tmpfs too; /var/tmp then stands for a host folder
    # that the read-only root shows.
    shown = REPO_ROOT
    if Path("/tmp") in REPO_ROOT.parents:
        shown = Path("/var/tmp")
        private.append(REPO_ROOT / name)
    must_fail = [shown / name, Path.home() / name, host_dir / name]
    try:
        report = run_json(
            isolated, workdir, escape(isolated, "write_outside.py", *must_fail, *private)
        )
        for path in must_fail:
            # ENOENT: Docker shows none of the host's files, so that folder is not there at all.
            assert report[str(path)] in {"EROFS", "EACCES", "EPERM", "ENOENT"}, report
        assert {report[str(shown / name)], report[str(Path.home() / name)]} <= {"EROFS"}
        for path in [*must_fail, *private]:
            assert not path.exists(), f"{path} was written on the host"
    finally:
        for path in [*must_fail, *private]:
            path.unlink(missing_ok=True)
    assert (workdir / "inside.txt").exists() is False  # nothing else appeared either


def test_cannot_read_parent_secrets(
    isolated: Sandbox, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_key = "sk-" + "a1" * 20
    hub_token = "hf_" + "b2" * 17
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("HF_TOKEN", hub_token)
    passed = {
        "OPENAI_API_KEY": api_key,
        "HF_TOKEN": hub_token,
        "MY_SERVICE_TOKEN": "plain-looking",
        "HF_HOME": str(workdir / "hf"),
        "LABELER_BATCH_SIZE": "8",
    }
    result = isolated.run(
        escape(isolated, "read_secrets.py"), workdir, [ESCAPES], env=passed, limits=QUICK
    )
    seen = json.loads(result.stdout)["env"]
    assert api_key not in result.stdout and hub_token not in result.stdout
    assert not {"OPENAI_API_KEY", "HF_TOKEN", "MY_SERVICE_TOKEN"} & set(seen)
    assert seen["LABELER_BATCH_SIZE"] == "8" and seen["HF_HOME"] == str(workdir / "hf")
    assert seen["HOME"] == str(workdir) and seen["HF_HUB_OFFLINE"] == "1"


def test_memory_overrun_is_reported(isolated: Sandbox, workdir: Path) -> None:
    limits = Limits(wall_seconds=60, memory_bytes=512 * MiB)
    result = isolated.run(escape(isolated, "allocate.py", 2048), workdir, [ESCAPES], limits=limits)
    assert "allocated" not in result.stdout
    assert result.returncode != 0
    assert result.killed_for_memory and not result.timed_out


def test_time_overrun_kills_the_whole_tree(isolated: Sandbox, workdir: Path) -> None:
    marker = unique("sandbox-child")
    result = isolated.run(
        escape(isolated, "spin.py", marker), workdir, [ESCAPES], limits=Limits(wall_seconds=2)
    )
    assert result.timed_out and not result.killed_for_memory
    assert "spawned" in result.stdout
    assert 2 <= result.duration_s < 10
    assert wait_until_gone(marker), "the child the command started is still running"


def test_children_left_behind_are_killed(isolated: Sandbox, workdir: Path) -> None:
    marker = unique("sandbox-orphan")
    result = isolated.run(escape(isolated, "leave_child.py", marker), workdir, [ESCAPES])
    assert result.ok
    assert wait_until_gone(marker)


def wait_until_gone(marker: str, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while processes_with(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
