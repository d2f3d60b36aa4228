"""The graph's state: an input shape, the working state and an output shape.

State is checkpointed after every node, so it holds file paths and small typed
records only: never data frames, models or clients. Bulky things (the pilot
sample, the labeler's output, verdicts) live as files in the run folder.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["consensus", "llm", "human", "vote", "unresolved"]
"""Where a row's final label came from (``vote``: disagreement left unverified by choice)."""


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class TaskLabel(Record):
    name: str
    """The label as it appears in the output."""
    description: str = ""
    """What the label means, for the LLM judge and the model card."""
    examples: tuple[str, ...] = ()
    """A few short texts with this label: prototypes for the embedding voter."""
    synonyms: tuple[str, ...] = ()
    """Other words for the label that an LLM's answer may use (mapped onto the label)."""


class TaskPlan(Record):
    """What to label, with which labels, from which column."""

    task: str
    """The user's request, verbatim."""
    family: str
    """Task family (sentiment, toxicity, spam, hate, topic, other); picks search terms."""
    labels: tuple[TaskLabel, ...]
    """The labels, in output order."""
    text_column: str
    """Input column holding the text."""
    search_queries: tuple[str, ...]
    """Hub search terms for voters."""
    language: str = "en"
    """Language of the texts (ISO 639-1)."""
    planner: str
    """Who made the plan: ``rules`` or ``llm:<model>``; ``+user`` when flags overrode parts."""

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)


class DatasetInfo(Record):
    """The input file, validated."""

    path: str
    format: str
    columns: tuple[str, ...]
    rows: int
    sha256: str
    size: int | None = None
    """Bytes, as inspected (None in a run checkpointed before sizes were recorded)."""


class Candidate(Record):
    """A model that may become a voter."""

    name: str
    """Voter identifier (output columns)."""
    ref: str
    """As the user or the Hub named it."""
    origin: Literal["local", "hub", "specialist", "learned"]
    kind: str = "hf-sequence-classifier"
    path: str
    """Local folder with the model's files ("" for specialists that ship in a package)."""
    revision: str
    """Hub commit sha or content hash of the local files."""
    model_labels: tuple[str, ...]
    """The model's labels in ``id2label`` order."""
    label_map: dict[str, str]
    """Model label -> task label or ``ignore``."""
    license: str = "unknown"
    parameters: int | None = None
    downloads: int | None = None
    files: dict[str, str] = Field(default_factory=dict)
    """Relative file -> sha256 of the files the labeler needs."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Adapter settings (prototype phrasings, neutral band...)."""
    requirements: tuple[str, ...] = ()
    """PyPI distributions the labeler needs for this voter."""
    label_map_note: str = ""
    """How the label map was decided when names did not say (the LLM, a recorded mapping)."""
    precision: str | None = None
    """CPU precision the pilot decided for a transformer voter (``int8`` or ``fp32``)."""


class Rejection(Record):
    """A model that was considered and refused, and why."""

    ref: str
    reason: str


class VoterScore(Record):
    """How one candidate did on the pilot."""

    name: str
    consensus_agreement: float
    """Share of pilot rows where it agreed with the other voters' majority."""
    selected: bool
    note: str
    verified_accuracy: float | None = None
    """Share of the verified pilot rows it labeled right (None: no verified rows)."""


class PilotRun(Record):
    """The pilot: the labeler, rendered with every candidate, run on a sample of the data."""

    rows: int
    """Rows in the sample (reproducible: seeded by the data's content)."""
    input_path: str
    """The sample's texts, in pilot order."""
    output_path: str
    """The pilot labeler's output: every candidate's label and probability on each row."""
    precisions: dict[str, str] = Field(default_factory=dict)
    """CPU precision the pilot measured per transformer candidate (``int8`` where its int8
    labels agreed with fp32 on the pilot rows, else ``fp32``; ``fp32`` on a CUDA pilot)."""
    precision_notes: dict[str, str] = Field(default_factory=dict)
    """Why, per candidate: the labeler's own reason (the measured agreement)."""


class PilotVerification(Record):
    """Pilot rows put to a verifier; the verified ones are kept as verdicts of the run."""

    verifier: str
    """``llm:<model>`` or ``column:NAME``."""
    asked: int
    """Pilot rows put to the verifier."""
    verified: int
    """Pilot rows with a verified label (each one kept in the run's ``verdicts.jsonl``)."""
    verified_labels: int
    """Distinct labels among them."""
    verdicts_path: str
    """JSON Lines of the pilot verdicts (dataset row, pilot row, label, source, reason)."""


