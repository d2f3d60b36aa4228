"""Run generated labelers isolated from the network, the user's files and secrets.

Three backends behind one interface (:class:`Sandbox`): ``process`` (bubblewrap, else
``unshare`` as root), ``docker``, and ``none`` (no isolation, with a warning). See
:mod:`sandbox.process` and :mod:`sandbox.docker` for what each guarantees.
"""

from __future__ import annotations

from typing import Any

from sandbox.base import (
    GiB,
    Limits,
    OutputCallback,
    Sandbox,
    SandboxError,
    SandboxResult,
    SandboxUnavailable,
)
from sandbox.probe import BackendStatus, probe_backends
from sandbox.process import ProcessSandbox

SANDBOX_KINDS = ("process", "docker", "none")

__all__ = [
    "SANDBOX_KINDS",
    "BackendStatus",
    "GiB",
    "Limits",
    "OutputCallback",
    "ProcessSandbox",
    "Sandbox",
    "SandboxError",
    "SandboxResult",
    "SandboxUnavailable",
    "make_sandbox",
    "probe_backends",
]


def make_sandbox(kind: str, **options: Any) -> Sandbox:
    """The sandbox for ``kind`` (one of :data:`SANDBOX_KINDS`), built with ``options``.

    ``process`` takes :class:`ProcessSandbox` options (``isolation`` defaults to ``auto``:
    bubblewrap, else unshare, else SandboxUnavailable); ``docker`` takes
    :class:`sandbox.docker.DockerSandbox` options; ``none`` runs without isolation.
    """
    if kind == "process":
        return ProcessSandbox(**options)
    if kind == "none":
        return ProcessSandbox(isolation="none", **options)
    if kind == "docker":
        from sandbox.docker import DockerSandbox

        return DockerSandbox(**options)
    raise ValueError(f"unknown sandbox kind {kind!r}: expected one of {', '.join(SANDBOX_KINDS)}")
