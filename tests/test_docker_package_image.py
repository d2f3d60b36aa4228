"""``--sandbox docker`` runs what ships: the package's own image, built from its Dockerfile.

The pure part (the content address, the build arguments, retired settings) runs anywhere. The
rest needs the private engine of scripts/docker-engine.sh: Docker Hub and the package index are
unreachable there, so the package images start FROM one dependencies image per content
(tests/support/docker_images.py: this interpreter and the pinned distributions over the bare
``local/debian:bookworm``) with ``PIP_INSTALL_ARGS="--no-index --no-build-isolation"``, the
Dockerfile's offline recipe. The agent then runs end to end with ``--sandbox docker`` and
lexicon voters, against the same run with ``--sandbox process``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.cli import main
from agent.files import LOCK_FILE
from agent.packaging.image import (
    DIGEST_LABEL,
    IMAGE_RECORD,
    ImageBuildError,
    ImageRecipe,
    context_files,
    dockerfile_base,
    package_digest,
    package_image,
)
from agent.settings import Settings
from tests.sandbox.sandbox_helpers import BASE_IMAGE, docker_base_url, docker_client_or_skip
from tests.support.datasets import read_csv
from tests.support.docker_images import OFFLINE_PIP_ARGS, dependencies_image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPECIALISTS = ("specialist:vader", "specialist:textblob", "specialist:afinn")
RECIPE = ImageRecipe("local/deps:1", "python3", OFFLINE_PIP_ARGS)
Run = dict[str, object]


def fake_package(folder: Path) -> Path:
    """The files the content address reads: a Dockerfile, a manifest, code, an ignored cache."""
    folder.mkdir()
    (folder / "Dockerfile").write_text("ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE}\n")
    (folder / ".dockerignore").write_text("**/__pycache__\n")
    (folder / "pyproject.toml").write_text('[project]\nname = "toy-labeler"\n')
    manifest = {"package": {"voters": ["a"]}, "provenance": {"run_id": "1", "data": "/x"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "toy").mkdir()
    (folder / "toy" / "cli.py").write_text("print('hi')\n")
    (folder / "toy" / "__pycache__").mkdir()
    (folder / "toy" / "__pycache__" / "cli.pyc").write_bytes(b"cache")
    return folder


def test_the_content_address_covers_what_the_build_sees(tmp_path: Path) -> None:
    package = fake_package(tmp_path / "package")
    first = package_digest(package, RECIPE, "sha256:base")
    assert context_files(package) == [
        ".dockerignore", "Dockerfile", "manifest.json", "pyproject.toml", "toy/cli.py"
    ]  # fmt: skip
    assert dockerfile_base(package) == "python:3.11-slim"

    (package / "toy" / "__pycache__" / "cli.pyc").write_bytes(b"other cache")
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["provenance"] = {"run_id": "2", "data": "/elsewhere"}
    (package / "manifest.json").write_text(json.dumps(manifest, indent=4))
    assert package_digest(package, RECIPE, "sha256:base") == first  # how the run came about

    assert package_digest(package, RECIPE, "sha256:rebuilt") != first
    other_args = ImageRecipe("local/deps:1", "python3", "")
    assert package_digest(package, other_args, "sha256:base") != first
    manifest["package"]["voters"] = ["b"]
    (package / "manifest.json").write_text(json.dumps(manifest))
    assert package_digest(package, RECIPE, "sha256:base") != first  # what the package is
    (package / "toy" / "cli.py").write_text("print('bye')\n")
    second = package_digest(package, RECIPE, "sha256:base")
    (package / "toy" / "cli.py").chmod(0o755)
    assert len({first, second, package_digest(package, RECIPE, "sha256:base")}) == 3


def test_build_arguments_come_from_the_settings() -> None:
    settings = Settings(docker_base_image="my/deps:2", docker_pip_args="--no-index")
    assert ImageRecipe.from_settings(settings).build_args() == {
        "BASE_IMAGE": "my/deps:2",
        "PIP_INSTALL_ARGS": "--no-index",
        "PYTHON": "python3",
    }
    # No base image given: the Dockerfile's own default stands.
    assert ImageRecipe.from_settings(Settings()).build_args() == {
        "PIP_INSTALL_ARGS": "",
        "PYTHON": "python3",
    }


@pytest.mark.parametrize(
    "variable", ["AUTOANNOTATOR_DOCKER_IMAGE", "AUTOANNOTATOR_DOCKER_MOUNT_HOST_PYTHON"]
)
def test_retired_docker_settings_are_refused_with_one_line(
    variable: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, "1")
    data = tmp_path / "reviews.csv"
    shutil.copy(EXAMPLES / "reviews.csv", data)
    assert main(["label reviews", "--data", str(data), "--offline", "--sandbox", "docker"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {variable} is no longer read: " + err[0].split(": ", 2)[2]]
    assert "--sandbox docker" in err[0] and err[0].endswith("(unset it)")
    assert not (tmp_path / ".autoannotator").exists()


# ---------------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def engine() -> Iterator[object]:
    client = docker_client_or_skip()
    if not client.images.list(name=BASE_IMAGE):
        pytest.fail(f"image {BASE_IMAGE} not found: run scripts/docker-engine.sh")
    yield client
    client.close()


@pytest.fixture(scope="module")
def deps_image(engine: object) -> str:
    return dependencies_image(docker_base_url(), BASE_IMAGE)


def docker_environment(deps_image: str) -> dict[str, str]:
    """What a user without a registry sets for ``--sandbox docker`` (README, Docker section)."""
    return {
        "AUTOANNOTATOR_DOCKER_HOST": docker_base_url(),
        "AUTOANNOTATOR_DOCKER_BASE_IMAGE": deps_image,
        "AUTOANNOTATOR_DOCKER_PIP_ARGS": OFFLINE_PIP_ARGS,
    }


@pytest.fixture(scope="module")
def label_with(
    tmp_path_factory: pytest.TempPathFactory, deps_image: str, sandbox_kind: str
) -> Callable[[str, str], Run]:
    """Runs the agent offline on the reviews (memoised per name): its folder, labeled rows,
    the labeler's raw output, what it printed and the image record of its run folder."""
    root = tmp_path_factory.mktemp("package-image")
    reviews = root / "reviews.csv"
    shutil.copy(EXAMPLES / "reviews.csv", reviews)
    done: dict[str, Run] = {}

    def label(name: str, backend: str) -> Run:
        if name not in done:
            done[name] = _agent_run(root / name, reviews, backend, deps_image)
        return done[name]

    if sandbox_kind != "process":
        pytest.skip("neither bubblewrap nor unshare isolates on this machine: nothing to compare")
    return label