class PilotReport(Record):
    rows: int
    """Pilot sample size."""
    scores: tuple[VoterScore, ...]
    disagreement_rate: float
    """Share of pilot rows the selected voters disagree on (expected escalation rate)."""
    output_path: str
    basis: Literal["consensus", "verified"] = "consensus"
    """What candidates were scored against: each other, or verified pilot rows."""
    verifier: str = ""
    """Who verified pilot rows (``llm:<model>``, ``column:NAME``); "" when none did."""
    verified_rows: int = 0
    """Pilot rows with a verified label."""
    basis_note: str = ""
    """How the candidates were scored and chosen, in one sentence (run report, model card)."""
    verdicts_path: str | None = None
    """JSON Lines of the pilot verdicts, when pilot rows were verified."""
    votes_path: str = ""
    """JSON of the chosen voters' pilot votes, label maps settled (the cost estimate's sample)."""


class LabelingResult(Record):
    """What the full labeler run produced."""

    output_path: str
    """The labeler's own output (every row, every voter's vote)."""
    rows: int
    disagreements: int
    seconds: float
    disagreements_path: str
    """JSON Lines of the rows needing verification: row number, text, votes."""
    mean_agreement: float = 0.0
    """Mean share of the voters that chose each row's winning label."""


class VerificationResult(Record):
    verifier: str
    """``llm``, ``human``, ``column:NAME`` or ``none``."""
    verdicts_path: str
    """JSON Lines: row, label, source, reason."""
    verified: int
    """Rows an LLM or a person verified so far, the pilot's included."""
    unresolved: int
    verified_labels: int = 0
    """Distinct labels among the verified rows (the learning steps need two or more)."""
    review_path: str | None = None
    """CSV for a human reviewer, when rows await review."""
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class LearnedVoterRecord(Record):
    """A learned voter's version, trained on the verified rows (held-out rows never)."""

    voter: str
    kind: str
    version: str
    examples: int
    """Verified rows it was trained on."""
    training_accuracy: float
    cross_validated_accuracy: float
    """Accuracy of its out-of-fold predictions on those rows (what the vote was fitted on)."""
    before_pass: int
    """The labeling pass that used it first."""


class RoundRecord(Record):
    """One assessment after a labeling pass: how good the labels are, and what comes next
    (a round of verification, or the reason the rounds stop)."""

    round: int
    """The round this assessment opens (1-based); the last one opens none."""
    labeling_pass: int
    verified: int
    """Rows verified so far, the pilot's and the held-out ones included."""
    heldout: int
    """Held-out rows so far (their labels never trained on)."""
    unverified: int
    estimate: dict[str, Any] | None = None
    """:meth:`agent.estimate.Estimate.as_dict` of the labels now, or None without
    held-out rows; ``basis`` says what "right" means (the verifier's answers)."""
    chosen: int = 0
    """Rows this round verifies (held-out ones included)."""
    chosen_heldout: int = 0
    expected_yield: float | None = None
    """Share of the gain rows the vote expects to be wrong."""
    cost_usd: float = 0.0
    """LLM verification spent so far."""
    seconds: float = 0.0
    """Seconds since the run started."""
    stop: str | None = None
    """Why the rounds stop here (``target``, ``budget``, ``flat``, ``exhausted``,
    ``no-verifier``), or None when a round follows."""
    stop_note: str = ""
    records_path: str | None = None
    """JSON Lines of the rows this round verifies (the disagreement records' shape)."""


class VoteRecord(Record):
    """Vote weights learned from verified rows (the learned vote)."""

    version: str
    examples: int
    """Verified rows it was fitted on."""
    weights: dict[str, float]
    """Voter -> weight."""
    cross_validated_accuracy: float
    plain_vote_accuracy: float
    """The plain majority vote's accuracy on the same rows."""
    adopted: bool
    """Installed (it beat the plain vote in cross-validation); else the plain vote stays."""
    before_pass: int
    """The labeling pass that used it first."""


