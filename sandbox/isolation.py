"""How the process backend isolates: which mode works here, and the command line for it.

Kept apart from :mod:`sandbox.process` so that the policy (what is mounted, masked, dropped)
reads in one place; :mod:`sandbox.process` documents what each mode guarantees.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from glob import glob
from pathlib import Path
from typing import Literal

from sandbox import unshare_init
from sandbox.base import SandboxUnavailable
from sandbox.masks import Mask

Isolation = Literal["auto", "bubblewrap", "unshare", "none"]

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap)"

# Mount points a sandbox replaces with its own: binding one of them (or a folder above one,
# such as /) back from the host would undo the private /tmp, /dev or /proc.
_PRIVATE_MOUNTS = (Path("/tmp"), Path("/dev"), Path("/proc"))
_LAYOUT_CODE = (
    "import json, sys; print(json.dumps([sys.executable, sys.prefix, sys.exec_prefix, "
    "sys.base_prefix, sys.base_exec_prefix, *sys.path]))"
)


def _probe(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"exit status {done.returncode}"
    return True, ""


@functools.cache
def check_bubblewrap() -> tuple[bool, str]:
    """Whether bubblewrap can create its namespaces here (it can be installed but blocked)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, f"bwrap not found: {INSTALL_HINT}"
    argv = [bwrap, "--unshare-all", "--cap-drop", "ALL", "--ro-bind", "/", "/", "--proc", "/proc"]
    works, error = _probe([*argv, "--dev", "/dev", "true"])
    return (True, bwrap) if works else (False, f"bwrap cannot create namespaces: {error}")


@functools.cache
def check_unshare() -> tuple[bool, str]:
    """Whether ``unshare`` can cut the network and build the read-only view (needs root)."""
    tool = shutil.which("unshare")
    if tool is None:
        return False, "unshare not found (util-linux)"
    if os.geteuid() != 0:
        return False, "unshare isolation needs root"
    works, error = _probe([tool, "--net", "--pid", "--fork", "--mount-proc", "true"])
    return (True, tool) if works else (False, f"unshare failed: {error}")


def choose_isolation(isolation: Isolation) -> str:
    """The mode to use: "auto" is bubblewrap, else unshare; raises SandboxUnavailable."""
    if isolation not in ("auto", "bubblewrap", "unshare", "none"):
        raise ValueError(f"unknown isolation {isolation!r}: auto, bubblewrap, unshare or none")
    if isolation == "none":
        return "none"
    if isolation in ("auto", "bubblewrap"):
        works, detail = check_bubblewrap()
        if works:
            return "bubblewrap"
        if isolation == "bubblewrap":
            raise SandboxUnavailable(detail)
    works, unshare_detail = check_unshare()
    if works:
        return "unshare"
    if isolation == "unshare":
        raise SandboxUnavailable(unshare_detail)
    raise SandboxUnavailable(
        f"no process isolation available ({detail}; {unshare_detail}): {INSTALL_HINT}, "
        "run as root for unshare, or choose the docker sandbox"
    )


@functools.cache
def _interpreter_paths(python: str) -> tuple[str, ...]:
    """Executable, prefixes and import path that ``python`` reports; empty if it cannot say.

    Asked of the interpreter itself (the sandbox may run another one than this process) with
    ``-I``, as the sandbox neither passes the host's ``PYTHON*`` variables nor its home, and
    so never sees the host's user site: the import path is the prefixes' and the ``.pth``
    files', what the sandboxed interpreter builds too, apart from a ``PYTHONPATH`` that the
    caller passes (and mounts) itself.
    """
    try:
        done = subprocess.run(
            [python, "-I", "-c", _LAYOUT_CODE], capture_output=True, text=True, timeout=30
        )
        reported = json.loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return ()
    return tuple(p for p in reported if isinstance(p, str))


def _bindable(path: Path) -> bool:
    if any(path == point or path in point.parents for point in _PRIVATE_MOUNTS):
        return False
    return not any(point in path.parents for point in _PRIVATE_MOUNTS[1:])


def runtime_mounts(python: str) -> list[Path]:
    """Host paths the interpreter ``python`` runs from, to bind read-only at their own paths.

    The executable as named and its real path (a venv's ``python`` links into a pyenv or
    system prefix), the venv, the base prefixes and every existing import path entry
    (site-packages, folders that ``.pth`` files add), at their real paths, and under ``/tmp``
    at their given paths too, so that links there keep working. The root shows most of them
    anyway, but the sandboxes' private ``/tmp`` would hide a venv or an interpreter living
    there. A path inside another one is dropped (binding the parent shows it), as are ``/``,
    ``/tmp`` itself and anything under ``/dev`` or ``/proc``: nothing may bring the host's
    ``/tmp`` back whole.
    """
    named = os.path.abspath(shutil.which(python) or python)
    found: set[Path] = set()
    for entry in (named, *_interpreter_paths(named)):
        if not os.path.isabs(entry) or not os.path.exists(entry):
            continue  # the editable finder's path hook, a missing python311.zip
        path, real = Path(os.path.abspath(entry)), Path(entry).resolve()
        found.add(real)
        # A link under /tmp is gone with the host's /tmp: bind its target at the link's path
        # too. Elsewhere the read-only root still shows the link, and binding over a path
        # that goes through one would land on its target anyway.
        if path != real and Path("/tmp") in path.parents:
            found.add(path)
    found = {path for path in found if _bindable(path)}
    return sorted(p for p in found if not any(parent in found for parent in p.parents))


def bubblewrap_argv(
    command: Sequence[str],
    workdir: Path,
    read_only_mounts: Sequence[Path],
    masks: Sequence[Mask],
    gpus: bool = False,
) -> list[str]:
    """The bwrap command line: read-only root, private /tmp and /dev, one writable folder."""
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    # bwrap leaves /proc/sys writable for real root (it only checks the folder's mode). These
    # binds come from the host's /proc, which shows the same global kernel settings.
    for path in unshare_init.PROC_READ_ONLY:
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    if gpus:
        for device in sorted(glob("/dev/nvidia*")) + glob("/dev/dri"):
            argv += ["--dev-bind", device, device]
    # Also visible through the read-only root, but bound explicitly so that the root can be
    # narrowed later, and so that those under /tmp (inputs, a venv: see runtime_mounts) are
    # not hidden by the private /tmp.
    # Shortest first, so that an input inside the work folder is bound over it, read-only.
    binds = [("--ro-bind", Path(path)) for path in read_only_mounts] + [("--bind", workdir)]
    for flag, path in sorted(binds, key=lambda bind: len(str(bind[1]))):
        argv += [flag, str(path), str(path)]
    # After the binds, so that a token inside a bound folder stays covered.
    for mask in masks:
        if mask.is_dir:
            argv += ["--tmpfs", str(mask.path), "--remount-ro", str(mask.path)]
        else:
            argv += ["--ro-bind", "/dev/null", str(mask.path)]
    return [*argv, "--chdir", str(workdir), "--", *command]


def unshare_argv(
    command: Sequence[str],
    workdir: Path,
    read_only_mounts: Sequence[Path],
    masks: Sequence[Mask],
) -> list[str]:
    """The unshare command line; :mod:`sandbox.unshare_init` does the rest as pid 1."""
    spec = {
        "workdir": str(workdir),
        "read_only": [str(p) for p in read_only_mounts],
        "masks": [[str(m.path), m.is_dir] for m in masks],
        "command": list(command),
    }
    namespaces = ["--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts"]
    init = [sys.executable, "-I", "-S", unshare_init.__file__, json.dumps(spec)]
    return ["unshare", *namespaces, "--propagation", "private", "--", *init]
