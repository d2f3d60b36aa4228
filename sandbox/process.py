"""The default backend: a host process, isolated with bubblewrap or ``unshare``.

The command runs the host's own interpreter (the project venv), so nothing has to be built or
pulled. What each isolation mode guarantees:

``bubblewrap``
    New user, network, pid, ipc, uts and cgroup namespaces; no capabilities; the host root
    read-only, private ``/tmp`` and ``/dev``, only the work folder writable; credential files
    and every listening unix socket (the Docker socket...) covered. The sandbox dies with us.
``unshare`` (root only; see :mod:`sandbox.unshare_init`)
    The same guarantees built by hand: new network, pid, mount, ipc and uts namespaces, root
    remounted read-only, private ``/tmp`` and ``/dev/shm``, masks, all capabilities dropped.
    It shares the host's ``/dev`` (read-only, device nodes still usable, so GPUs work).
``none``
    No isolation at all, only the scrubbed environment and rlimits: for machines where
    neither works. It warns once per process.

What the isolated modes show, read-only and at their own paths, wherever they are (under
``/tmp`` too): the read-only mounts the caller names, and the interpreter the command runs
with: the executable, its real path, the venv, the base prefix and every import path entry
(:func:`sandbox.isolation.runtime_mounts`). The work folder is bound writable. Nothing else of
the host's ``/tmp`` is visible. Credential masks are applied after every bind, so a token
inside a mounted folder stays covered.

In every mode: rlimits (CPU seconds, file size, open files, no core dumps, and address space
unless GPUs are used, since CUDA reserves huge virtual ranges); the wall-clock limit kills the
whole process group; the environment is built from nothing (:mod:`sandbox.env`). There is no
process-count limit (only Docker has one: RLIMIT_NPROC is per user, host-wide).

``killed_for_memory`` is a heuristic here, as there is no cgroup to ask: the command failed
and the end of its stderr shows an allocation failure (MemoryError, ENOMEM, bad_alloc: what
an address-space limit produces), or it died of SIGKILL that we did not send (the kernel's
OOM killer; a command that ignores SIGXCPU past its CPU limit is misread this way too).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sandbox import unshare_init
from sandbox.base import Limits, OutputCallback, SandboxError, SandboxResult
from sandbox.capture import LineCapture, list_output_files, looks_out_of_memory, pump
from sandbox.env import DEFAULT_PATH, scrubbed_env
from sandbox.isolation import (
    INSTALL_HINT,
    Isolation,
    bubblewrap_argv,
    choose_isolation,
    runtime_mounts,
    unshare_argv,
)
from sandbox.masks import Mask, default_credential_paths, listening_unix_sockets, masks_for

_KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)  # direct child, or reported by bwrap/init
SETUP_ATTEMPTS = 3
"""Starts of bubblewrap tried when it loses a race with a mount changing on the host."""
_warned_no_isolation = False
DEFAULT_LIMITS = Limits()


def _warn_no_isolation() -> None:
    global _warned_no_isolation
    if not _warned_no_isolation:
        _warned_no_isolation = True
        warnings.warn(
            "sandbox isolation is off: generated code runs with your network, files and "
            f"privileges; {INSTALL_HINT} to isolate it",
            RuntimeWarning,
            stacklevel=3,
        )


def _rlimit_setter(limits: Limits) -> Callable[[], None]:
    """A preexec_fn applying ``limits``; values are computed here, in the parent."""

    def clamp(value: int, kind: int) -> tuple[int, int]:
        hard = resource.getrlimit(kind)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        return value, value

    wanted = [
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_NOFILE, clamp(limits.open_files, resource.RLIMIT_NOFILE)),
    ]
    if limits.cpu_seconds is not None:
        # Soft limit first: SIGXCPU ends the command; the kernel's SIGKILL at the hard limit
        # would look like an out-of-memory kill.
        cpu = limits.cpu_seconds
        wanted.append((resource.RLIMIT_CPU, (cpu, cpu + 5)))
    if limits.file_size_bytes is not None:
        wanted.append((resource.RLIMIT_FSIZE, clamp(limits.file_size_bytes, resource.RLIMIT_FSIZE)))
    if limits.memory_bytes is not None and not limits.gpus:
        wanted.append((resource.RLIMIT_AS, clamp(limits.memory_bytes, resource.RLIMIT_AS)))

    def apply() -> None:
        for kind, value in wanted:
            resource.setrlimit(kind, value)

    return apply


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ProcessSandbox:
    """Runs commands as host processes, isolated as well as this machine allows."""

    def __init__(
        self,
        isolation: Isolation = "auto",
        *,
        python: str | None = None,
        masked_paths: Sequence[Path] | None = None,
        mask_unix_sockets: bool = True,
    ) -> None:
        """``isolation="auto"`` picks bubblewrap, else unshare, else raises SandboxUnavailable.

        ``masked_paths`` replaces the default credential list (:mod:`sandbox.masks`);
        ``python`` overrides the interpreter (default: the one running this code).
        """
        self.name = choose_isolation(isolation)
        if self.name == "none":
            _warn_no_isolation()
        self._python = python
        self._masked_paths = list(masked_paths) if masked_paths is not None else None
        self._mask_unix_sockets = mask_unix_sockets

    @property
    def python(self) -> str:
        return self._python or sys.executable

    def _masks(self, workdir: Path, read_only: Sequence[Path], gpus: bool) -> list[Mask]:
        candidates = (
            self._masked_paths if self._masked_paths is not None else default_credential_paths()
        )
        if self._mask_unix_sockets:
            sockets = listening_unix_sockets()
            if gpus:  # CUDA talks to nvidia-persistenced when it runs
                sockets = [s for s in sockets if "nvidia" not in str(s)]
            candidates = [*candidates, *sockets]
        return masks_for(candidates, keep_visible=[workdir, *read_only])

    def _argv(
        self, command: Sequence[str], workdir: Path, read_only: list[Path], gpus: bool
    ) -> list[str]:
        if self.name == "none":
            return list(command)
        # A venv or interpreter under /tmp would vanish behind the private /tmp otherwise.
        runtime = set(runtime_mounts(self.python)) - {workdir}
        read_only = sorted({*read_only, *runtime})
        masks = self._masks(workdir, read_only, gpus)
        if self.name == "bubblewrap":
            return bubblewrap_argv(command, workdir, read_only, masks, gpus)
        return unshare_argv(command, workdir, read_only, masks)

    def run(
        self,
        command: Sequence[str],
        workdir: Path,
        read_only_mounts: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        on_output: OutputCallback | None = None,
    ) -> SandboxResult:
        workdir = Path(workdir).resolve(strict=True)
        read_only = sorted({Path(p).resolve(strict=True) for p in read_only_mounts} - {workdir})
        # Without namespaces /tmp is the host's: give the command a private folder there.
        private_tmp = tempfile.mkdtemp(prefix="sandbox-tmp-") if self.name == "none" else None
        full_env = scrubbed_env(
            env,
            home=str(workdir),
            tmpdir=private_tmp or "/tmp",
            limits=limits,
            path=os.environ.get("PATH", DEFAULT_PATH),
        )
        try:
            for attempt in range(1, SETUP_ATTEMPTS + 1):
                # Built again each time: the host's sockets to mask may have changed.
                argv = self._argv(command, workdir, read_only, limits.gpus)
                result, errors = self._execute(argv, workdir, full_env, limits, on_output)
                if attempt == SETUP_ATTEMPTS or not self._mount_race(result):
                    break
                time.sleep(0.1 * attempt)
        finally:
            if private_tmp is not None:
                shutil.rmtree(private_tmp, ignore_errors=True)
        self._raise_setup_failure(result)
        if errors:
            raise errors[0]
        return result

    def _execute(
        self,
        argv: list[str],
        workdir: Path,
        env: dict[str, str],
        limits: Limits,
        on_output: OutputCallback | None,
    ) -> tuple[SandboxResult, list[BaseException]]:
        stdout, stderr = LineCapture(), LineCapture(on_output)
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as a whole
            preexec_fn=_rlimit_setter(limits),
        )
        readers = [pump(process.stdout, stdout), pump(process.stderr, stderr)]  # type: ignore[arg-type]
        timed_out = False
        try:
            process.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Also after a normal exit: children left behind in isolation "none".
            _kill_group(process.pid)
            process.wait()
        duration = time.monotonic() - started
        for reader in readers:
            # A grandchild that left the process group (setsid, isolation "none" only) may
            # still hold the pipes; do not wait for it forever.
            reader.join(timeout=5)
        errors = [c.callback_error for c in (stdout, stderr) if c.callback_error is not None]
        err_text = stderr.text()
        code = process.returncode
        result = SandboxResult(
            returncode=code,
            stdout=stdout.text(),
            stderr=err_text,
            timed_out=timed_out,
            killed_for_memory=not timed_out
            and (code in _KILLED or looks_out_of_memory(code, err_text)),
            duration_s=duration,
            output_files=list_output_files(workdir),
        )
        return result, errors

    def _mount_race(self, result: SandboxResult) -> bool:
        """bubblewrap failed to set up because the host changed under it (a Docker container
        starting or stopping on the same host): a mount appeared or vanished while it copied
        the host's mounts, or a socket it was told to mask vanished (it then tries to create
        the mask's target in a read-only folder). The command did not start, so running it
        again, with the masks listed again, is safe."""
        first = result.stderr.lstrip().split("\n", 1)[0]
        if self.name != "bubblewrap" or result.returncode != 1:
            return False
        copying_mounts = first.startswith("bwrap: Can't bind mount /oldroot/") and (
            "Unable to apply mount flags" in first or "No such file or directory" in first
        )
        masking_a_vanished_path = first.startswith("bwrap: Can't create file at ") and (
            "Read-only file system" in first or "No such file or directory" in first
        )
        return copying_mounts or masking_a_vanished_path

    def _raise_setup_failure(self, result: SandboxResult) -> None:
        """Turn a failure of bwrap or the unshare init itself into an exception."""
        first = result.stderr.lstrip().split("\n", 1)[0]
        if self.name == "bubblewrap" and result.returncode == 1 and first.startswith("bwrap: "):
            raise SandboxError(f"bubblewrap could not start the command: {first}")
        if (
            self.name == "unshare"
            and result.returncode == 125
            and unshare_init.SETUP_FAILED in first
        ):
            raise SandboxError(f"unshare sandbox could not start the command: {first}")
