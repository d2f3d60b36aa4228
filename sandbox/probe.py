"""What isolation this machine offers, for ``autoannotator-agent doctor``.

Each probe actually tries its backend (bubblewrap can be installed yet blocked, an engine can
be installed yet stopped) and reports one line a user can act on. That a backend can start is
only the first step: whether a labeler runs in it (its interpreter, torch, its work folder)
and whether it cuts the network is found by running a probe through that backend's real
``Sandbox.run``, the way labelers run (``agent.sandbox_probe``); :class:`LoopbackListener`
is the listener that probe must fail to reach.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
from dataclasses import dataclass
from types import TracebackType

from sandbox.base import SandboxUnavailable
from sandbox.docker import DEFAULT_IMAGE, connect, registry_error, require_image
from sandbox.isolation import check_bubblewrap, check_unshare


@dataclass(frozen=True)
class BackendStatus:
    """Whether one backend (or the GPU) can be used here, and why (not)."""

    name: str
    available: bool
    detail: str


def probe_docker(base_url: str | None = None, image: str = DEFAULT_IMAGE) -> BackendStatus:
    """Engine reachable, its version, whether ``image`` is present (else whether the engine
    could pull it) and whether a GPU runtime exists."""
    try:
        client = connect(base_url)
    except SandboxUnavailable as error:
        return BackendStatus("docker", False, str(error))
    try:
        version = client.version().get("Version", "unknown version")
        runtimes = sorted(client.info().get("Runtimes", {}))
        gpu = "nvidia runtime registered" if "nvidia" in runtimes else "no nvidia runtime"
        try:
            require_image(client, image)
        except SandboxUnavailable:
            reason = registry_error(client, image)
            if reason is not None:
                detail = f"engine {version} reachable, but image {image} is not on it and "
                return BackendStatus("docker", False, f"{detail}cannot be pulled: {reason}")
            pullable = f"image {image} not on the engine, pullable from its registry"
            return BackendStatus("docker", True, f"engine {version}, {pullable}, {gpu}")
        return BackendStatus("docker", True, f"engine {version}, image {image} present, {gpu}")
    finally:
        client.close()


def probe_gpu() -> BackendStatus:
    """CUDA as torch sees it when torch is installed, else what ``nvidia-smi`` lists."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            return BackendStatus("gpu", True, f"torch {torch.__version__}: {', '.join(names)}")
        if torch.version.cuda is None:
            return BackendStatus("gpu", False, f"torch {torch.__version__} is a CPU-only build")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return BackendStatus("gpu", False, "no CUDA device visible to torch and no nvidia-smi")
    try:
        listing = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return BackendStatus("gpu", False, f"nvidia-smi failed: {error}")
    lines = listing.stdout.strip().splitlines()
    if listing.returncode != 0 or not lines:
        return BackendStatus("gpu", False, "nvidia-smi lists no GPU")
    return BackendStatus("gpu", True, "; ".join(lines))


def probe_backends(
    docker_base_url: str | None = None, docker_image: str = DEFAULT_IMAGE
) -> list[BackendStatus]:
    """bubblewrap, unshare, docker and gpu, in that order."""
    return [
        BackendStatus("bubblewrap", *check_bubblewrap()),
        BackendStatus("unshare", *check_unshare()),
        probe_docker(docker_base_url, docker_image),
        probe_gpu(),
    ]


class LoopbackListener:
    """A TCP listener on 127.0.0.1 in this (the host's) network namespace.

    A command in a sandbox that cuts the network must not be able to connect to it: a new
    network namespace has its own loopback, where nothing listens on this port. Only
    ``none`` (no isolation) and a container sharing the host network reach it.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(8)
        self._socket.setblocking(False)
        self.port: int = self._socket.getsockname()[1]

    def was_reached(self) -> bool:
        """Whether a connection arrived (the kernel queues it even if we never accept)."""
        try:
            connection, _address = self._socket.accept()
        except BlockingIOError:
            return False
        connection.close()
        return True

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
