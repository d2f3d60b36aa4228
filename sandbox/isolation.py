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
    # narrowed later, and so that those under /tmp are not hidden by the private /tmp.
    # Shortest first, so that an input inside the work folder is bound over it, read-only.
    binds = [("--ro-bind", Path(path)) for path in read_only_mounts] + [("--bind", workdir)]
    for flag, path in sorted(binds, key=lambda bind: len(str(bind[1]))):
        argv += [flag, str(path), str(path)]
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