def _agent_run(folder: Path, reviews: Path, backend: str, deps_image: str) -> Run:
    folder.mkdir()
    args = ["label these reviews by sentiment", "--data", str(reviews), "--offline"]
    args += ["--sandbox", backend, "--verifier", "none", "--out", str(folder / "out")]
    args += ["--output", str(folder / "labeled.csv")]
    for specialist in SPECIALISTS:
        args += ["--model", specialist]
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(printed):
        patch.chdir(folder)
        patch.setenv("COLUMNS", "400")  # one line per note
        patch.delenv("OPENAI_API_KEY", raising=False)
        for name, value in docker_environment(deps_image).items():
            patch.setenv(name, value)
        code = main(args)
    assert code == 0, printed.getvalue()
    (run_dir,) = (folder / ".autoannotator" / "runs").iterdir()
    record = run_dir / IMAGE_RECORD
    return {
        "folder": folder,
        "rows": read_csv(folder / "labeled.csv"),
        "raw": sorted(run_dir.glob("labeled/*/output.csv")),
        "printed": printed.getvalue(),
        "image": json.loads(record.read_text()) if record.is_file() else None,
    }


def test_docker_run_labels_like_the_process_run_in_the_package_image(
    label_with: Callable[[str, str], Run], engine
) -> None:
    process, docker = label_with("process", "process"), label_with("docker", "docker")

    assert docker["rows"] == process["rows"]
    assert process["image"] is None
    raw = docker["raw"]
    assert raw and {path.stat().st_uid for path in raw} == {65534}  # written in a container
    # The pilot's package and the run's each ran in an image of their own (built, or found by
    # its content address: the engine keeps images between test sessions), and the emitted
    # package's image is on the engine, labeled with its content address.
    printed = docker["printed"]
    images = set(re.findall(r"package image (sentiment-labeler:[0-9a-f]{16}): (?:built|reused)",
                            printed))  # fmt: skip
    assert len(images) >= 2, printed
    assert all(engine.images.get(tag) for tag in images)
    tag = docker["image"]["tag"]
    assert f"package image: {tag} (docker run --rm --network none" in printed
    image = engine.images.get(tag)
    assert image.labels[DIGEST_LABEL] == docker["image"]["digest"]
    assert image.attrs["Config"]["User"] == "65534:65534"
    assert image.attrs["Config"]["Entrypoint"] == ["sentiment-labeler"]


