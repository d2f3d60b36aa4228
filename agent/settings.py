"""One settings object: ``AUTOANNOTATOR_*`` environment variables, overridden by CLI flags.

Secrets (the OpenAI key) are read here and never copied into run state,
manifests or a sandbox.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agent.licenses import PERMISSIVE_LICENSES

SandboxKind = Literal["process", "docker", "none"]
DeviceKind = Literal["auto", "cpu", "cuda"]
VERIFIER_KINDS = ("llm", "human", "none")


RETIRED_VARIABLES = {
    "AUTOANNOTATOR_DOCKER_IMAGE": "--sandbox docker builds each package's own image; "
    "set its base with --docker-base-image",
    "AUTOANNOTATOR_DOCKER_MOUNT_HOST_PYTHON": "--sandbox docker runs each package in its own "
    "image, with the image's interpreter",
}
"""Environment variables earlier versions read, and why they are refused now."""


def retired_variable() -> str | None:
    """One line naming a retired variable that is set, or None."""
    for name, reason in RETIRED_VARIABLES.items():
        if name in os.environ:
            return f"{name} is no longer read: {reason} (unset it)"
    return None


def default_verdict_cache() -> Path:
    """``$XDG_CACHE_HOME/autoannotator-agent/verdicts.sqlite`` (``~/.cache`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "autoannotator-agent" / "verdicts.sqlite"


def default_preflight_cache() -> Path:
    """``$XDG_CACHE_HOME/autoannotator-agent/preflight.json`` (``~/.cache`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "autoannotator-agent" / "preflight.json"


class Settings(BaseSettings):
    """Every knob of a run. Flags and environment variables share these names."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOANNOTATOR_", extra="ignore", populate_by_name=True
    )

    text_column: str | None = None
    """Column holding the text; inferred by the planner when unset."""
    labels: Annotated[tuple[str, ...], NoDecode] = ()
    """Task labels, overriding the planner's."""
    models: Annotated[tuple[str, ...], NoDecode] = ()
    """Voters to use (Hub ids or local folders); skips discovery."""
    out: Path = Path("generated")
    """Folder the labeler package is written to."""
    output: Path | None = None
    """Labeled data file; defaults to ``<out>/<input stem>.labeled<ext>``."""
    offline: bool = False
    """No Hub and no LLM."""
    llm_model: str = "gpt-4o-mini"
    llm_base_url: str | None = None
    """Any OpenAI-compatible endpoint; the OpenAI API when unset."""
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "AUTOANNOTATOR_LLM_API_KEY")
    )
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 3
    llm_structured_method: Literal[
        "auto", "json_schema", "function_calling", "json_mode", "text"
    ] = "auto"
    """How answers are made structured; ``auto`` tries each in that order and steps down when the
    endpoint refuses one (the method that worked is remembered in the LLM cache)."""
    llm_cache: bool = True
    """Cache every LLM answer (and verdict) in ``verdict_cache``: a rerun with the same inputs and
    settings sends no request. ``--no-llm-cache`` neither reads nor writes it."""
    llm_batch: bool = False
    """Verify through the OpenAI Batch API: one batch per verification pass, at the batch
    price, waited for (a killed run resumes waiting for the same batch)."""
    llm_batch_poll_s: float = Field(default=30.0, gt=0)
    """Seconds between two looks at a pending batch."""
    llm_prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """Extra price-table entries: model -> (USD per 1M input tokens, per 1M output tokens)."""
    verifier: str | None = None
    """``llm``, ``human``, ``column:NAME`` or ``none``; default: ``llm`` if configured."""
    judge_batch_size: int = 50
    """Disagreement rows per LLM request."""
    llm_concurrency: int = Field(default=4, ge=1)
    """LLM requests in flight at once while verifying."""
    budget_usd: float | None = Field(default=5.0, ge=0)
    """Ask before verification expected to cost more than this (``--yes`` skips asking)."""
    max_cost_usd: float | None = Field(default=None, ge=0)
    """Hard cap: no LLM call past it; the rows left go to human review."""
    verdict_cache: Path = Field(default_factory=default_verdict_cache)
    """SQLite cache of LLM verdicts and answers, shared by runs, so nothing is paid for twice
    (``autoannotator-agent cache clear`` deletes it)."""
    sandbox: SandboxKind = "process"
    preflight_cache: Path = Field(default_factory=default_preflight_cache)
    """Sandbox probes that passed on this machine, so a run probes again only when the
    sandbox, its interpreter, torch or the machine changed (:mod:`agent.preflight`)."""
    docker_host: str | None = None
    docker_base_image: str | None = None
    """``BASE_IMAGE`` of the package images ``--sandbox docker`` builds (None: each package's
    Dockerfile default, CUDA PyTorch for Hugging Face voters)."""
    docker_python: str = "python3"
    """``PYTHON`` of the package images: the interpreter that installs and runs the labeler."""
    docker_pip_args: str = ""
    """``PIP_INSTALL_ARGS`` of the package images (``--no-index ...`` for offline builds)."""
    min_agreement: float = 1.0
    """A row is a disagreement when the winning vote share is below this (1.0 = not unanimous)."""
    min_confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    """... or when the voters' mean probability for the winning label is below this."""
    max_verified: str | None = "30%"
    """Verify at most this many rows in all, the pilot's and the held-out ones included: a
    count (``700``) or a share of the rows (``30%``); None (``--max-verified none``): no limit
    (the rounds stop at the target or when another round would not pay)."""
    target_accuracy: float | None = Field(default=0.95, gt=0.0, le=1.0)
    """Stop verifying once the estimated accuracy of the final labels reaches this (None: only
    the budget and the learning curve stop the rounds)."""
    round_rows: int | None = Field(default=None, ge=1)
    """Rows the first round verifies (each later round doubles it); None: 3% of the rows,
    within [40, 2000]."""
    heldout_share: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Share of each round drawn uniformly and held out: its labels never trained on, it
    measures the labels (the pilot's verified rows are held out too). Measured:
    BENCHMARKS.md, "Fewer held-out rows in the rounds": 5% beat 10% in both settings on both
    halves of ten samples, the interval still holding the truth in all 20 of those runs."""
    min_round_yield: float = Field(default=0.1, ge=0.0, le=1.0)
    """Stop when the rows the next round would verify for their gain are expected to fix
    fewer labels per verified row than this (the learning curve has flattened)."""
    learned_voters: bool = True
    """Add voters trained on the verified rows (a linear head over sentence embeddings and a
    TF-IDF model) when a verifier is at hand."""
    learn_vote: bool = True
    """Learn the vote's weights from the verified rows (a weighted log-linear pool, adopted
    only where it beats the plain vote in cross-validation), then relabel."""
    vote_min_examples: int = Field(default=20, ge=2)
    """Fewest verified training rows (of at least two labels) worth learning from."""
    replay_ratio: float = Field(default=1.0, ge=0)
    """Self-training: rows the labeler is surest of (confidence at least ``replay_min_confidence``),
    labeled by it, replayed per verified row when the learned voters train (never to fit the
    vote): they show the learned voters the easy part of the data verification skips."""
    replay_min_confidence: float = Field(default=0.9, ge=0.5, le=1.0)
    learning_max_rows: int = Field(default=20_000, ge=10)
    """Most verified rows, and most consensus rows to replay, one learning pass (the learned
    voters and vote, a fine-tuning stage) reads; larger sets are sampled (seeded), so
    its memory does not grow with the data."""
    finetune_stages: int = Field(default=0, ge=0)
    """LoRA fine-tuning stages among the rounds (0: only the light learned voters learn)."""
    finetune_stage_size: int = Field(default=2000, ge=1)
    """Verified rows per fine-tuning stage (the paper's beta)."""
    finetune_replay_ratio: float = Field(default=1.0, ge=0)
    """Consensus rows replayed per verified row when fine-tuning."""
    finetune_epochs: int = Field(default=3, ge=1)
    finetune_learning_rate: float = Field(default=1e-3, gt=0)
    bundle_weights: bool = True
    """Copy every Hub voter's pinned files into the package, so it labels with no network;
    False (``--no-bundle-weights``, for very large voters): reference the pinned revisions
    only, which the package's Dockerfile fetches at build time."""
    models_dir: Path | None = None
    """A folder of local model folders the offline catalog offers."""
    voters: int = 3
    """How many voters discovery keeps (the paper's best is 3)."""
    candidates: int = 6
    """How many Hub candidates the pilot tries."""
    licenses: Annotated[tuple[str, ...], NoDecode] = PERMISSIVE_LICENSES
    """Licences a discovered model may carry (Hub ids; ``unknown`` accepts undeclared ones)."""
    max_parameters: int = Field(default=600_000_000, gt=0)
    """Largest discovered model, in parameters (large encoders pass, LLM-sized models do not)."""
    pilot_rows: int = 200
    pilot_verify_rows: int = Field(default=100, ge=0)
    """A uniform sample of pilot rows verified to score candidates by accuracy (and to drop
    those no better than the majority label), the same sample whoever verifies (the LLM, or a
    ``column:NAME`` verifier, which stands for a person). They are the first held-out slice,
    count against ``max_verified`` and take at most a third of it (0: score by consensus
    only)."""

    def pilot_verify_count(self, rows: int) -> int:
        """Pilot rows to verify for a data set of ``rows`` rows: ``pilot_verify_rows``, at most
        a third of the verification budget."""
        limit = self.verification_limit(rows)
        return self.pilot_verify_rows if limit is None else min(self.pilot_verify_rows, limit // 3)

    batch_size: int = 32
    chunk_size: int = 10_000
    device: DeviceKind = "auto"
    labeler_timeout_s: float = 6 * 3600
    labeler_memory_gb: float = 16.0
    hf_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("AUTOANNOTATOR_HF_ENDPOINT", "HF_ENDPOINT")
    )
    runs_dir: Path = Path(".autoannotator/runs")
    yes: bool = False
    json_summary: bool = False

    @field_validator("labels", "models", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            return value
        twice = sorted({label for label in value if value.count(label) > 1})
        if twice:
            raise ValueError(f"each label once: {', '.join(map(repr, twice))} given twice")
        if len(value) < 2:
            raise ValueError(f"at least two labels are needed to label anything (got {value[0]!r})")
        return value

    @field_validator("licenses", mode="before")
    @classmethod
    def _license_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(str(part).strip().lower() for part in value if str(part).strip())
        return value

    @field_validator("min_agreement")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError("must be in (0, 1]")
        return value

    @field_validator("target_accuracy", mode="before")
    @classmethod
    def _target(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("none", ""):
            return None
        return value

    @field_validator("max_verified", mode="before")
    @classmethod
    def _max_verified(cls, value: object) -> object:
        if value is None:
            return None
        text = str(value).strip()
        if text.lower() in ("none", "all", ""):
            return None
        try:
            number = float(text[:-1]) if text.endswith("%") else int(text)
        except ValueError:
            raise ValueError("must be a row count (700) or a share of the rows (35%)") from None
        if number < 0 or (text.endswith("%") and number > 100):
            raise ValueError("must be a row count >= 0 or a share from 0% to 100%")
        return text

    def verification_limit(self, rows: int) -> int | None:
        """``max_verified`` as a row count for a data set of ``rows`` rows (None: no limit)."""
        if self.max_verified is None:
            return None
        if self.max_verified.endswith("%"):
            return int(float(self.max_verified[:-1]) / 100 * rows)
        return int(self.max_verified)

    @field_validator("verifier")
    @classmethod
    def _verifier(cls, value: str | None) -> str | None:
        if value is None or value in VERIFIER_KINDS:
            return value
        if value.startswith("column:") and value[len("column:") :]:
            return value
        raise ValueError("must be llm, human, column:NAME or none")

    @field_validator("voters", "candidates", "pilot_rows", "batch_size", "chunk_size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @property
    def llm_configured(self) -> bool:
        return not self.offline and (self.llm_api_key is not None or self.llm_base_url is not None)

    def resolved_verifier(self) -> str:
        if self.verifier is not None:
            return self.verifier
        return "llm" if self.llm_configured else "human"
