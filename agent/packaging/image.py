"""The package image: a labeler package built from its own Dockerfile, for ``--sandbox docker``.

With the Docker sandbox the pilot, the labeling passes and the learning steps run in the
package's own image, built here through the Docker SDK from the package folder and the
Dockerfile rendered into it (dependencies, then weights, then code and learned artefacts, each
a layer), so the container that labeled the data is the one a user deploys.

The tag is content-addressed: ``<distribution>:<digest>``, the digest covering every file the
build sees (the build context, ``.dockerignore`` applied), the build arguments and the base
image's id. An unchanged package is therefore never rebuilt, and a changed one (learned
artefacts of a new round, another voter set) rebuilds only the layers after the first change:
the engine's layer cache keeps the rest. One thing is left out of the digest: the ``provenance``
of ``manifest.json`` (run id, absolute paths, the run's settings), which says how a run came
about and changes nothing the package does, so a second run rendering the same package reuses
its image (whose manifest records the run that built it).

Build arguments come from the settings: ``BASE_IMAGE`` (``--docker-base-image``; unset, the
Dockerfile's own default), ``PYTHON`` (``AUTOANNOTATOR_DOCKER_PYTHON``) and
``PIP_INSTALL_ARGS`` (``--docker-pip-args``). A base image missing on the engine is pulled
first. Every line of the build goes to a log file; its steps and outcome go to the run log;
a failure is one line naming the step, pip's own error and the log file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError
from agent.settings import Settings

if TYPE_CHECKING:
    from docker import DockerClient

logger = logging.getLogger(__name__)

Log = Callable[[str], None]
BUILD_TIMEOUT_S = 6 * 3600
"""A build installs the dependencies (torch: gigabytes) and may be silent for minutes."""
DIGEST_LABEL = "autoannotator.package-digest"
PACKAGE_LABEL = "autoannotator.package"
TAG_DIGITS = 16
STEP_CHARS = 72
"""Longest build step shown in the run log (the log file has every line whole)."""
MANIFEST = "manifest.json"
IMAGE_RECORD = "package-image.json"
"""Written into the run folder: the emitted package's image, its digest and how it was got."""
_BASE_ARG = re.compile(r"^ARG\s+BASE_IMAGE=(\S+)\s*$", re.MULTILINE)
_STEP = re.compile(r"^Step \d+/\d+ : ")
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
"""Colour codes the engine puts around a RUN step's stderr."""


class ImageBuildError(AgentError):
    """The package image could not be built (its base image, pip, the engine)."""


@dataclass(frozen=True)
class ImageRecipe:
    """What besides the package decides its image: the Dockerfile's build arguments."""

    base_image: str | None
    """``BASE_IMAGE``; None: the Dockerfile's own default."""
    python: str
    pip_args: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageRecipe:
        return cls(settings.docker_base_image, settings.docker_python, settings.docker_pip_args)

    def build_args(self) -> dict[str, str]:
        args = {"PYTHON": self.python, "PIP_INSTALL_ARGS": self.pip_args}
        return args | ({"BASE_IMAGE": self.base_image} if self.base_image else {})


@dataclass(frozen=True)
class PackageImage:
    tag: str
    digest: str
    base_image: str
    built: bool
    """False when an image of the same digest was on the engine already."""
    seconds: float
    cached: tuple[str, ...] = ()
    """The build steps the engine's layer cache answered (``Step 11/18 : RUN ...``)."""
    steps: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "digest": self.digest,
            "base_image": self.base_image,
            "built": self.built,
            "seconds": round(self.seconds, 1),
            "steps_from_cache": f"{len(self.cached)}/{self.steps}",
        }


def dockerfile_base(package_dir: Path) -> str:
    """The Dockerfile's default ``BASE_IMAGE``."""
    try:
        text = (package_dir / "Dockerfile").read_text(encoding="utf-8")
    except OSError as error:
        raise ImageBuildError(
            f"package {package_dir} has no readable Dockerfile: {error}"
        ) from None
    found = _BASE_ARG.search(text)
    if found is None:
        raise ImageBuildError(f"the Dockerfile of {package_dir} declares no ARG BASE_IMAGE")
    return found.group(1)


def distribution_name(package_dir: Path) -> str:
    try:
        with open(package_dir / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["name"]).lower()
    except (OSError, tomllib.TOMLDecodeError, KeyError) as error:
        raise ImageBuildError(
            f"package {package_dir}: unreadable pyproject.toml ({error})"
        ) from None


