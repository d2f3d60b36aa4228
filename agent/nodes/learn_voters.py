"""learn_voters: train the learned voters and the vote on the rows verified so far.

Before every labeling pass, when rows were verified since the last training, the package's
own ``learn`` command runs in the sandbox on the verified rows (the held-out rows never:
they measure the labels): it fits each learned voter (a linear head over sentence
embeddings, a TF-IDF model), new versions stored without pickle, and fits the learned vote
(a weighted log-linear pool) on the frozen voters' probabilities and the learned voters'
out-of-fold ones, cross-validated against the plain vote. The agent installs the new
versions in the package, and the vote only where it beats the plain vote, so the next
pass labels with them. The embeddings come from the labeling passes' feature cache, so a
round retrains light models only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import cell_text, iter_rows
from agent.labeler_runtime import (
    LABEL,
    TableWriter,
    install_learned,
    output_text_column,
)
from agent.learning import (
    EXAMPLE_LABEL,
    EXAMPLE_TEXT,
    Reservoir,
    example_column_arguments,
    learn_blocker,
)
from agent.packaging.build import package_names
from agent.packaging.runner import run_package
from agent.rounds.heldout import replay_exclusions, replay_rows
from agent.state import LearnedVoterRecord, RunState, VoteRecord
from agent.verification.store import VERDICTS_FILE, read_heldout, training_labels
from agent.verification.stream import latest_by_row

FOLDER = "learned"
FEATURES = Path("labeled") / "features"
"""The labeling passes' feature cache, in the run folder."""


def learn_voters(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    training = training_labels(state)
    blocker = learn_blocker(state, settings, len(training), len(set(training.values())))
    if blocker is not None:
        if state.labeling_passes:
            context.reporter.info(f"learned voters and vote: not retrained ({blocker})")
        return {}
    next_pass = state.labeling_passes + 1
    context.reporter.stage(
        "learn_voters", f"{len(training)} verified rows, before pass {next_pass}"
    )
    folder = Path(state.run_dir) / FOLDER / f"pass-{next_pass}"
    shutil.rmtree(folder, ignore_errors=True)
    examples = folder / "examples.jsonl"
    write_examples(state, training, examples, settings.learning_max_rows)
    replay = folder / "replay.jsonl"
    replayed = write_replay(state, replay, int(settings.replay_ratio * len(training)), settings)
    module = package_names(state.plan)[1]
    package_dir = Path(state.package_dir)
    output = folder / "fitted"
    cache = Path(state.run_dir) / FEATURES
    arguments = [f"{module}.learn", str(examples), "--output", str(output)]
    arguments += example_column_arguments()
    arguments += ["--device", settings.device, "--batch-size", str(settings.batch_size)]
    arguments += ["--seed", "0"] + (["--cache", str(cache)] if cache.is_dir() else [])
    arguments += ["--replay", str(replay)] if replayed else []
    inputs = [examples] + ([cache] if cache.is_dir() else []) + ([replay] if replayed else [])
    events = run_package(context.sandbox, package_dir, arguments, folder, inputs, settings)
    event = next(e for e in events if e.get("event") == "learned")
    record = event["vote"]
    adopted = settings.learn_vote and bool(record["adopted"])
    install_learned(output, package_dir / module, vote=adopted)
    learned = tuple(_learned_record(entry, next_pass) for entry in event["voters"])
    for entry in learned:
        context.reporter.info(
            f"{entry.voter}: {entry.version} trained on {entry.examples} verified rows"
            + (f" and {replayed} of the labeler's surest" if replayed else "")
            + f" ({entry.cross_validated_accuracy:.1%} out of fold)"
        )
    return {
        "learned": state.learned + learned,
        "votes": (*state.votes, _vote_record(record, len(training), adopted, next_pass, context)),
    }


def _learned_record(entry: dict, next_pass: int) -> LearnedVoterRecord:
    return LearnedVoterRecord(
        voter=entry["voter"],
        kind=entry["kind"],
        version=entry["version"],
        examples=entry["examples"],
        training_accuracy=entry["training_accuracy"],
        cross_validated_accuracy=entry["cross_validated_accuracy"],
        before_pass=next_pass,
    )


def _vote_record(record: dict, examples: int, adopted: bool, next_pass: int, context) -> VoteRecord:
    weights = {entry["voter"]: entry["weight"] for entry in record["voters"]}
    comparison = (
        f"{record['cross_validated_accuracy']:.1%} in cross-validation against "
        f"{record['plain_vote_accuracy']:.1%} for the plain vote"
    )
    if adopted:
        shown = ", ".join(f"{name} {weight:.2f}" for name, weight in weights.items())
        context.reporter.info(f"learned vote {record['version']}: {shown}; {comparison}")
    else:
        context.reporter.info(f"plain vote kept: the learned one scored {comparison}")
    return VoteRecord(
        version=record["version"],
        examples=examples,
        weights=weights,
        cross_validated_accuracy=record["cross_validated_accuracy"],
        plain_vote_accuracy=record["plain_vote_accuracy"],
        adopted=adopted,
        before_pass=next_pass,
    )


def write_examples(state: RunState, verified: dict[int, str], target: Path, max_rows: int) -> None:
    """The training rows' texts (from the data set) and labels; at most ``max_rows`` of them
    (a seeded sample of a larger set)."""
    column = state.plan.text_column
    rows: Reservoir[dict] = Reservoir(max_rows, f"{state.dataset.sha256}-learn")
    for number, row in enumerate(iter_rows(state.dataset.path)):
        if number in verified:
            text = cell_text(row.get(column))
            rows.add({EXAMPLE_TEXT: text, EXAMPLE_LABEL: verified[number]})
    target.parent.mkdir(parents=True, exist_ok=True)
    with TableWriter(target, [EXAMPLE_TEXT, EXAMPLE_LABEL]) as writer:
        writer.write(rows.items)


def write_replay(state: RunState, target: Path, count: int, settings) -> int:
    """The ``count`` rows of the latest pass its vote is surest of (at least
    ``--replay-min-confidence``), with the vote's label: self-training rows. Rows verified or
    chosen for it are left out, but not the unmarked held-out rows: they stand for the
    unverified rows and are treated as those are (:mod:`agent.rounds.heldout`)."""
    if state.labeling is None or count <= 0:
        return 0
    verdicts = latest_by_row(Path(state.run_dir) / VERDICTS_FILE)
    spent = {verdict["row"] for verdict in verdicts if verdict["source"] != "vote"}
    exclude = replay_exclusions(spent, read_heldout(Path(state.run_dir)))
    text_column = output_text_column(state)
    surest = replay_rows(
        iter_rows(state.labeling.output_path), exclude, count, settings.replay_min_confidence
    )
    rows = [
        {EXAMPLE_TEXT: cell_text(row.get(text_column)), EXAMPLE_LABEL: row[LABEL]}
        for _, row in surest
    ]
    if rows:
        with TableWriter(target, [EXAMPLE_TEXT, EXAMPLE_LABEL]) as writer:
            writer.write(rows)
    return len(rows)
