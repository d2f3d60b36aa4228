"""Does a labeler run in this sandbox? A real probe, through the same path as labeler runs.

That bubblewrap can create namespaces says nothing about whether the labeler's interpreter
exists inside (a virtualenv under /tmp is hidden by the sandbox's private /tmp), imports
torch, or can write its work folder. So the probe is a labeler run in miniature: a
throwaway package holding :mod:`agent.packaging.probe_inside`, run by
:func:`agent.packaging.runner.run_mounted` (the same mounts, environment and limits as the pilot
and the full run) through the sandbox's real ``Sandbox.run``. Inside, it reports each step;
a loopback listener opened here must stay unreachable from inside. With the Docker sandbox,
where each package runs in an image built for it, the probe runs in the base image those
builds start from and checks pip there (the build installs torch) instead of torch.

The result is one line per backend naming what failed and how to fix it, used by
``autoannotator-agent doctor`` and by the agent's preflight (:mod:`agent.preflight`).
"""

from __future__ import annotations

import re
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.errors import LabelerRunError, SandboxLimitError
from agent.packaging.image import uses_package_images
from agent.packaging.probe_inside import BASE_IMAGE_MODE
from agent.packaging.runner import run_mounted
from agent.settings import Settings
from sandbox import Sandbox, SandboxError
from sandbox.probe import LoopbackListener

PROBE_MODULE = "autoannotator_sandbox_probe"
INSIDE_SOURCE = Path(__file__).with_name("probe_inside.py")
MARKER = "probe-marker.txt"
"""Written by the inside script into its work folder (same name as there)."""
PROBE_TIMEOUT_S = 300.0
"""Importing torch from a cold disk can take a while; far longer means something is wrong."""
UPDATE = "or update autoannotator-agent"
PRIVATE_FOLDERS = (Path("/tmp"), Path("/dev"), Path("/proc"))
"""Folders an isolated sandbox replaces with its own: host files there are not inside."""
_RUNTIME_EXEC = re.compile(r'exec: "[^"]*": [^"():]*')
_EXIT = re.compile(r"^the labeler failed \(exit (-?\d+)\): (?P<reason>.*)$", re.DOTALL)


@dataclass(frozen=True)
class SandboxProbe:
    """What the probe found in one backend."""

    backend: str
    usable: bool
    """A labeler can run: the interpreter starts, imports torch, reads its input, writes."""
    isolated: bool
    """The loopback listener was unreachable from inside (the network is cut)."""
    detail: str
    """One line: what works, or what failed and how to fix it."""

    @property
    def ok(self) -> bool:
        return self.usable and self.isolated


def probe_sandbox(
    sandbox: Sandbox, settings: Settings, scratch_parent: Path | None = None
) -> SandboxProbe:
    """Run the probe package in ``sandbox`` as a labeler runs; a throwaway folder under
    ``scratch_parent`` (the system's temporary folder when None) holds it and is removed."""
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-", dir=scratch_parent) as scratch:
        return _probe_in(sandbox, settings, Path(scratch))


def _probe_in(sandbox: Sandbox, settings: Settings, scratch: Path) -> SandboxProbe:
    package_dir, workdir, input_path = scratch / "package", scratch / "work", scratch / "input"
    package_dir.mkdir()
    shutil.copyfile(INSIDE_SOURCE, package_dir / f"{PROBE_MODULE}.py")
    token = secrets.token_hex(8)
    input_path.write_text(token, encoding="utf-8")
    probe_settings = settings.model_copy(update={"labeler_timeout_s": PROBE_TIMEOUT_S})
    events: list[dict] = []
    failure: str | None = None
    with LoopbackListener() as listener:
        arguments = [PROBE_MODULE, str(input_path), str(listener.port)]
        arguments += [BASE_IMAGE_MODE] if uses_package_images(sandbox) else []
        try:
            run_mounted(
                sandbox,
                package_dir,
                arguments,
                workdir,
                [input_path],
                probe_settings,
                events.append,
            )
        except SandboxLimitError as error:
            failure = _limit_failure(sandbox, settings, events, str(error))
        except LabelerRunError as error:
            match = _EXIT.match(str(error))
            failure = _step_failure(sandbox, package_dir, match["reason"] if match else str(error))
        except OSError as error:  # no isolation: the interpreter is started directly
            failure = _not_started(sandbox, f"{type(error).__name__}: {error}")
        except SandboxError as error:
            failure = _backend_failure(sandbox, str(error))
        reached = listener.was_reached()
    steps = {e.get("step"): e for e in events if e.get("event") == "probe"}
    failed = next((e for e in steps.values() if not e.get("ok") and e["step"] != "network"), None)
    if failed is not None:
        return SandboxProbe(sandbox.name, False, False, _failed_step(sandbox, failed, workdir))
    if failure is not None:
        return SandboxProbe(sandbox.name, False, False, failure)
    marker = workdir / MARKER
    if not marker.is_file() or marker.read_text(encoding="utf-8") != token:
        detail = (
            f"what the probe wrote inside {sandbox.name} did not reach {workdir} on the host: "
            f"the work folder must be bound writable at its own path; {UPDATE}"
        )
        return SandboxProbe(sandbox.name, False, False, detail)
    network = steps.get("network")
    if network is None:
        detail = f"the probe inside {sandbox.name} ended before its network check; {UPDATE}"
        return SandboxProbe(sandbox.name, False, False, detail)
    imported = steps.get("torch") or steps["pip"]
    works = f"{sandbox.python} starts, {imported['detail']}, work folder writable"
    if reached or not network["ok"]:
        return SandboxProbe(sandbox.name, True, False, _network_open(sandbox, listener.port))
    return SandboxProbe(sandbox.name, True, True, f"{works}, network cut")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _image(sandbox: Sandbox) -> str | None:
    """The image a docker sandbox runs, when its interpreter is the image's own."""
    image = getattr(sandbox, "image", None)
    return image if isinstance(image, str) and sandbox.python != sys.executable else None


