"""The emitted labeler package builds as an image, offline, and its container labels like the agent.

Docker Hub and PyPI are unreachable here, so the build follows the Dockerfile's "Offline"
recipe: ``BASE_IMAGE`` is a dependencies image made for this test from the bare
``local/debian:bookworm`` (scripts/docker-engine.sh) plus this interpreter and exactly the
installed distributions the package pins (with pip and setuptools), at the paths they have on
this machine; ``PIP_INSTALL_ARGS="--no-index --no-build-isolation"`` makes pip check the pins
against them and install only the package. The voters are the lexicon specialists (VADER,
TextBlob, AFINN), whose dependencies are small; torch would make the image gigabytes.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
import sysconfig
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agent.cli import main
from tests.sandbox.sandbox_helpers import BASE_IMAGE, docker_client_or_skip, unique

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SPECIALISTS = ("specialist:vader", "specialist:textblob", "specialist:afinn")
BUILD_TOOLS = ("pip", "setuptools")
"""What ``--no-build-isolation`` builds the package with, from the image."""
STDLIB_LEFT_OUT = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
OFFLINE_PIP_ARGS = "--no-index --no-build-isolation"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def dependency_closure(requirements: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (no extras)."""
    found: dict[str, metadata.Distribution] = {}
    pending = [Requirement(text).name for text in requirements]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        found[name] = distribution = metadata.distribution(name)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return [found[name] for name in sorted(found)]


def interpreter_and_site_packages(
    requirements: list[str],
) -> tuple[Path, Iterator[tuple[Path, Path]]]:
    """This interpreter's prefix, and (host file, image path) pairs to copy into the image.

    The interpreter's own prefix (pyenv, uv) keeps its path, so its shared library is found;
    the distributions go into that interpreter's site-packages in the image.
    """
    prefix = Path(sys.base_prefix).resolve()
    if prefix in (Path("/"), Path("/usr"), Path("/usr/local")):
        pytest.skip(f"this interpreter ({prefix}) is not in a prefix of its own")
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(prefix)})["stdlib"])
    target_site = stdlib / "site-packages"

    def files() -> Iterator[tuple[Path, Path]]:
        for path in sorted(prefix.joinpath("bin").glob("python3*")):
            yield path, path
        for path in sorted(prefix.joinpath("lib").glob("libpython3*")):
            yield path, path
        for child in sorted(stdlib.iterdir()):
            if child.name in STDLIB_LEFT_OUT or child.name.startswith("config-"):
                continue
            yield child, child
        for distribution in dependency_closure(requirements + list(BUILD_TOOLS)):
            site = Path(distribution.locate_file("")).resolve()
            for relative in distribution.files or []:
                if relative.parts[0] == ".." or "__pycache__" in relative.parts:
                    continue  # console scripts live outside; caches are rebuilt
                yield site / relative, target_site / relative

    return prefix, files()


def dependencies_image(client, requirements: list[str], tag: str) -> str:
    """``BASE_IMAGE`` plus this interpreter and the installed ``requirements``, committed."""
    prefix, files = interpreter_and_site_packages(requirements)
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for source, target in files:
                if source.exists():
                    tar.add(source, arcname=str(target).lstrip("/"))
        archive.seek(0)
        container = client.containers.create(BASE_IMAGE, command=["true"], network_mode="none")
        try:
            assert container.put_archive("/", archive)
            path = f"{prefix / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            container.commit(repository=tag, tag="latest", changes=[f"ENV PATH={path}"])
        finally:
            container.remove(force=True)
    return f"{tag}:latest"


@pytest.fixture(scope="module")
def docker_client():
    client = docker_client_or_skip()
    if not client.images.list(name=BASE_IMAGE):
        pytest.fail(f"image {BASE_IMAGE} not found: run scripts/docker-engine.sh")
    yield client
    client.close()


@pytest.fixture
def emitted_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """An offline run of the agent: its package, its input and its labeler's raw output."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    reviews = tmp_path / "reviews.csv"
    shutil.copy(EXAMPLES / "reviews.csv", reviews)
    args = ["label these reviews by sentiment", "--data", str(reviews), "--offline"]
    args += ["--sandbox", "none", "--verifier", "none", "--out", str(tmp_path / "out")]
    args += ["--output", str(tmp_path / "labeled.csv")]
    for specialist in SPECIALISTS:
        args += ["--model", specialist]
    assert main(args) == 0
    raw = sorted(tmp_path.glob(".autoannotator/runs/*/labeled/*/output.csv"))
    assert len(raw) == 1, raw
    return tmp_path / "out" / "sentiment-labeler", reviews, raw[0]


def test_emitted_package_builds_offline_and_its_container_labels_like_the_agent(
    docker_client, emitted_package: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    package, reviews, agent_output = emitted_package
    with open(package / "pyproject.toml", "rb") as handle:
        requirements = tomllib.load(handle)["project"]["dependencies"]
    name = unique("autoannotator-test")
    images: list[str] = []
    container = None
    try:
        deps = dependencies_image(docker_client, requirements, f"{name}-deps")
        images.append(deps)
        labeler, _log = docker_client.images.build(
            path=str(package),
            tag=f"{name}-labeler:latest",
            buildargs={"BASE_IMAGE": deps, "PIP_INSTALL_ARGS": OFFLINE_PIP_ARGS},
            network_mode="none",
            rm=True,
            forcerm=True,
        )
        images.append(f"{name}-labeler:latest")
        assert labeler.attrs["Config"]["User"] == "65534:65534"

        data = tmp_path / "data"
        data.mkdir()
        shutil.copy(reviews, data / "reviews.csv")
        os.chmod(data, 0o777)  # the image's user, 65534, writes the output here
        container = docker_client.containers.run(
            f"{name}-labeler:latest",
            ["/data/reviews.csv", "--output", "/data/labeled.csv"],
            volumes={str(data): {"bind": "/data", "mode": "rw"}},
            network_mode="none",
            detach=True,
        )
        status = container.wait(timeout=120)
        logs = container.logs().decode("utf-8", errors="replace")
        assert status["StatusCode"] == 0, logs
    finally:
        if container is not None:
            container.remove(force=True)
        for image in reversed(images):
            docker_client.images.remove(image, force=True)

    assert (data / "labeled.csv").stat().st_uid == 65534
    assert read_csv(data / "labeled.csv") == read_csv(agent_output)
    agent_rows = read_csv(tmp_path / "labeled.csv")
    image_rows = read_csv(data / "labeled.csv")
    voter_columns = [column for column in agent_rows[0] if column.startswith(("label_", "prob_"))]
    assert len(voter_columns) == 2 * len(SPECIALISTS)
    for agent_row, image_row in zip(agent_rows, image_rows, strict=True):
        assert [image_row[c] for c in voter_columns] == [agent_row[c] for c in voter_columns]
        if agent_row["source"] == "consensus":
            assert image_row["label"] == agent_row["label"]
