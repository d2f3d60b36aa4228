"""The agent's preflight: probe the run's sandbox once, before its first sandboxed step.

:func:`preflight` runs the real probe (:mod:`agent.packaging.probe`) in the run's sandbox and
stops the run with the probe's one line when a labeler could not run there, or when a
backend that claims isolation leaks the network (``none`` claims none: it was chosen, and
warned about). The probe's scratch folder lives in the run folder and is removed, and
nothing is checkpointed before it, so a stopped run resumes once the sandbox is fixed.

A passing probe is remembered in a small JSON file (``Settings.preflight_cache``), keyed by
everything the result depends on (:func:`preflight_key`); failures are never remembered, so
a fixed machine is probed again on the next run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import sandbox as sandbox_package
from agent import __version__
from agent.context import RunContext
from agent.errors import SandboxCheckError
from agent.files import write_text_atomically
from agent.packaging.image import BuildPath, check_build_path, uses_package_images
from agent.packaging.probe import SandboxProbe, probe_sandbox
from agent.settings import Settings
from sandbox import Sandbox

CACHE_ENTRIES = 32
"""Passing probes remembered (per machine state and backend); the oldest are dropped."""
# The code that decides what a probe run does: the sandbox backends, the way labelers run,
# and the probe itself. Any change to it is a new probe.
_PROBE_CODE = (
    "packaging/runner.py",
    "packaging/image.py",
    "packaging/probe.py",
    "packaging/probe_inside.py",
    "preflight.py",
)
# Kernel switches that decide whether unprivileged namespaces work (bubblewrap's user ns), and
# the boot id: they can change without any file here changing, so a reboot probes again.
_NAMESPACE_SWITCHES = (
    "/proc/sys/kernel/unprivileged_userns_clone",
    "/proc/sys/user/max_user_namespaces",
    "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    "/proc/sys/kernel/random/boot_id",
)


def preflight(context: RunContext, run_dir: Path) -> SandboxProbe | None:
    """Probe ``context.sandbox`` unless a pass for the same machine state is remembered.

    Returns the fresh probe (None when remembered, or when there is nothing to run it in
    yet: a Docker base image the first package build will pull); raises
    :class:`SandboxCheckError` with the probe's line when the sandbox cannot run the labeler
    or leaks the network, or when package images could not be built (:func:`_build_path`).
    """
    box, settings = context.sandbox, context.settings
    build = _build_path(context)
    if build is not None and not build.base_present:
        return None
    key = preflight_key(box, settings)
    cache = Path(settings.preflight_cache)
    if key in _read(cache):
        return None
    probe = probe_sandbox(box, settings, run_dir)
    if not probe.usable or (not probe.isolated and box.name != "none"):
        raise SandboxCheckError(f"sandbox {box.name}: {probe.detail}")
    _remember(cache, key, probe)
    built_on = f"; {build.detail}" if build is not None else ""
    context.reporter.info(f"sandbox {box.name}: {probe.detail}{built_on}")
    return probe


def _build_path(context: RunContext) -> BuildPath | None:
    """With package images (Docker): whether they can be built; None for other sandboxes.

    A base image that is neither on the engine nor pullable stops the run; a pullable one is
    noted (the probe runs in it once a build has pulled it).
    """
    if not uses_package_images(context.sandbox):
        return None
    build = check_build_path(context.sandbox.client, context.settings)  # type: ignore[attr-defined]
    if not build.ok:
        raise SandboxCheckError(f"sandbox docker: {build.detail}")
    if not build.base_present:
        context.reporter.info(f"sandbox docker: {build.detail}")
    return build


def preflight_key(box: Sandbox, settings: Settings) -> str:
    """A digest of everything a probe's result depends on (see :func:`key_parts`)."""
    text = json.dumps(key_parts(box, settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def key_parts(box: Sandbox, settings: Settings) -> dict[str, Any]:
    """The machine, the backend and its options, the interpreter, torch, the code that runs
    the probe, and the settings that change how a labeler runs (device, memory limit)."""
    parts: dict[str, Any] = {
        "agent": __version__,
        "code": _code_digest(),
        "host": socket.gethostname(),
        "uid": os.geteuid(),
        "kernel": os.uname().release,
        "switches": {path: _read_text(path) for path in _NAMESPACE_SWITCHES},
        "backend": box.name,
        "python": box.python,
        "device": settings.device,
        "memory_gb": settings.labeler_memory_gb,
        # Run folders on another file system (NFS, a FUSE mount) may not be bindable.
        "runs_device": _device_of(Path(settings.runs_dir)),
        "torch": _torch_version(),
    }
    image = getattr(box, "image", None)
    if isinstance(image, str):
        parts["image"] = image
        parts["image_id"] = _image_id(image, settings.docker_host)
        parts["pip_args"] = settings.docker_pip_args
    if Path(box.python).is_absolute() or box.name != "docker":
        parts["interpreter"] = _file_state(shutil.which(box.python) or box.python)
    tool = {"bubblewrap": "bwrap", "unshare": "unshare"}.get(box.name)
    if tool is not None:
        parts["tool"] = _file_state(shutil.which(tool) or tool)
    return parts


def _code_digest() -> str:
    digest = hashlib.sha256()
    agent_dir = Path(__file__).parent
    files = sorted(Path(sandbox_package.__file__).parent.glob("*.py"))
    for path in [*files, *(agent_dir / name for name in _PROBE_CODE)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _file_state(path: str) -> list[Any]:
    """Real path and modification time: a replaced or reinstalled file is a new probe."""
    real = os.path.realpath(path)
    try:
        return [real, os.stat(real).st_mtime_ns]
    except OSError:
        return [real, None]


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _device_of(path: Path) -> int | None:
    for folder in (path, *path.absolute().parents):
        try:
            return folder.stat().st_dev
        except OSError:
            continue
    return None


def _torch_version() -> list[Any]:
    """This environment's torch: its version and where it is installed (not imported: slow)."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return [None, None]
    spec = importlib.util.find_spec("torch")
    origin = spec.origin if spec is not None and spec.origin else sys.prefix
    return [version, _file_state(origin)]


def _image_id(image: str, base_url: str | None) -> str | None:
    """The image's id, so a rebuilt image is probed again; None if the engine does not say."""
    from sandbox import SandboxError
    from sandbox.docker import connect

    try:
        client = connect(base_url)
    except SandboxError:
        return None
    import docker
    import requests

    try:
        return client.images.get(image).id
    except (docker.errors.DockerException, requests.RequestException):
        return None
    finally:
        client.close()


def _read(cache: Path) -> dict[str, Any]:
    """Remembered passes; an unreadable file is an empty cache (the probe runs again)."""
    try:
        entries = json.loads(cache.read_text(encoding="utf-8")).get("passed", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _remember(cache: Path, key: str, probe: SandboxProbe) -> None:
    entries = _read(cache)
    entries[key] = {"backend": probe.backend, "detail": probe.detail, "checked_at": time.time()}
    newest = sorted(entries.items(), key=lambda item: item[1].get("checked_at", 0))
    kept = dict(newest[-CACHE_ENTRIES:])
    cache.parent.mkdir(parents=True, exist_ok=True)
    # atomic: a concurrent run reads the old file or the new one
    write_text_atomically(cache, json.dumps({"passed": kept}, indent=2) + "\n")
