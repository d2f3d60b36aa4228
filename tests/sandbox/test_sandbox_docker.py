"""The Docker backend's policy (pure) and its container lifecycle (real engine)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sandbox_helpers import ESCAPES, escape, unique

from sandbox import Limits, SandboxUnavailable, make_sandbox

docker = pytest.importorskip("docker")
from sandbox.docker import SANDBOX_LABEL, container_kwargs, open_to_user  # noqa: E402


def kwargs_for(limits: Limits, workdir: Path = Path("/data/work")) -> dict:
    return container_kwargs(
        image="labeler:1",
        command=["python3", "label.py"],
        workdir=workdir,
        read_only_mounts=[Path("/models")],
        environment={"HOME": str(workdir)},
        limits=limits,
    )


def test_gpu_request_only_when_asked() -> None:
    with_gpu = kwargs_for(Limits(gpus=True))
    assert with_gpu["device_requests"] == [
        docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
    ]
    assert "device_requests" not in kwargs_for(Limits(gpus=False))


def test_container_policy() -> None:
    kwargs = kwargs_for(Limits(memory_bytes=1024**3, pids=64))
    assert kwargs["network_mode"] == "none" and kwargs["read_only"] is True
    assert kwargs["cap_drop"] == ["ALL"] and kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["user"] == "65534:65534" and kwargs["pids_limit"] == 64
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 1024**3
    assert kwargs["volumes"] == {
        "/models": {"bind": "/models", "mode": "ro"},
        "/data/work": {"bind": "/data/work", "mode": "rw"},
    }
    assert kwargs["working_dir"] == "/data/work" and "/tmp" in kwargs["tmpfs"]
    assert kwargs["labels"] == {SANDBOX_LABEL: "1"}


def test_work_folder_opened_to_container_user(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir(mode=0o700)
    (tmp_path / "sub" / "spec.json").write_text("{}")
    open_to_user(tmp_path, "65534:65534")
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o777
    assert stat.S_IMODE((tmp_path / "sub" / "spec.json").stat().st_mode) & 0o666 == 0o666


def test_unreachable_engine_is_unavailable(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(SandboxUnavailable, match="no Docker engine reachable at unix://"):
        make_sandbox("docker", base_url=url)


@pytest.mark.docker
def test_missing_image_is_unavailable(docker_client: object) -> None:
    with pytest.raises(SandboxUnavailable, match="image local/absent:1 not found"):
        make_sandbox("docker", image="local/absent:1", client=docker_client)


@pytest.mark.docker
def test_runs_as_nobody_and_leaves_no_container(
    docker_sandbox: object, docker_client: object, workdir: Path
) -> None:
    code = "import os; print(os.getuid(), os.getgid()); open('made-inside', 'w')"
    result = docker_sandbox.run([docker_sandbox.python, "-c", code], workdir)
    assert result.ok, result.stderr
    assert result.stdout == "65534 65534\n"
    assert (workdir / "made-inside").stat().st_uid == 65534
    timed = docker_sandbox.run(
        escape(docker_sandbox, "spin.py", unique("x")),
        workdir,
        [ESCAPES],
        limits=Limits(wall_seconds=1),
    )
    assert timed.timed_out
    left = docker_client.containers.list(all=True, filters={"label": SANDBOX_LABEL})
    assert left == []