def context_files(package_dir: Path) -> list[str]:
    """The files ``docker build`` sends from ``package_dir`` (``.dockerignore`` applied)."""
    from docker.utils.build import exclude_paths

    ignore = package_dir / ".dockerignore"
    patterns = []
    if ignore.is_file():
        lines = ignore.read_text(encoding="utf-8").splitlines()
        patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    paths = exclude_paths(str(package_dir), patterns, dockerfile="Dockerfile")
    return sorted(p for p in paths if (package_dir / p).is_file())


def _file_digest(path: Path, relative: str) -> bytes:
    data = path.read_bytes()
    if relative == MANIFEST:
        try:
            manifest = json.loads(data)
            manifest.pop("provenance", None)
            data = json.dumps(manifest, sort_keys=True).encode()
        except (ValueError, AttributeError):
            pass  # not the manifest we render: hashed as it is
    executable = b"x" if path.stat().st_mode & 0o111 else b"-"
    return executable + hashlib.sha256(data).digest()


def package_digest(package_dir: Path, recipe: ImageRecipe, base_id: str) -> str:
    """The content address of the package's image (see the module docstring)."""
    digest = hashlib.sha256()
    arguments = json.dumps(recipe.build_args(), sort_keys=True)
    digest.update(f"{arguments}\0{base_id}\0".encode())
    for relative in context_files(package_dir):
        digest.update(relative.encode() + b"\0" + _file_digest(package_dir / relative, relative))
    return digest.hexdigest()


def ensure_base(client: DockerClient, base: str, log: Log) -> str:
    """The base image's id, pulled first when the engine does not have it."""
    import docker

    try:
        return client.images.get(base).id
    except docker.errors.ImageNotFound:
        pass
    log(f"pulling base image {base}")
    try:
        return client.images.pull(base).id
    except docker.errors.APIError as error:
        reason = " ".join(str(error.explanation or error).split())
        raise ImageBuildError(
            f"base image {base} is not on the Docker engine and could not be pulled "
            f"({reason}): pull or load it, or choose one with --docker-base-image"
        ) from None


def package_image(
    client: DockerClient,
    package_dir: Path,
    recipe: ImageRecipe,
    log: Log | None = None,
    log_file: Path | None = None,
) -> PackageImage:
    """The package's image on the engine: found by its digest, else built (see the module)."""
    import docker

    note = log or logger.info
    started = time.monotonic()
    base = recipe.base_image or dockerfile_base(package_dir)
    digest = package_digest(package_dir, recipe, ensure_base(client, base, note))
    tag = f"{distribution_name(package_dir)}:{digest[:TAG_DIGITS]}"
    try:
        existing = client.images.get(tag)
    except docker.errors.ImageNotFound:
        existing = None
    if existing is not None and existing.labels.get(DIGEST_LABEL) == digest:
        note(f"package image {tag}: reused (same files and build arguments)")
        return PackageImage(tag, digest, base, False, time.monotonic() - started)
    note(f"package image {tag}: building from {package_dir} on {base}")
    steps, cached = _build(client, package_dir, tag, digest, recipe, note, log_file)
    seconds = time.monotonic() - started
    note(f"package image {tag}: built in {seconds:.1f} s ({len(cached)} of {steps} steps cached)")
    return PackageImage(tag, digest, base, True, seconds, cached, steps)


def _build(
    client: DockerClient,
    package_dir: Path,
    tag: str,
    digest: str,
    recipe: ImageRecipe,
    note: Log,
    log_file: Path | None,
) -> tuple[int, tuple[str, ...]]:
    """Run the build, streaming it; the number of steps and the steps the cache answered."""
    import docker
    import requests

    labels = {DIGEST_LABEL: digest, PACKAGE_LABEL: tag.split(":", 1)[0]}
    transcript = _Transcript(note, log_file)
    try:
        stream = client.api.build(
            path=str(package_dir),
            tag=tag,
            buildargs=recipe.build_args(),
            labels=labels,
            rm=True,
            forcerm=True,
            decode=True,
            timeout=BUILD_TIMEOUT_S,
        )
        for chunk in stream:
            transcript.add(chunk)
    except (docker.errors.DockerException, requests.RequestException) as error:
        transcript.error = " ".join(str(error).split())
    finally:
        transcript.close()
    if transcript.error is not None:
        raise ImageBuildError(transcript.failure(package_dir))
    return transcript.steps, tuple(transcript.cached)