def _not_started(sandbox: Sandbox, reason: str) -> str:
    """The interpreter did not start inside: say where it has to be and why it is not."""
    # The backend's own line ("bwrap: execvp ...") says it; our prefix would repeat "start".
    python, reason = sandbox.python, _one_line(reason).split("could not start the command: ")[-1]
    image = _image(sandbox)
    if image is not None:
        # The engine's message wraps the runtime's in HTTP details; its "exec: ..." part says it.
        found = _RUNTIME_EXEC.search(reason)
        if found is None:
            return f"the Docker engine could not start {python} in image {image}: {reason}"
        return (
            f"no {python} in image {image}: {found.group(0)}; package images are built on "
            "it with that interpreter: choose a base image with Python and pip "
            "(--docker-base-image) or name its interpreter (AUTOANNOTATOR_DOCKER_PYTHON)"
        )
    start = f"interpreter {python} cannot start inside {sandbox.name}: {reason}"
    host = Path(shutil.which(python) or python)
    if not host.exists():
        return f"{start}; {python} does not exist here either: point the sandbox at an interpreter"
    paths = (host.absolute(), host.resolve())
    private = next((p for p in PRIVATE_FOLDERS for path in paths if p in path.parents), None)
    if private is not None:
        return (
            f"{start}; keep the virtualenv outside {private} (the sandbox has its own "
            f"{private}) {UPDATE}"
        )
    return (
        f"{start}; the sandbox must show {host.resolve().parent} at the same path: keep the "
        f"virtualenv in a folder the sandbox shows {UPDATE}"
    )


def _backend_failure(sandbox: Sandbox, reason: str) -> str:
    """The backend refused or failed before the command ran (its own error, not the probe's)."""
    if "could not start the command" in reason or "failed to run the container" in reason:
        return _not_started(sandbox, reason)
    # Already one actionable line (an input the container user cannot read: chmod ...).
    return f"{sandbox.name} cannot run a labeler: {_one_line(reason)}"


def _step_failure(sandbox: Sandbox, package_dir: Path, reason: str) -> str:
    """The command exited non-zero; the events (if any) tell the step, else it never ran."""
    if f"No module named {PROBE_MODULE}" in reason or f"'{PROBE_MODULE}'" in reason:
        return (
            f"{sandbox.python} starts inside {sandbox.name} but cannot see the package folder "
            f"{package_dir}: read-only mounts must appear at their own paths; {UPDATE}"
        )
    return _not_started(sandbox, reason)


def _failed_step(sandbox: Sandbox, event: dict, workdir: Path) -> str:
    step, reason, where = event["step"], _one_line(str(event.get("detail"))), sandbox.name
    if step == "torch":
        image = _image(sandbox)
        fix = f"install torch in image {image}"
        if image is None:
            fix = f"install torch for {sandbox.python} (its pip install 'torch>=2.11')"
        return f"{sandbox.python} cannot import torch inside {where}: {reason}; {fix}"
    if step == "pip":
        return (
            f"{sandbox.python} in image {_image(sandbox)} has no pip: {reason}; package images "
            f"install their dependencies with {sandbox.python} -m pip: choose a base image "
            "with pip (--docker-base-image)"
        )
    if step == "input":
        return (
            f"the labeler's input cannot be read inside {where}: {reason}; read-only mounts "
            f"must be readable at their own paths; {UPDATE}"
        )
    if step == "workdir":
        return (
            f"the work folder {workdir} is not writable inside {where}: {reason}; put "
            "--runs-dir on a local file system the sandbox user can write"
        )
    return f"the probe failed at {step} inside {where}: {reason}; {UPDATE}"


def _limit_failure(sandbox: Sandbox, settings: Settings, events: list[dict], message: str) -> str:
    done = [e["step"] for e in events if e.get("event") == "probe" and e.get("ok")]
    after = f"after {done[-1]}" if done else "before the interpreter reported"
    if "memory" in message:
        return (
            f"the probe ran out of memory inside {sandbox.name} {after} (limit "
            f"{settings.labeler_memory_gb:g} GiB): raise --labeler-memory-gb"
        )
    return (
        f"the probe did not finish within {PROBE_TIMEOUT_S:.0f} s inside {sandbox.name} "
        f"({after}): check the machine's load and that {sandbox.python} is on a local disk"
    )


def _network_open(sandbox: Sandbox, port: int) -> str:
    reached = f"the probe reached a listener on 127.0.0.1:{port} from inside"
    if sandbox.name == "none":
        return (
            f"network isolation is off: {reached} (expected with --sandbox none; use "
            "--sandbox process with bubblewrap, or docker, to cut the network)"
        )
    return (
        f"network isolation is broken: {reached} {sandbox.name}; do not run generated code "
        f"with it: use another backend, {UPDATE}"
    )
