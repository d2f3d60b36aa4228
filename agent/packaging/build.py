"""Building the labeler package on disk: spec, staging, lint gate, promotion, emission.

Rendered files go to a staging folder; only after the lint gate passes is the
staging folder renamed into the run's package folder, so nothing unlinted is
ever used or emitted. Local models, and by default the Hub voters' pinned files,
are bundled into the package (hard links in the run folder, real copies when
emitted); a Hub voter keeps its id and pinned commit as its source, and with
``--no-bundle-weights`` it is only referenced by them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from agent.context import RunContext
from agent.errors import UserInputError
from agent.labeler_runtime import VOTE_RECORD, VOTES
from agent.packaging.lint import format_and_lint
from agent.packaging.render import render_package
from agent.packaging.spec import PackageSpec, Provenance, VoterEntry, slug
from agent.settings import Settings
from agent.state import Candidate, RunState, TaskPlan

BASE_DISTRIBUTIONS = ("numpy", "tqdm", "starlette", "uvicorn")
"""What every generated labeler imports (starlette and uvicorn: its ``serve`` command)."""
TRANSFORMER_DISTRIBUTIONS = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
)
"""What a Hugging Face classifier voter adds."""
RUN_SPECIFIC_METRICS = frozenset(
    {"labeling time", "LLM calls", "LLM tokens (prompt / completion)", "LLM cost"}
)
"""Figures that differ between two runs on the same inputs (timings; LLM calls a cache may
spare): they go to the run report, never into the package, which stays reproducible."""
STAMP = ".verified-weights.json"
"""The labeler's stamp of weights it checked (:mod:`templates.labeler.pkg.weights`): it
belongs to one install, never to an emitted package."""
SAMPLE_TEXTS = (
    "Thank you so much, this was really helpful!",
    "This is the worst service I have ever had, you idiots.",
    "The meeting has been moved to 3 pm on Thursday.",
)


def pinned(distribution: str, fallback: str) -> str:
    """``name==version`` of an installed distribution (local build tags dropped)."""
    try:
        version = metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return f"{distribution}{fallback}"
    return f"{distribution}=={version.split('+', 1)[0]}"


def runtime_requirements(voters: Sequence[Candidate], tuned: bool = False) -> tuple[str, ...]:
    """Pinned requirements: the base, plus what each voter needs, sorted, each once.

    A package with LoRA adapters, or one a run will fine-tune (``tuned``), needs PEFT: to merge
    them when it loads, and to train them.
    """
    names = set(BASE_DISTRIBUTIONS) | ({"peft"} if tuned else set())
    for voter in voters:
        names.update(voter.requirements or TRANSFORMER_DISTRIBUTIONS)
    return tuple(pinned(name, ">=0") for name in sorted(names, key=str.lower))


def runtime_extras() -> dict[str, tuple[str, ...]]:
    return {
        "finetune": (pinned("peft", ">=0.13"),),
        "parquet": (pinned("pyarrow", ">=17"),),
        "ray": (pinned("ray", ">=2.60,<3").replace("ray", "ray[data]", 1),),
        "test": (pinned("pytest", ">=8"),),
        "lint": (pinned("black", ">=24"), pinned("ruff", ">=0.5")),
    }


def default_base_image(requirements: Sequence[str]) -> str:
    """A CUDA PyTorch image matching the pinned torch; plain Python without torch."""
    torch = next((r for r in requirements if r.startswith("torch==")), None)
    if torch is None:
        return "python:3.11-slim"
    return f"pytorch/pytorch:{torch.split('==', 1)[1]}-cuda12.8-cudnn9-runtime"


def package_names(plan: TaskPlan) -> tuple[str, str]:
    """Distribution and module names, from the task family (``toxicity-labeler``)."""
    base = slug(plan.family if plan.family not in ("other", "topic") else plan.task)
    name = f"{base}-labeler"
    return name, name.replace("-", "_")


def voter_entry(
    candidate: Candidate,
    adapter: dict | None = None,
    learned: dict | None = None,
    bundle: bool = True,
) -> VoterEntry:
    """The package's record of a voter; with ``bundle``, a Hub voter's pinned files go into
    the package (``models/<name>``), its source staying the Hub id and pinned commit."""
    if candidate.origin == "hub":
        source = f"hub:{candidate.ref}"
    elif candidate.origin == "specialist":
        source = f"pypi:{candidate.revision.split('==', 1)[0]}"
    elif candidate.origin == "learned":
        source = f"learned:{candidate.kind}"
    else:
        source = f"bundled:models/{candidate.name}"
    return VoterEntry(
        name=candidate.name,
        kind=candidate.kind,
        source=source,
        revision=candidate.revision,
        label_map=candidate.label_map,
        options=candidate.options,
        origin=candidate.ref,
        license=candidate.license,
        files=candidate.files,
        adapter=adapter,
        learned=learned,
        precision=candidate.precision,
        bundled=bundled_folder(candidate) if bundle else None,
    )


def bundled_folder(candidate: Candidate) -> str | None:
    """Where a Hub voter's pinned files go in the package module; None for other voters."""
    if candidate.origin != "hub" or not candidate.files:
        return None
    return f"models/{candidate.name}"


