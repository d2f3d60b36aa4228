"""Docker backend: one throwaway container per command, for images and GPUs.

What a container run guarantees: no network (``network_mode="none"``), a read-only image
filesystem with a private ``/tmp`` tmpfs, only the work folder writable (mounted at its own
path), read-only mounts at their own paths (under ``/tmp`` too: the engine mounts them over
the tmpfs, and nothing else of the host's ``/tmp`` is there), no capabilities,
``no-new-privileges``, an unprivileged user (65534 by default), a cgroup memory limit without
swap (an overrun is OOM-killed), a process-count limit, and the same scrubbed environment as
the process backend, with the image's own ``PATH`` (its interpreter's folder). The command
replaces the image's entrypoint. The container is always removed. The engine's host paths are
used for mounts, so the engine must run on this machine (a local socket), not a remote host.

Bind mounts keep host owners and modes, so every read-only input is checked first
(:mod:`sandbox.container_files`): one the container user could not read fails before the
start, naming the file and the fix, rather than as a puzzling error inside the container.

Which image: the one given, whose interpreter runs the commands; :meth:`DockerSandbox.in_image`
gives the same engine and policy over another image (the agent builds each labeler package's
own image and runs it there). ``mount_host_python`` instead mounts this process's interpreter
read-only into a bare image (for the backend's own tests).

GPUs: ``Limits(gpus=True)`` adds a device request for all GPUs, which needs the NVIDIA
Container Toolkit on the engine host (``nvidia-ctk runtime configure --runtime=docker`` and
an engine restart); :func:`sandbox.probe.probe_backends` shows whether an ``nvidia`` runtime
is registered.

The ``docker`` package is imported only when this backend is used, so the rest of the project
works without it (``pip install 'autoannotator-agent[docker]'``).
"""

from __future__ import annotations

import os
import stat
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.base import Limits, OutputCallback, SandboxError, SandboxResult, SandboxUnavailable
from sandbox.capture import (
    LineCapture,
    chunks_to_capture,
    keep_tail,
    list_output_files,
    looks_out_of_memory,
)
from sandbox.container_files import first_unreadable, host_python_mounts, open_to_user
from sandbox.env import DEFAULT_PATH, scrubbed_env

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = [
    "DockerSandbox",
    "connect",
    "container_kwargs",
    "first_unreadable",
    "host_python_mounts",
    "image_path",
    "open_to_user",
    "registry_error",
    "require_image",
]

DEFAULT_IMAGE = "autoannotator-labeler:latest"
SANDBOX_LABEL = "autoannotator.sandbox"
"""Label on every container we create, its value the id of the process that created it, so
leftovers can be found (``docker ps -a -f label=autoannotator.sandbox``)."""
NOBODY = "65534:65534"
GPU_HINT = (
    "GPU containers need the NVIDIA Container Toolkit on the engine host "
    "(nvidia-ctk runtime configure --runtime=docker, then restart the engine), "
    "or run on the CPU (--device cpu)"
)
DEFAULT_LIMITS = Limits()


def _docker_module() -> Any:
    try:
        import docker
    except ImportError as error:
        raise SandboxUnavailable(
            "the docker Python package is missing: pip install 'autoannotator-agent[docker]'"
        ) from error
    return docker


def connect(base_url: str | None = None) -> DockerClient:
    """A client that has answered a ping; ``base_url`` None means ``DOCKER_HOST`` or default."""
    docker = _docker_module()
    import requests

    where = base_url or os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException, OSError) as error:
        raise SandboxUnavailable(f"no Docker engine reachable at {where}: {error}") from error
    return client


def require_image(client: DockerClient, image: str) -> None:
    docker = _docker_module()
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound as error:
        raise SandboxUnavailable(
            f"image {image} not found on the Docker engine: build or load it first"
        ) from error


def registry_error(client: DockerClient, image: str) -> str | None:
    """Why the engine could not pull ``image`` (one line), or None when its registry knows it.

    Asks the registry for the image's manifest through the engine (nothing is downloaded), so
    the engine's own registry settings and credentials apply.
    """
    docker = _docker_module()
    import requests

    try:
        client.images.get_registry_data(image)
    except docker.errors.APIError as error:
        return " ".join(str(error.explanation or error).split())
    except (docker.errors.DockerException, requests.RequestException) as error:
        return " ".join(str(error).split())
    return None