class _Transcript:
    """The build's output: every line to the log file, steps to the run log, the error kept."""

    def __init__(self, note: Log, log_file: Path | None) -> None:
        self._note = note
        self._file = open(log_file, "a", encoding="utf-8") if log_file is not None else None
        self.log_file = log_file
        self.step: str | None = None
        self.steps = 0
        self.cached: list[str] = []
        self.error: str | None = None
        self._pip_error: str | None = None
        self._last_output: str | None = None

    def add(self, chunk: dict) -> None:
        if "error" in chunk:
            detail = chunk.get("errorDetail") or {}
            self.error = " ".join(str(detail.get("message") or chunk["error"]).split())
            self._write(f"error: {self.error}")
            return
        for line in _TERMINAL_CODES.sub("", str(chunk.get("stream", ""))).splitlines():
            line = line.rstrip()
            if not line:
                continue
            self._write(line)
            if _STEP.match(line):
                self.step, self.steps = line, self.steps + 1
                shown = line if len(line) <= STEP_CHARS else line[: STEP_CHARS - 3] + "..."
                self._note(f"image build: {shown}")
            elif line.strip() == "---> Using cache" and self.step is not None:
                self.cached.append(self.step)
            elif line.startswith("ERROR:"):
                self._pip_error = line
            elif not line.lstrip().startswith(("--->", "Removing intermediate")):
                self._last_output = line.strip()

    def _write(self, line: str) -> None:
        if self._file is not None:
            self._file.write(line + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def failure(self, package_dir: Path) -> str:
        where = f" at {_STEP.sub('', self.step)!r}" if self.step else ""
        said = self._pip_error or self._last_output
        output = f"; its output ended: {said}" if said and said not in str(self.error) else ""
        log = f" (whole build output: {self.log_file})" if self.log_file else ""
        return (
            f"the image of package {package_dir} failed to build{where}: {self.error}{output}{log}"
        )


def probe_base_image(settings: Settings) -> str:
    """The base image ``doctor`` and the preflight check: ``--docker-base-image``, else the CUDA
    PyTorch image the Dockerfile of a package with Hugging Face voters starts from."""
    from agent.packaging.build import default_base_image, pinned

    return settings.docker_base_image or default_base_image((pinned("torch", ">=0"),))


def docker_sandbox_options(settings: Settings, log: Log | None = None) -> dict[str, Any]:
    """``make_sandbox("docker", ...)`` options: containers of the probe base image by default
    (``sandbox exec``, the probe), which a run need not have yet (the first build pulls it)."""
    return {
        "image": probe_base_image(settings),
        "base_url": settings.docker_host,
        "python": settings.docker_python,
        "require": False,
        "log": log,
    }


def uses_package_images(sandbox: object) -> bool:
    """Whether packages run in their own image: the Docker sandbox, with the images' own
    interpreters (not a host interpreter mounted into a bare image)."""
    return getattr(sandbox, "name", None) == "docker" and not getattr(
        sandbox, "mounts_host_python", True
    )


def image_for_run(sandbox: Any, package_dir: Path, settings: Settings) -> PackageImage:
    """The image a run's package runs in; the build output beside the package folder."""
    log_file = package_dir.with_name(f"{package_dir.name}.image-build.log")
    recipe = ImageRecipe.from_settings(settings)
    return package_image(sandbox.client, package_dir, recipe, sandbox.log, log_file)


def emitted_package_image(
    sandbox: Any, package_path: Path, settings: Settings, run_dir: Path
) -> PackageImage:
    """The emitted package's image (its model card now carries the run's figures, so its code
    layer may be new), recorded in the run folder as ``package-image.json``."""
    recipe = ImageRecipe.from_settings(settings)
    image = package_image(
        sandbox.client, package_path, recipe, sandbox.log, run_dir / "package-image.log"
    )
    record = json.dumps(image.record(), indent=2) + "\n"
    (run_dir / IMAGE_RECORD).write_text(record, encoding="utf-8")
    return image


@dataclass(frozen=True)
class BuildPath:
    """Whether package images can be built: ``doctor``'s line and the preflight's check."""

    ok: bool
    base_present: bool
    """The base image is on the engine, so the probe can run in it."""
    detail: str
    pip: str = ""
    """What pip gets: ``PIP_INSTALL_ARGS '...'`` or the package index."""


def check_build_path(client: DockerClient, settings: Settings) -> BuildPath:
    """The base image present or pullable; the pip arguments the builds will use."""
    import docker

    from sandbox.docker import registry_error

    base = probe_base_image(settings)
    pip = settings.docker_pip_args
    pip_note = f"PIP_INSTALL_ARGS {pip!r}" if pip else "pip installs from the package index"
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        reason = registry_error(client, base)
        if reason is not None:
            return BuildPath(
                False,
                False,
                f"package images cannot be built: base image {base} is not on the engine and "
                f"cannot be pulled ({reason}); pull or load it, or choose one with "
                "--docker-base-image",
            )
        pullable = f"base image {base} pullable (the first build pulls it)"
        return BuildPath(True, False, f"{pullable}, {pip_note}", pip_note)
    return BuildPath(True, True, f"base image {base} present, {pip_note}", pip_note)
