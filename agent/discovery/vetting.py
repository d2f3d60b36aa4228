"""Turning model references (local folders, Hub ids) into vetted voter candidates.

A model is accepted only when it ships safetensors weights, needs no remote
code, has a single-label head, and its labels map onto the task's (see
:mod:`agent.discovery.label_names`); opaque labels get a provisional mapping that the pilot
calibrates (:mod:`agent.discovery.calibration`). Discovered Hub models must also
pass licence, size, library and language filters on their metadata. Each
refusal carries a reason a person can read.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from agent.discovery.label_names import LabelMapping, all_opaque, map_labels, provisional_mapping
from agent.errors import UserInputError
from agent.hub.client import HubModel, ModelHub
from agent.hub.model_files import (
    ModelFolder,
    config_labels,
    content_revision,
    file_hashes,
    is_multi_label,
    read_model_folder,
)
from agent.licenses import license_problem
from agent.state import Candidate, Rejection

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
SPECIALIST_PREFIX = "specialist:"
MULTI_LABEL_REASON = "multi-label (sigmoid) head: its classes are not one label per text"
REMOTE_CODE_REASON = "needs remote code (trust_remote_code is refused)"


def decide_mapping(model_labels: tuple[str, ...], task_labels: tuple[str, ...]) -> LabelMapping:
    """Names and synonyms; a provisional one-to-one guess for opaque labels (pilot-calibrated)."""
    if all_opaque(model_labels):
        return provisional_mapping(model_labels, task_labels)
    return map_labels(model_labels, task_labels)


def voter_name(reference: str, taken: set[str]) -> str:
    """A short identifier for output columns, unique among ``taken``."""
    base = reference.rstrip("/").split("/")[-1].lower()
    base = re.sub(r"[^a-z0-9]+", "_", base).strip("_")[:32] or "voter"
    if not base[0].isalpha():
        base = f"v_{base}"
    name, counter = base, 2
    while name in taken:
        name, counter = f"{base}_{counter}", counter + 1
    taken.add(name)
    return name


def check_model_reference(reference: str) -> None:
    """Refuse at once a ``--model`` that is neither an existing folder nor a Hub id."""
    if reference.startswith(SPECIALIST_PREFIX):
        return
    path = Path(reference).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserInputError(f"--model {reference}: not a folder")
        read_model_folder(path)
        return
    if not HUB_ID.fullmatch(reference):
        raise UserInputError(f"--model {reference}: no such folder, and not a Hub id (owner/name)")


def vet_folder(
    reference: str,
    folder: ModelFolder,
    task_labels: tuple[str, ...],
    *,
    name: str,
    origin: str,
    revision: str | None = None,
    license_name: str = "unknown",
    downloads: int | None = None,
    label_map: dict[str, str] | None = None,
    label_map_note: str = "",
    max_parameters: int | None = None,
) -> Candidate | Rejection:
    """A candidate when the folder is safe and its labels map, else a rejection with the reason.

    ``label_map`` is a mapping decided before the download (from config.json, perhaps by the
    LLM, as ``label_map_note`` says); it must still fit the labels of the files that arrived.
    """
    if not folder.has_safetensors:
        return Rejection(ref=reference, reason="no safetensors weights (pickle files are refused)")
    if folder.remote_code:
        return Rejection(ref=reference, reason=REMOTE_CODE_REASON)
    if folder.multi_label:
        return Rejection(ref=reference, reason=MULTI_LABEL_REASON)
    if max_parameters is not None and (folder.parameters or 0) > max_parameters:
        return Rejection(ref=reference, reason=size_reason(folder.parameters or 0, max_parameters))
    if label_map is not None and set(label_map) == set(folder.model_labels):
        mapping = LabelMapping(dict(label_map), None)
    elif label_map is not None:
        reason = f"its downloaded labels {list(folder.model_labels)} differ from its config.json"
        return Rejection(ref=reference, reason=reason)
    else:
        mapping = decide_mapping(folder.model_labels, task_labels)
    if not mapping.ok:
        return Rejection(ref=reference, reason=mapping.reason or "")
    hashes = file_hashes(folder.path)
    return Candidate(
        name=name,
        ref=reference,
        origin=origin,
        path=str(folder.path.resolve()),
        revision=revision or content_revision(hashes),
        model_labels=folder.model_labels,
        label_map=mapping.mapping,
        license=license_name,
        parameters=folder.parameters,
        downloads=downloads,
        files=hashes,
        label_map_note=label_map_note if label_map is not None else "",
    )


def size_reason(parameters: int, cap: int) -> str:
    return f"{parameters:,} parameters, above the cap of {cap:,} (AUTOANNOTATOR_MAX_PARAMETERS)"


def hub_precheck(
    model: HubModel,
    language: str,
    *,
    licenses: tuple[str, ...] | None = None,
    max_parameters: int | None = None,
) -> str | None:
    """Why a Hub model is refused from its metadata alone, or None.

    ``licenses`` and ``max_parameters`` apply to discovered models; a model the user named is
    the user's decision on both.
    """
    if model.gated or model.private:
        return "gated or private"
    if model.remote_code:
        return REMOTE_CODE_REASON
    if not any(name.endswith(".safetensors") for name in model.files):
        return "no safetensors weights (pickle files are refused)"
    if model.pipeline_tag not in (None, "text-classification"):
        return f"pipeline tag is {model.pipeline_tag}, not text-classification"
    if model.library not in (None, "transformers"):
        return f"library is {model.library}; the labeler loads transformers classifiers only"
    if licenses is not None and (problem := license_problem(model.license, licenses)):
        return problem
    if max_parameters is not None and (model.parameters or 0) > max_parameters:
        return size_reason(model.parameters or 0, max_parameters)
    if (
        model.languages
        and language not in model.languages
        and "multilingual" not in model.languages
    ):
        return f"languages {list(model.languages)} do not include {language}"
    return None


def fetch_hub_candidate(
    hub: ModelHub,
    model: HubModel,
    task_labels: tuple[str, ...],
    name: str,
    *,
    label_map: dict[str, str] | None = None,
    label_map_note: str = "",
    max_parameters: int | None = None,
) -> Candidate | Rejection:
    """Download a Hub model's labeler files at its exact commit and vet them."""
    folder = read_model_folder(hub.download(model.id, model.sha))
    return vet_folder(
        model.id,
        folder,
        task_labels,
        name=name,
        origin="hub",
        revision=model.sha,
        license_name=model.license,
        downloads=model.downloads,
        label_map=label_map,
        label_map_note=label_map_note,
        max_parameters=max_parameters,
    )


def read_hub_labels(hub: ModelHub, model: HubModel) -> HubModel | Rejection:
    """The model with its labels read from ``config.json`` at its commit, before any weights
    are fetched (the Hub's model info does not carry ``id2label``), or why it is refused.

    A hub that cannot serve single files (a test double over local folders) leaves the model
    as it is: its labels are then read after the download.
    """
    read_config = getattr(hub, "read_config", None)
    if read_config is None:
        return model
    try:
        config = read_config(model.id, model.sha)
        labels = config_labels(config)
    except UserInputError as error:  # gated after all, no config.json, bad id2label
        return Rejection(ref=model.id, reason=str(error))
    if "auto_map" in config:
        return Rejection(ref=model.id, reason=REMOTE_CODE_REASON)
    if is_multi_label(config):
        return Rejection(ref=model.id, reason=MULTI_LABEL_REASON)
    return dataclasses.replace(model, id2label=dict(enumerate(labels)), config=config)


def hub_labels(model: HubModel) -> tuple[str, ...]:
    """The model's labels in class order; empty when not read yet."""
    return tuple(model.id2label[index] for index in sorted(model.id2label))
