"""Typed configuration of a labeler: the task, its labels and its voters.

``spec.py`` (rendered for each task) builds one :class:`LabelerSpec` from
Python literals; everything else in the package reads it from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IGNORE = "ignore"
"""Label-map target for a model label that says nothing about the task's labels."""


@dataclass(frozen=True)
class VoterConfig:
    """One voter: where its model comes from and how its labels map onto the task's."""

    name: str
    """Short identifier, unique within the labeler; used in output column names."""
    kind: str
    """Adapter kind, e.g. ``hf-sequence-classifier``."""
    source: str
    """``hub:<repo id>`` or ``bundled:<path inside the package>``."""
    revision: str
    """Pinned Hub commit ``sha``, or the content hash of a bundled model."""
    label_map: dict[str, str]
    """Model label -> task label, or ``ignore``."""
    weight: float = 1.0
    """Vote weight."""
    options: dict[str, object] = field(default_factory=dict)
    """Kind-specific settings (e.g. maximum sequence length)."""
    bundled: str | None = None
    """Folder inside the package holding a Hub voter's pinned files (``models/<name>``), or
    None when only the Hub revision is referenced."""
    precision: str | None = None
    """CPU precision decided at build time (``int8`` or ``fp32``); None: no choice to make."""


@dataclass(frozen=True)
class LabelerSpec:
    """Everything that varies from one generated labeler to another."""

    name: str
    """Distribution name of the package."""
    task: str
    """The request the labeler was generated for."""
    labels: tuple[str, ...]
    """The task's labels, in a fixed order (ties in a vote go to the earlier one)."""
    text_column: str
    """Default input column holding the text."""
    min_agreement: float
    """A row needs review when the winning label's vote share is below this."""
    voters: tuple[VoterConfig, ...]
    """The voters, in output-column order."""
    min_confidence: float = 0.0
    """... or when the voters' mean probability for the winning label is below this."""