def test_a_second_run_reuses_every_image(label_with: Callable[[str, str], Run]) -> None:
    first, second = label_with("docker", "docker"), label_with("again", "docker")

    assert second["rows"] == first["rows"]
    assert second["image"]["tag"] == first["image"]["tag"]
    assert second["image"]["built"] is False
    assert ": building from " not in second["printed"]
    assert second["printed"].count(": reused (same files and build arguments)") >= 3


def test_the_emitted_package_image_labels_like_the_agent_with_no_network(
    label_with: Callable[[str, str], Run], engine, tmp_path: Path
) -> None:
    docker = label_with("docker", "docker")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(EXAMPLES / "reviews.csv", data / "reviews.csv")
    os.chmod(data, 0o777)  # the image's user, 65534, writes the output here
    container = engine.containers.run(
        docker["image"]["tag"],
        ["/data/reviews.csv", "--output", "/data/labeled.csv"],
        volumes={str(data): {"bind": "/data", "mode": "rw"}},
        network_mode="none",
        detach=True,
    )
    try:
        status = container.wait(timeout=300)
        assert status["StatusCode"] == 0, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    (agent_output,) = docker["raw"]
    assert read_csv(data / "labeled.csv") == read_csv(agent_output)


def test_a_changed_package_rebuilds_only_its_code_and_failures_are_one_line(
    label_with: Callable[[str, str], Run], engine, deps_image: str, tmp_path: Path
) -> None:
    emitted = label_with("docker", "docker")["folder"] / "out" / "sentiment-labeler"
    package = tmp_path / "sentiment-labeler"
    shutil.copytree(emitted, package)
    with open(package / "README.md", "a", encoding="utf-8") as readme:
        readme.write("\nA note of this test.\n")
    recipe = ImageRecipe(deps_image, "python3", OFFLINE_PIP_ARGS)
    notes: list[str] = []
    image = package_image(engine, package, recipe, notes.append, tmp_path / "build.log")
    try:
        assert image.built
        # The dependencies' layer comes from the cache; the code layer is new.
        cached = " | ".join(image.cached)
        assert "-r /opt/labeler/requirements.txt" in cached, cached
        assert "COPY --from=code" not in cached
        assert package_image(engine, package, recipe, notes.append).built is False
    finally:
        engine.images.remove(image.tag, force=True)

    bare = ImageRecipe(BASE_IMAGE, "python3", OFFLINE_PIP_ARGS)
    with pytest.raises(ImageBuildError) as failed:
        package_image(engine, package, bare, notes.append, tmp_path / "bare.log")
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"the image of package {package} failed to build at 'RUN ")
    assert "python3: not found" in message and message.endswith(f"{tmp_path / 'bare.log'})")

    absent = ImageRecipe("local/absent:1", "python3", OFFLINE_PIP_ARGS)
    with pytest.raises(ImageBuildError, match=r"^base image local/absent:1 is not on the Dock"):
        package_image(engine, package, absent)