def build_spec(
    plan: TaskPlan,
    voters: Sequence[Candidate],
    settings: Settings,
    *,
    selection_notes: Sequence[str] = (),
    metrics: dict[str, str] | None = None,
    adapters: dict[str, dict] | None = None,
    learned_vote: dict | None = None,
    learned: dict[str, dict] | None = None,
) -> PackageSpec:
    """The spec of the package; ``adapters``: voter -> its promoted LoRA adapter record;
    ``learned_vote``: the installed learned vote's record (:func:`installed_vote`);
    ``learned``: voter -> its learned version in use and file hashes."""
    name, module = package_names(plan)
    adapters = adapters or {}
    bundle = settings.bundle_weights
    # A run that fine-tunes needs PEFT where the package runs (its Docker image included)
    # from the first stage on, not only once an adapter is promoted.
    tuned = bool(adapters) or settings.finetune_stages > 0
    requirements = runtime_requirements(voters, tuned=tuned)
    return PackageSpec(
        name=name,
        module=module,
        title=f"{plan.family.capitalize()} labeler ({', '.join(plan.label_names)})",
        task=plan.task,
        labels=plan.label_names,
        label_descriptions={label.name: label.description for label in plan.labels},
        text_column=plan.text_column,
        min_agreement=settings.min_agreement,
        min_confidence=settings.min_confidence,
        voters=tuple(
            voter_entry(v, adapters.get(v.name), (learned or {}).get(v.name), bundle)
            for v in voters
        ),
        learned_vote=learned_vote,
        requirements=requirements,
        extras=runtime_extras(),
        base_image=default_base_image(requirements),
        sample_texts=SAMPLE_TEXTS,
        selection_notes=tuple(selection_notes),
        metrics={k: v for k, v in (metrics or {}).items() if k not in RUN_SPECIFIC_METRICS},
    )


def installed_adapters(module_dir: Path) -> dict[str, dict]:
    """Voter -> the record of its current LoRA adapter, for the lock file and manifest."""
    adapters = {}
    for pointer in sorted((module_dir / "adapters").glob("*/CURRENT")):
        version = pointer.read_text(encoding="utf-8").strip()
        record = json.loads((pointer.parent / version / "adapter.json").read_text("utf-8"))
        adapters[pointer.parent.name] = {
            "version": version,
            "path": f"adapters/{pointer.parent.name}/{version}",
            "stage": record["stage"],
            "holdout_accuracy": record["holdout_accuracy_after"],
            "holdout_rows": record["holdout_rows"],
            "files": record["files"],
        }
    return adapters