class VoterTuning(Record):
    """One voter in one fine-tuning stage: its held-out accuracy, and whether it was kept."""

    voter: str
    version: str | None
    """The promoted adapter version, or None when the stage was rolled back."""
    holdout_before: float
    holdout_after: float
    seconds: float
    samples_per_s: float


class FinetuneStage(Record):
    """One stage of continual learning: train on newly verified rows, gate, relabel."""

    stage: int
    verified_rows: int
    """Newly verified rows trained on (the frozen holdout excluded)."""
    verified_in_all: int = 0
    """Rows verified when the stage ran: this stage and the earlier ones trained on them or
    held them out, so only rows verified after it are new to the next stage."""
    replay_rows: int
    holdout_rows: int
    voters: tuple[VoterTuning, ...]
    escalated_before: int
    """Disagreements of the labeling pass the stage learned from."""
    agreement_before: float
    escalated_after: int | None = None
    """Disagreements after relabeling with the promoted adapters (set by the relabel)."""
    agreement_after: float | None = None


class RunInput(BaseModel):
    """What a run starts from."""

    task: str
    """The user's request, e.g. "label tweets for toxicity"."""
    data_path: str
    """Input table (CSV, TSV, JSON Lines or Parquet)."""
    dataset: DatasetInfo
    """The input, validated before the run started."""
    run_id: str
    run_dir: str
    """Folder holding every file of this run, including the checkpoints."""
    started_at: float = 0.0
    """When the run was created (seconds since the epoch): the rounds report time from it."""


class RunState(RunInput):
    """Everything the nodes share while a run goes on."""

    plan: TaskPlan | None = None
    """The task plan."""
    candidates: tuple[Candidate, ...] = ()
    """Models that passed the filters and await the pilot."""
    rejections: tuple[Rejection, ...] = ()
    """Models refused, with reasons (run report and model card)."""
    pilot_run: PilotRun | None = None
    """The pilot labeler's run over every candidate."""
    pilot_verification: PilotVerification | None = None
    """Pilot rows verified, when a verifier was at hand."""
    voters: tuple[Candidate, ...] = ()
    """The chosen voters."""
    pilot: PilotReport | None = None
    """Pilot scores and the expected disagreement rate."""
    staging_dir: str | None = None
    """Rendered, not yet linted labeler."""
    package_dir: str | None = None
    """Lint-clean labeler package in the run folder."""
    labeling: LabelingResult | None = None
    """Outcome of the latest full labeler run."""
    labeling_passes: int = 0
    """Full labeler runs so far (one per round, plus the first)."""
    verification: VerificationResult | None = None
    """Outcome of verifying the disagreements."""
    learned: tuple[LearnedVoterRecord, ...] = ()
    """Learned voters' versions, in the order they were trained."""
    rounds: tuple[RoundRecord, ...] = ()
    """The assessment after each labeling pass, and each round's choice."""
    finetune: tuple[FinetuneStage, ...] = ()
    """LoRA fine-tuning stages run so far (``--finetune-stages``)."""
    votes: tuple[VoteRecord, ...] = ()
    """Vote weights learned from verified rows, in the order they were fitted."""
    target_accuracy: float | None = None
    """``--target-accuracy`` of the run (for the summary: met or not)."""
    output_path: str | None = None
    """Final labeled data."""
    package_path: str | None = None
    """Emitted labeler package."""


class RunOutput(BaseModel):
    """What a finished run returns."""

    plan: TaskPlan | None = None
    voters: tuple[Candidate, ...] = ()
    labeling: LabelingResult | None = None
    verification: VerificationResult | None = None
    learned: tuple[LearnedVoterRecord, ...] = ()
    rounds: tuple[RoundRecord, ...] = ()
    target_accuracy: float | None = None
    finetune: tuple[FinetuneStage, ...] = ()
    votes: tuple[VoteRecord, ...] = ()
    output_path: str | None = None
    package_path: str | None = None


STATE_RECORDS = (
    TaskLabel,
    TaskPlan,
    DatasetInfo,
    Candidate,
    Rejection,
    VoterScore,
    PilotRun,
    PilotVerification,
    PilotReport,
    LabelingResult,
    VerificationResult,
    RunInput,
    RunState,
    RunOutput,
    LearnedVoterRecord,
    RoundRecord,
    VoterTuning,
    FinetuneStage,
    VoteRecord,
)
"""Types the checkpointer may deserialise (its msgpack allow-list)."""
