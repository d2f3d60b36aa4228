"""Fixtures for sandbox tests: the real backends, the test Docker engine, escape scripts.

The Docker engine is the one ``scripts/docker-engine.sh`` starts: found through
``DOCKER_HOST``, else the socket the script names for this clone (``scripts/docker-engine.sh
socket``, a short directory under /run), else Docker's default socket.
Docker tests skip only when no engine answers there.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import BASE_IMAGE, docker_client_or_skip, process_sandbox

from sandbox import Sandbox, SandboxUnavailable


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A client of the test engine; skips the test when none is reachable."""
    client = docker_client_or_skip()
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client: object) -> str:
    """The local Debian base image; an engine without it is a setup error, not a skip."""
    from sandbox.docker import require_image

    try:
        require_image(docker_client, BASE_IMAGE)  # type: ignore[arg-type]
    except SandboxUnavailable as error:
        pytest.fail(f"{error}: run scripts/docker-engine.sh")
    return BASE_IMAGE


@pytest.fixture
def docker_sandbox(docker_client: object, base_image: str) -> Sandbox:
    """Containers of the bare base image running this venv's interpreter, mounted read-only."""
    from sandbox.docker import DockerSandbox

    return DockerSandbox(base_image, client=docker_client, mount_host_python=True)  # type: ignore[arg-type]


ISOLATED_BACKENDS = [
    pytest.param("bubblewrap", marks=pytest.mark.sandbox),
    pytest.param("unshare", marks=pytest.mark.sandbox),
    pytest.param("docker", marks=pytest.mark.docker),
]


@pytest.fixture(params=ISOLATED_BACKENDS)
def isolated(request: pytest.FixtureRequest) -> Sandbox:
    """Each backend that claims isolation, as users get it."""
    if request.param == "docker":
        return request.getfixturevalue("docker_sandbox")
    return process_sandbox(request.param)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host folder outside /tmp (which sandboxes replace) and outside the work folder."""
    folder = Path(tempfile.mkdtemp(prefix="sandbox-host-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder)