def image_path(client: DockerClient, image: str) -> str:
    """The ``PATH`` the image sets (where its interpreter is), else the usual system one."""
    environment = client.images.get(image).attrs.get("Config", {}).get("Env") or []
    for entry in environment:
        name, _, value = entry.partition("=")
        if name == "PATH" and value:
            return value
    return DEFAULT_PATH


def container_kwargs(
    *,
    image: str,
    command: Sequence[str],
    workdir: Path,
    read_only_mounts: Sequence[Path],
    environment: Mapping[str, str],
    limits: Limits,
    user: str | None = NOBODY,
    tmpfs_size: str = "1g",
) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``: the whole security policy, pure."""
    docker = _docker_module()
    volumes = {str(p): {"bind": str(p), "mode": "ro"} for p in read_only_mounts}
    volumes[str(workdir)] = {"bind": str(workdir), "mode": "rw"}
    ulimits = [
        docker.types.Ulimit(name="core", soft=0, hard=0),
        docker.types.Ulimit(name="nofile", soft=limits.open_files, hard=limits.open_files),
    ]
    if limits.file_size_bytes is not None:
        size = limits.file_size_bytes
        ulimits.append(docker.types.Ulimit(name="fsize", soft=size, hard=size))
    if limits.cpu_seconds is not None:
        cpu = limits.cpu_seconds
        ulimits.append(docker.types.Ulimit(name="cpu", soft=cpu, hard=cpu + 5))
    kwargs: dict[str, Any] = {
        "image": image,
        # The command replaces the image's entrypoint (a labeler image's is its console script).
        "entrypoint": list(command[:1]),
        "command": list(command[1:]),
        "working_dir": str(workdir),
        "environment": dict(environment),
        "user": user,
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={tmpfs_size},mode=1777"},
        "volumes": volumes,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": limits.pids,
        "ulimits": ulimits,
        # Which process started it: a container left behind is traced to its owner, and
        # one process checks only its own.
        "labels": {SANDBOX_LABEL: str(os.getpid())},
        "stdin_open": False,
        "tty": False,
    }
    if limits.memory_bytes is not None:
        # Same value for memory+swap: no swap, so an overrun is OOM-killed, not slowed down.
        kwargs["mem_limit"] = limits.memory_bytes
        kwargs["memswap_limit"] = limits.memory_bytes
    if limits.gpus:
        kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return kwargs


class DockerSandbox:
    """Runs each command in a new container of ``image``; see the module docstring."""

    name = "docker"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        base_url: str | None = None,
        python: str = "python3",
        extra_mounts: Sequence[Path] = (),
        mount_host_python: bool = False,
        user: str | None = NOBODY,
        tmpfs_size: str = "1g",
        client: DockerClient | None = None,
        require: bool = True,
        log: OutputCallback | None = None,
    ) -> None:
        """Connects and checks the image now, so a misconfiguration fails before any work.

        ``python`` is the interpreter inside the image. ``mount_host_python`` mounts this
        process's interpreter, venv and import path read-only instead (for a bare base image
        in tests; ``python`` is then this interpreter's path; see :func:`host_python_mounts`).
        ``extra_mounts`` are host paths mounted read-only into every run. ``require=False``
        leaves the image to be pulled or built later (a run then needs it). ``log`` receives
        notes on the backend's own work around the commands (images built for them).
        """
        self._client = client or connect(base_url)
        if require:
            require_image(self._client, image)
        self.image = image
        self.base_url = base_url
        self.log = log
        self._python = sys.executable if mount_host_python else python
        self._extra_mounts = [Path(p) for p in extra_mounts]
        # Kept as named, not resolved: a link under /tmp must be mounted at its own path.
        self._runtime_mounts = host_python_mounts() if mount_host_python else []
        self._user = user
        self._tmpfs_size = tmpfs_size

    @property
    def python(self) -> str:
        return self._python

    @property
    def client(self) -> DockerClient:
        return self._client

    @property
    def mounts_host_python(self) -> bool:
        """Whether commands run this process's interpreter, mounted, rather than the image's."""
        return bool(self._runtime_mounts)

    def in_image(self, image: str) -> DockerSandbox:
        """The same engine, policy and interpreter name, running containers of ``image``."""
        require_image(self._client, image)
        other = object.__new__(DockerSandbox)
        other.__dict__.update(self.__dict__)
        other.image = image
        return other

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
        inputs = sorted({Path(p).resolve(strict=True) for p in read_only_mounts} - {workdir})
        mounts = {
            *inputs,
            *(p.resolve(strict=True) for p in self._extra_mounts),
            *self._runtime_mounts,
        }
        open_to_user(workdir, self._user)
        self._check_readable(inputs)
        environment = scrubbed_env(
            env, home=str(workdir), tmpdir="/tmp", limits=limits, path=self._path()
        )
        kwargs = container_kwargs(
            image=self.image,
            command=command,
            workdir=workdir,
            read_only_mounts=sorted(mounts - {workdir}),
            environment=environment,
            limits=limits,
            user=self._user,
            tmpfs_size=self._tmpfs_size,
        )
        docker = _docker_module()
        container = None
        try:
            container = self._client.containers.create(**kwargs)
            result, callback_error = self._execute(container, workdir, limits, on_output)
        except docker.errors.APIError as error:
            hint = ""
            if limits.gpus and "device driver" in str(error):
                hint = f"; {GPU_HINT}"
            raise SandboxError(
                f"the Docker engine failed to run the container: {error}{hint}"
            ) from error
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
        if callback_error is not None:
            raise callback_error
        return result

    def _path(self) -> str:
        """The image's PATH (a mounted host interpreter is named by its full path)."""
        if self._runtime_mounts:
            return DEFAULT_PATH
        docker = _docker_module()
        try:
            return image_path(self._client, self.image)
        except docker.errors.ImageNotFound as error:
            raise SandboxUnavailable(
                f"image {self.image} not found on the Docker engine: pull, build or load it first"
            ) from error

    def _check_readable(self, inputs: Sequence[Path]) -> None:
        """Fail before starting when the container user could not read an input."""
        unreadable = first_unreadable(inputs, self._user)
        if unreadable is None:
            return
        mount, path = unreadable
        mode = stat.S_IMODE(path.stat().st_mode)
        raise SandboxError(
            f"the container user {self._user} cannot read {path} (mode {mode:04o}): "
            f"containers see host permissions; make it readable (chmod -R a+rX {mount})"
        )

    def _execute(
        self, container: Any, workdir: Path, limits: Limits, on_output: OutputCallback | None
    ) -> tuple[SandboxResult, BaseException | None]:
        import requests

        stderr_lines = LineCapture(on_output)
        started = time.monotonic()
        container.start()
        stream = container.logs(stream=True, follow=True, stdout=False, stderr=True)
        streamer = threading.Thread(
            target=chunks_to_capture, args=(stream, stderr_lines), daemon=True
        )
        streamer.start()
        timed_out = False
        try:
            status = container.wait(timeout=limits.wall_seconds)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            self._kill(container)
            status = container.wait(timeout=60)
        duration = time.monotonic() - started
        streamer.join(timeout=10)
        container.reload()
        oom_killed = bool(container.attrs["State"].get("OOMKilled"))
        code = int(status["StatusCode"])
        stdout = container.logs(stdout=True, stderr=False).decode("utf-8", errors="replace")
        stderr = container.logs(stdout=False, stderr=True).decode("utf-8", errors="replace")
        result = SandboxResult(
            returncode=code,
            stdout=keep_tail(stdout),
            stderr=keep_tail(stderr),
            timed_out=timed_out,
            killed_for_memory=not timed_out and (oom_killed or looks_out_of_memory(code, stderr)),
            duration_s=duration,
            output_files=list_output_files(workdir),
        )
        return result, stderr_lines.callback_error

    @staticmethod
    def _kill(container: Any) -> None:
        docker = _docker_module()
        try:
            container.kill()
        except docker.errors.APIError as error:
            if error.status_code != 409:  # 409: it exited on its own meanwhile
                raise
