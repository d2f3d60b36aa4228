"""probe_backends: what `autoannotator-agent doctor` shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_helpers import BASE_IMAGE, docker_base_url

from sandbox import probe_backends
from sandbox.isolation import check_bubblewrap


def test_reports_each_backend_and_gpu(tmp_path: Path) -> None:
    statuses = probe_backends(docker_base_url=f"unix://{tmp_path}/nothing.sock")
    assert [s.name for s in statuses] == ["bubblewrap", "unshare", "docker", "gpu"]
    assert all(s.detail for s in statuses)
    docker_status = statuses[2]
    assert not docker_status.available and "nothing.sock" in docker_status.detail
    assert statuses[0].available == check_bubblewrap()[0]


def test_gpu_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    gpu = probe_backends(docker_base_url="unix:///nonexistent.sock")[3]
    assert gpu.available == torch.cuda.is_available()


@pytest.mark.docker
def test_docker_engine_and_image(docker_client: object) -> None:
    status = probe_backends(docker_base_url(), docker_image=BASE_IMAGE)[2]
    assert status.available, status.detail
    assert BASE_IMAGE in status.detail
    # Not on the engine, and the engine cannot pull it (no registry is reachable here).
    missing = probe_backends(docker_base_url(), docker_image="local/absent:1")[2]
    assert not missing.available
    assert "reachable, but image local/absent:1 is not on it and cannot be pulled: " in (
        missing.detail
    )
