"""Helpers shared by the sandbox tests (imported by name: tests/sandbox is on sys.path)."""

from __future__ import annotations

import functools
import os
import subprocess
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sandbox import ProcessSandbox, Sandbox, SandboxUnavailable

if TYPE_CHECKING:
    from docker import DockerClient

REPO_ROOT = Path(__file__).resolve().parents[2]
ESCAPES = Path(__file__).resolve().parent / "escapes"
ENGINE_SCRIPT = REPO_ROOT / "scripts" / "docker-engine.sh"
LEGACY_DOCKER_SOCKET = REPO_ROOT / ".ci" / "state" / "docker.sock"
BASE_IMAGE = os.environ.get("AUTOANNOTATOR_BASE_IMAGE", "local/debian:bookworm")
"""Built by scripts/docker-engine.sh from the Debian mirror (Docker Hub is unreachable)."""


@functools.cache
def engine_socket() -> Path | None:
    """The socket scripts/docker-engine.sh starts this clone's engine on, as it says.

    The script is the one source of truth: the path is a short directory derived from the
    clone's path (unix sockets are capped at 108 bytes), which tests must not compute again.
    """
    try:
        answer = subprocess.run(
            ["bash", str(ENGINE_SCRIPT), "socket"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(answer.stdout.strip())


def docker_base_url() -> str:
    """DOCKER_HOST, else the socket of scripts/docker-engine.sh, else Docker's default."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    socket = engine_socket()
    if socket is not None and socket.is_socket():
        return f"unix://{socket}"
    # An engine started before the script moved its socket out of the clone still serves it.
    if LEGACY_DOCKER_SOCKET.is_socket():
        return f"unix://{LEGACY_DOCKER_SOCKET}"
    return "unix:///var/run/docker.sock"


def docker_client_or_skip() -> DockerClient:
    """A client of the test engine, or a skip naming why none answers."""
    pytest.importorskip("docker", reason="the docker Python package is not installed")
    from sandbox.docker import connect

    url = docker_base_url()
    try:
        return connect(url)
    except SandboxUnavailable as error:
        pytest.skip(f"{error}; run scripts/docker-engine.sh")


def process_sandbox(isolation: str, **options: object) -> ProcessSandbox:
    """A process sandbox, or a skip naming why this machine cannot isolate that way."""
    try:
        return ProcessSandbox(isolation, **options)  # type: ignore[arg-type]
    except SandboxUnavailable as error:
        pytest.skip(f"{isolation} isolation unavailable here: {error}")


def escape(sandbox: Sandbox, script: str, *args: object) -> list[str]:
    """argv running one of tests/sandbox/escapes (mounted read-only) in ``sandbox``."""
    return [sandbox.python, str(ESCAPES / script), *map(str, args)]


def processes_with(marker: str) -> list[int]:
    """Pids of live host processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
