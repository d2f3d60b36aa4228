"""Real ways to break a sandbox, for tests of the probe, the doctor and the preflight.

Nothing here fakes a probe's result: each helper builds an interpreter or a sandbox that
really fails (or really leaks) when a labeler runs in it.
"""

from __future__ import annotations

import shutil
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

from sandbox import Limits, Sandbox, SandboxResult

DEFAULT_LIMITS = Limits()
SHM = Path("/dev/shm")
"""On the host, but replaced by the sandboxes' own /dev (bubblewrap) or /dev/shm (unshare)."""


def venv_copy(parent: Path) -> Path:
    """A virtualenv under ``parent`` sharing this one's packages; its ``python``.

    Like any venv: ``bin/python`` links to the base interpreter, ``pyvenv.cfg`` names it, and
    site-packages (a link to this venv's) holds the packages, this project included.
    """
    venv = parent / ".venv"
    site = Path(sysconfig.get_paths()["purelib"])
    copied_site = venv / site.relative_to(sys.prefix)
    copied_site.parent.mkdir(parents=True)
    copied_site.symlink_to(site, target_is_directory=True)
    (venv / "bin").mkdir()
    python = venv / "bin" / "python"
    python.symlink_to(Path(sys.executable).resolve())
    shutil.copyfile(Path(sys.prefix) / "pyvenv.cfg", venv / "pyvenv.cfg")
    return python


def interpreter_with_broken_torch(folder: Path) -> Path:
    """An interpreter (a shell wrapper around this one) whose ``import torch`` raises.

    It puts a ``torch`` package that raises first on the import path, the way a stray
    folder or a half-installed wheel shadows the real one.
    """
    poison = folder / "poison" / "torch"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text('raise ImportError("torch is broken here")\n')
    wrapper = folder / "python"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{poison.parent}${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def interpreter_wrapper(folder: Path) -> Path:
    """A working interpreter of its own (a shell wrapper around this one): touch it to
    change what a probe depends on."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


class RecordingSandbox:
    """A real sandbox that keeps every command it was asked to run."""

    def __init__(self, inner: Sandbox, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.commands: list[list[str]] = []

    @property
    def python(self) -> str:
        return self.inner.python

    def run(
        self,
        command: Sequence[str],
        workdir: Path,
        read_only_mounts: Sequence[Path] = (),
        env: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        on_output=None,
    ) -> SandboxResult:
        self.commands.append(list(command))
        return self.inner.run(command, workdir, read_only_mounts, env, limits, on_output)
