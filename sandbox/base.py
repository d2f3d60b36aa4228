"""The one interface every sandbox backend implements.

A sandbox runs one command over a writable work folder, with some host paths
mounted read-only, a scrubbed environment and resource limits, and reports what
happened as a small record. Backends never raise for what the command did (a
non-zero exit, a timeout, an OOM kill): those are facts in the result. They
raise :class:`SandboxUnavailable` only when they cannot run anything at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

GiB = 1024**3


class SandboxError(Exception):
    """Base class of errors raised by sandbox backends (our side, not the command's)."""


class SandboxUnavailable(SandboxError):
    """The backend cannot run anything on this machine (no bwrap, no engine...)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one sandboxed command. ``None`` means not limited."""

    wall_seconds: float = 3600.0
    """Wall-clock limit; the whole process tree is killed when it passes."""
    cpu_seconds: int | None = None
    """CPU time limit (RLIMIT_CPU) for the process backend."""
    memory_bytes: int | None = 8 * GiB
    """Memory limit: cgroup memory for Docker, address space for CPU process runs."""
    file_size_bytes: int | None = 16 * GiB
    """Largest file the command may write (RLIMIT_FSIZE)."""
    open_files: int = 4096
    """Most open file descriptors (RLIMIT_NOFILE)."""
    pids: int = 512
    """Most processes/threads (Docker pids limit)."""
    gpus: bool = False
    """Expose GPUs (Docker ``device_requests``; no address-space limit for CUDA)."""
    threads: int | None = None
    """Thread count for BLAS/torch (OMP_NUM_THREADS and friends); None = CPU count."""


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one sandboxed command."""

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    killed_for_memory: bool
    duration_s: float
    output_files: tuple[str, ...] = field(default_factory=tuple)
    """Files present in the work folder after the run, relative, sorted."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.killed_for_memory


OutputCallback = Callable[[str], None]


@runtime_checkable
class Sandbox(Protocol):
    """Runs commands isolated from the network, the user's files and secrets."""

    name: str
    """Short backend name shown to users: ``bubblewrap``, ``unshare``, ``docker``, ``none``."""

    @property
    def python(self) -> str:
        """The Python interpreter to use for commands inside this sandbox."""
        ...

    def run(
        self,
        command: Sequence[str],
        workdir: Path,
        read_only_mounts: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        limits: Limits = Limits(),
        on_output: OutputCallback | None = None,
    ) -> SandboxResult:
        """Run ``command`` with ``workdir`` as its writable current folder.

        ``read_only_mounts`` are host paths visible at the same path inside.
        ``env`` is added to a scrubbed base environment (never the parent's).
        ``on_output`` receives stderr lines as they arrive (progress display).
        """
        ...