def installed_vote(module_dir: Path) -> dict | None:
    """The learned vote the package uses, for the lock file, manifest and README; or None."""
    pointer = module_dir / VOTES / "CURRENT"
    if not pointer.is_file():
        return None
    version = pointer.read_text(encoding="utf-8").strip()
    path = module_dir / VOTES / version / VOTE_RECORD
    record = json.loads(path.read_text(encoding="utf-8"))
    return {
        "version": version,
        "path": f"{VOTES}/{version}/{VOTE_RECORD}",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "weights": {entry["voter"]: entry["weight"] for entry in record["voters"]},
        "bias": record["bias"],
        "examples": record["examples"],
        "cross_validated_accuracy": record["cross_validated_accuracy"],
        "plain_vote_accuracy": record["plain_vote_accuracy"],
    }


def selection_notes(state: RunState) -> list[str]:
    """Why the voters are what they are: how they were scored, pilot scores, then refusals."""
    notes = [score.note for score in state.pilot.scores] if state.pilot else []
    if state.pilot is not None and state.pilot.basis_note:
        notes.insert(0, state.pilot.basis_note)
    return notes + [f"{r.ref}: refused, {r.reason}" for r in state.rejections]


def provenance(state: RunState, settings: Settings, llm_info: dict | None) -> Provenance:
    return Provenance(
        run_id=state.run_id,
        plan=state.plan.model_dump(mode="json"),
        data=state.dataset.model_dump(mode="json"),
        llm=llm_info,
        settings=settings.model_dump(mode="json", exclude={"llm_api_key"}),
    )


def write_tree(
    folder: Path,
    spec: PackageSpec,
    prov: Provenance,
    voters: Sequence[Candidate],
    *,
    link: bool,
) -> Path:
    """Render the package into ``folder`` (replaced if present) and bundle the voters' model
    files: local models' and, unless the spec only references them, Hub voters' pinned ones."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for relative, content in render_package(spec, prov).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    entries = {entry.name: entry for entry in spec.voters}
    for candidate in voters:
        entry = entries.get(candidate.name)
        if candidate.origin == "local":
            inside = f"models/{candidate.name}"
        elif entry is not None and entry.bundled:
            inside = entry.bundled
        else:
            continue
        destination = folder / spec.module / inside
        destination.mkdir(parents=True)
        for relative in sorted(candidate.files):
            # The Hub cache's snapshot files are symlinks to blobs: link or copy the blob.
            source = (Path(candidate.path) / relative).resolve()
            if not source.is_file():
                raise UserInputError(
                    f"voter {candidate.name}: {source} is gone (its model files were moved or "
                    "the Hugging Face cache was cleared); run again to fetch them"
                )
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            _place(source, destination / relative, link=link)
    return folder


def _place(source: Path, target: Path, *, link: bool) -> None:
    """Hard-link a world-readable file; copy anything else and make the copy readable.

    transformers saves weights with mode 0600; a sandbox user (Docker's uid 65534) must
    read them, and chmod on a hard link would change the user's own file.
    """
    if link and os.stat(source).st_mode & 0o004:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another filesystem: fall back to a copy
    shutil.copyfile(source, target)
    os.chmod(target, 0o644)


def build_package(
    folder: Path, spec: PackageSpec, prov: Provenance, voters: Sequence[Candidate]
) -> Path:
    """Render into a staging sibling, lint it, then move it into ``folder``."""
    staging = folder.with_name(folder.name + ".staging")
    write_tree(staging, spec, prov, voters, link=True)
    format_and_lint(staging)
    promote(staging, folder)
    return folder


def promote(staging: Path, folder: Path) -> None:
    """Replace ``folder`` with ``staging`` (both in the same parent)."""
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)


def emit(package_dir: Path, destination: Path) -> Path:
    """Copy the package to ``destination`` atomically: a temporary sibling, then a rename."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        shutil.copytree(
            package_dir,
            temporary,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", STAMP),
        )
        if destination.exists():
            retired = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            os.replace(destination, retired)
            os.replace(temporary, destination)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, destination)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return destination


def llm_info(context: RunContext) -> dict | None:
    """The LLM settings recorded in the manifest (never the key)."""
    if context.llm is None:
        return None
    settings = context.settings
    return {
        "model": context.llm.model_name,
        "base_url": settings.llm_base_url,
        "structured_method": getattr(context.llm, "structured_method", None)
        or settings.llm_structured_method,
    }
