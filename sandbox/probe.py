"""What isolation this machine offers, for ``autoannotator-agent doctor``.

Each probe actually tries its backend (bubblewrap can be installed yet blocked, an engine can
be installed yet stopped) and reports one line a user can act on.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass

from sandbox.base import SandboxUnavailable
from sandbox.docker import DEFAULT_IMAGE, connect, require_image
from sandbox.isolation import check_bubblewrap, check_unshare


@dataclass(frozen=True)
class BackendStatus:
    """Whether one backend (or the GPU) can be used here, and why (not)."""

    name: str
    available: bool
    detail: str


def probe_docker(base_url: str | None = None, image: str = DEFAULT_IMAGE) -> BackendStatus:
    """Engine reachable, its version, whether ``image`` is present and a GPU runtime exists."""
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
        except SandboxUnavailable as error:
            return BackendStatus("docker", False, f"engine {version} reachable, but {error}")
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
