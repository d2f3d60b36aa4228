"""The dependencies image the Docker tests build package images FROM, made without a registry.

Docker Hub and PyPI are unreachable here, so package images are built the way the package's
Dockerfile calls "Offline": ``BASE_IMAGE`` is an image that already holds the interpreter and
the pinned distributions, and ``PIP_INSTALL_ARGS="--no-index --no-build-isolation"`` makes pip
check the pins against them and install only the package. This module makes that image from
the bare ``local/debian:bookworm`` (scripts/docker-engine.sh): this interpreter's prefix (at
its own path, so its shared library is found) plus the installed distributions any generated
package may pin, and their dependency closure (CPU torch from the local install included),
with pip and setuptools to build the package.

The tag is content-addressed (the interpreter, each distribution and its version), so the
image is made once and reused by every test and every later session while nothing it holds
changes; a file lock keeps two test workers from making it at the same time.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from docker import DockerClient

OFFLINE_PIP_ARGS = "--no-index --no-build-isolation"
BUILD_TOOLS = ("pip", "setuptools")
"""What ``--no-build-isolation`` builds the package with, from the image."""
STDLIB_LEFT_OUT = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip"}
REPOSITORY = "autoannotator-test/deps"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def package_distributions() -> list[str]:
    """Every distribution a generated package may pin: the base, the Hugging Face voters'
    stack, each installed offline specialist's, the learned voters' and PEFT."""
    from agent.discovery.catalog import SPECIALISTS
    from agent.discovery.learned_voters import TFIDF_RUNTIME
    from agent.packaging.build import BASE_DISTRIBUTIONS, TRANSFORMER_DISTRIBUTIONS

    names = {*BASE_DISTRIBUTIONS, *TRANSFORMER_DISTRIBUTIONS, *TFIDF_RUNTIME, "peft"}
    names.update(r for s in SPECIALISTS for r in s.requirements if _installed(r))
    return sorted(names, key=str.lower)


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def dependency_closure(requirements: Iterable[str]) -> list[metadata.Distribution]:
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


def interpreter_prefix() -> Path | None:
    """This interpreter's own prefix (pyenv, uv); None for a system one, which cannot be
    copied into an image without replacing the image's /usr."""
    prefix = Path(sys.base_prefix).resolve()
    return None if prefix in (Path("/"), Path("/usr"), Path("/usr/local")) else prefix


def image_files(prefix: Path, requirements: Iterable[str]) -> Iterator[tuple[Path, Path]]:
    """(host file, image path) pairs: the interpreter, its stdlib, the distributions."""
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(prefix)})["stdlib"])
    target_site = stdlib / "site-packages"
    for path in sorted(prefix.joinpath("bin").glob("python3*")):
        yield path, path
    for path in sorted(prefix.joinpath("lib").glob("libpython3*")):
        yield path, path
    for child in sorted(stdlib.iterdir()):
        if child.name not in STDLIB_LEFT_OUT and not child.name.startswith("config-"):
            yield child, child
    for distribution in dependency_closure([*requirements, *BUILD_TOOLS]):
        site = Path(distribution.locate_file("")).resolve()
        for relative in distribution.files or []:
            if relative.parts[0] == ".." or "__pycache__" in relative.parts:
                continue  # console scripts live outside; caches are rebuilt
            yield site / relative, target_site / relative


def image_tag(prefix: Path, base_image: str, requirements: Iterable[str]) -> str:
    """A tag naming exactly what the image holds."""
    digest = hashlib.sha256(f"{base_image}\0{prefix}\0{sys.version}".encode())
    for distribution in dependency_closure([*requirements, *BUILD_TOOLS]):
        digest.update(f"\0{distribution.metadata['Name']}=={distribution.version}".encode())
    return f"{REPOSITORY}:{digest.hexdigest()[:16]}"


def make_dependencies_image(
    client: DockerClient, base_image: str, requirements: Iterable[str], tag: str, prefix: Path
) -> None:
    """``base_image`` plus the interpreter and ``requirements``, committed as ``tag``."""
    with tempfile.TemporaryFile() as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for source, target in image_files(prefix, requirements):
                if source.exists():
                    tar.add(source, arcname=str(target).lstrip("/"))
        archive.seek(0)
        container = client.containers.create(base_image, command=["true"], network_mode="none")
        try:
            if not container.put_archive("/", archive):
                raise RuntimeError(f"the engine refused the files of {tag}")
            path = f"{prefix / 'bin'}:{IMAGE_PATH}"
            repository, version = tag.rsplit(":", 1)
            container.commit(repository=repository, tag=version, changes=[f"ENV PATH={path}"])
        finally:
            container.remove(force=True)


@functools.cache
def dependencies_image(base_url: str, base_image: str) -> str:
    """The dependencies image for this interpreter on the engine at ``base_url``: made once
    (under a lock shared by test workers), found again by its tag afterwards."""
    from sandbox.docker import connect

    prefix = interpreter_prefix()
    if prefix is None:
        raise RuntimeError(f"this interpreter ({sys.base_prefix}) is not in a prefix of its own")
    requirements = package_distributions()
    tag = image_tag(prefix, base_image, requirements)
    client = connect(base_url)
    lock_path = Path(tempfile.gettempdir()) / f"{tag.replace('/', '_').replace(':', '-')}.lock"
    try:
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not client.images.list(name=tag):
                make_dependencies_image(client, base_image, requirements, tag, prefix)
    finally:
        client.close()
    return tag