class FakeImages:
    """The two questions check_build_path asks an engine, answered from two sets."""

    def __init__(self, present: set[str], in_registry: set[str]) -> None:
        self.present, self.in_registry = present, in_registry

    def get(self, name: str) -> object:
        import docker

        if name not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return object()

    def get_registry_data(self, name: str) -> object:
        import docker

        if name not in self.in_registry:
            raise docker.errors.APIError("500", explanation=f"manifest for {name} not found")
        return object()


class FakeEngine:
    def __init__(self, present: set[str] = frozenset(), in_registry: set[str] = frozenset()):
        self.images = FakeImages(set(present), set(in_registry))


def test_the_build_path_says_whether_the_base_image_can_be_had() -> None:
    pytest.importorskip("docker")
    from agent.packaging.image import check_build_path, probe_base_image

    settings = Settings(docker_base_image="my/deps:1", docker_pip_args="--no-index")
    present = check_build_path(FakeEngine(present={"my/deps:1"}), settings)
    assert (present.ok, present.base_present) == (True, True)
    assert present.detail == "base image my/deps:1 present, PIP_INSTALL_ARGS '--no-index'"
    pullable = check_build_path(FakeEngine(in_registry={"my/deps:1"}), settings)
    assert (pullable.ok, pullable.base_present) == (True, False)
    assert pullable.detail.startswith("base image my/deps:1 pullable (the first build pulls it)")
    missing = check_build_path(FakeEngine(), settings)
    assert not missing.ok
    assert missing.detail == (
        "package images cannot be built: base image my/deps:1 is not on the engine and cannot "
        "be pulled (manifest for my/deps:1 not found); pull or load it, or choose one with "
        "--docker-base-image"
    )
    # No base image given: the CUDA PyTorch image of a package with Hugging Face voters.
    default = probe_base_image(Settings())
    assert default.startswith("pytorch/pytorch:") and default.endswith("-runtime")
    assert (
        "pip installs from the package index"
        in check_build_path(FakeEngine(present={default}), Settings()).detail
    )


@pytest.mark.docker
def test_a_base_image_that_cannot_be_had_stops_the_run_with_one_line(
    engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", docker_base_url())
    data = tmp_path / "reviews.csv"
    shutil.copy(EXAMPLES / "reviews.csv", data)
    args = ["label reviews by sentiment", "--data", str(data), "--offline", "--verifier", "none"]
    args += ["--sandbox", "docker", "--docker-base-image", "local/absent:1"]

    assert main(args) == 1

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1
    assert errors[0].startswith(
        "error: sandbox docker: package images cannot be built: base image local/absent:1 is not "
        "on the engine and cannot be pulled ("
    )
    (run_dir,) = (tmp_path / ".autoannotator" / "runs").iterdir()
    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE, "request.json"]


@pytest.mark.docker
def test_sandbox_exec_runs_in_the_base_image_with_its_interpreter(
    deps_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    os.chmod(tmp_path, 0o777)
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_HOST", docker_base_url())
    monkeypatch.setenv("AUTOANNOTATOR_DOCKER_BASE_IMAGE", deps_image)
    code = "import os, sys; print(sys.version_info[:2], os.getuid()); open('made', 'w')"

    assert main(["sandbox", "exec", "--sandbox", "docker", "--", "python3", "-c", code]) == 0

    assert capfd.readouterr().out == f"{tuple(sys.version_info[:2])} 65534\n"
    assert (tmp_path / "made").stat().st_uid == 65534
