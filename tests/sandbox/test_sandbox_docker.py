"""The Docker backend's policy (pure) and its container lifecycle (real engine)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sandbox_helpers import ESCAPES, escape, unique

from agent.packaging.runner import limits_for
from agent.settings import Settings
from sandbox import Limits, SandboxError, SandboxUnavailable, make_sandbox

docker = pytest.importorskip("docker")
from sandbox.docker import (  # noqa: E402
    SANDBOX_LABEL,
    container_kwargs,
    first_unreadable,
    open_to_user,
)


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


def test_device_cuda_requests_every_gpu() -> None:
    cuda = kwargs_for(limits_for(Settings(device="cuda")))
    assert cuda["device_requests"] == [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
    for device in ("cpu", "auto"):
        assert "device_requests" not in kwargs_for(limits_for(Settings(device=device)))


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
    assert kwargs["labels"] == {SANDBOX_LABEL: str(os.getpid())}


def test_work_folder_opened_to_container_user(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir(mode=0o700)
    (tmp_path / "sub" / "spec.json").write_text("{}")
    open_to_user(tmp_path, "65534:65534")
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) == 0o777
    assert stat.S_IMODE((tmp_path / "sub" / "spec.json").stat().st_mode) & 0o666 == 0o666


def test_inputs_the_container_user_cannot_read_are_found(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    weights = model / "sub" / "model.safetensors"
    weights.write_bytes(b"weights")
    weights.chmod(0o600)  # how transformers 5 saves them
    data = tmp_path / "data.csv"
    data.write_text("id,text\n")
    nobody = "65534:65534"

    assert first_unreadable([data, model], nobody) == (model, weights)
    assert first_unreadable([data, model], None) is None  # the image's user: unknown
    assert first_unreadable([data, model], "0:0") is None
    weights.chmod(0o644)
    (model / "sub").chmod(0o700)
    assert first_unreadable([data, model], nobody) == (model, model / "sub")
    (model / "sub").chmod(0o750)
    os.chown(model / "sub", os.getuid(), 65534)
    assert first_unreadable([data, model], nobody) is None  # through its group
    assert first_unreadable([data, model], "65534") == (model, model / "sub")


def test_unreachable_engine_is_unavailable(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(SandboxUnavailable, match="no Docker engine reachable at unix://"):
        make_sandbox("docker", base_url=url)


OURS = f"{SANDBOX_LABEL}={os.getpid()}"
"""Containers this test process started (other workers run Docker tests at the same time)."""


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
    left = docker_client.containers.list(all=True, filters={"label": OURS})
    assert left == []


@pytest.mark.docker
def test_unreadable_input_fails_before_any_container(
    docker_sandbox: object, docker_client: object, workdir: Path, host_dir: Path
) -> None:
    host_dir.chmod(0o755)  # mkdtemp's 0700 would be the first thing refused
    secret = host_dir / "model.safetensors"
    secret.write_bytes(b"weights")
    secret.chmod(0o600)
    with pytest.raises(SandboxError, match=r"cannot read .*model.safetensors \(mode 0600\).*a\+rX"):
        docker_sandbox.run([docker_sandbox.python, "-c", "pass"], workdir, [host_dir])
    assert docker_client.containers.list(all=True, filters={"label": OURS}) == []
    secret.chmod(0o644)
    result = docker_sandbox.run(
        [docker_sandbox.python, "-c", f"print(open({str(secret)!r}).read())"], workdir, [host_dir]
    )
    assert result.ok and result.stdout == "weights\n", result.stderr


@pytest.mark.docker
def test_engine_receives_the_gpu_request(docker_client: object, base_image: str, workdir: Path):
    """GPU containers cannot start on these machines: check what the engine was asked for."""
    created = []
    try:
        for device in ("cuda", "cpu"):
            kwargs = container_kwargs(
                image=base_image,
                command=["true"],
                workdir=workdir,
                read_only_mounts=[],
                environment={},
                limits=limits_for(Settings(device=device)),
            )
            created.append(docker_client.containers.create(**kwargs))
        cuda, cpu = (container.attrs["HostConfig"]["DeviceRequests"] for container in created)
    finally:
        for container in created:
            container.remove(force=True)
    assert [(r["Driver"], r["Count"], r["Capabilities"]) for r in cuda] == [("", -1, [["gpu"]])]
    assert not cpu


@pytest.mark.docker
def test_gpu_run_without_the_nvidia_runtime_says_what_to_install(
    docker_sandbox: object, docker_client: object, workdir: Path
) -> None:
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this engine has the nvidia runtime: GPU containers can start")
    with pytest.raises(SandboxError, match="NVIDIA Container Toolkit"):
        docker_sandbox.run([docker_sandbox.python, "-c", "pass"], workdir, limits=Limits(gpus=True))
    assert docker_client.containers.list(all=True, filters={"label": OURS}) == []


def test_the_command_replaces_the_image_entrypoint() -> None:
    kwargs = kwargs_for(Limits())
    assert kwargs["entrypoint"] == ["python3"] and kwargs["command"] == ["label.py"]


def test_an_absent_image_may_be_left_for_later(tmp_path: Path) -> None:
    """A sandbox over a base image the first package build pulls: no check at start."""

    class Engine:
        def ping(self) -> bool:
            return True

    box = make_sandbox("docker", image="local/later:1", client=Engine(), require=False)
    assert box.image == "local/later:1" and not box.mounts_host_python


@pytest.mark.docker
def test_commands_run_in_the_image_with_its_own_path_and_interpreter(
    docker_client: object, base_image: str, workdir: Path
) -> None:
    """An image whose interpreter is on its own PATH (as a Python image's is) and whose
    entrypoint is a labeler's console script: the command runs, not the entrypoint."""
    from sandbox.docker import DockerSandbox, image_path

    container = docker_client.containers.create(base_image, command=["true"])
    tag = unique("autoannotator-test/with-path")
    try:
        container.commit(
            repository=tag,
            tag="1",
            changes=["ENV PATH=/opt/tools:/usr/bin:/bin", 'ENTRYPOINT ["false"]'],
        )
    finally:
        container.remove(force=True)
    try:
        assert image_path(docker_client, f"{tag}:1") == "/opt/tools:/usr/bin:/bin"
        bare = DockerSandbox(base_image, client=docker_client, python="sh")
        assert bare.mounts_host_python is False
        box = bare.in_image(f"{tag}:1")
        assert (box.image, bare.image) == (f"{tag}:1", base_image)
        result = box.run(["sh", "-c", 'echo "$PATH" $(id -u)'], workdir)
        assert result.ok, result.stderr
        assert result.stdout == "/opt/tools:/usr/bin:/bin 65534\n"
        with pytest.raises(SandboxUnavailable, match="image local/absent:1 not found"):
            bare.in_image("local/absent:1")
    finally:
        docker_client.images.remove(f"{tag}:1", force=True)


@pytest.mark.docker
def test_a_run_in_an_absent_image_says_so(docker_client: object, workdir: Path) -> None:
    box = make_sandbox("docker", image="local/absent:1", client=docker_client, require=False)
    with pytest.raises(SandboxUnavailable, match="image local/absent:1 not found on the Docker"):
        box.run(["true"], workdir)
    assert docker_client.containers.list(all=True, filters={"label": OURS}) == []


@pytest.mark.docker
def test_the_registry_is_asked_without_pulling(docker_client: object) -> None:
    from sandbox.docker import registry_error

    reason = registry_error(docker_client, "local/absent:1")
    assert reason is not None and "\n" not in reason  # no registry is reachable here
    assert not docker_client.images.list(name="local/absent")
