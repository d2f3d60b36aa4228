"""finetune_voters: one stage of continual learning (``--finetune-stages N``).

The rows an LLM or a person verified since the last stage are where the voters
were weak: they become LoRA training data, with a replay of consensus rows. The
package's own ``finetune`` module trains in the sandbox; a frozen holdout of
verified rows (carved at the first stage, kept in the run folder) gates each
voter, so an adapter that makes a voter worse is rolled back. Promoted adapters
are installed in the package as new versions and the graph relabels the data.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import cell_text, iter_rows
from agent.labeler_runtime import (
    LABEL,
    NEEDS_REVIEW,
    TableWriter,
    install_adapters,
    output_text_column,
    read_flag,
)
from agent.learning import EXAMPLE_LABEL, EXAMPLE_TEXT, Reservoir, example_column_arguments
from agent.packaging.build import package_names
from agent.packaging.runner import run_package
from agent.rounds.heldout import replay_exclusions
from agent.state import FinetuneStage, RunState, VoterTuning
from agent.verification.store import read_heldout, training_labels, verified_labels

FOLDER = "finetune"
HOLDOUT = "holdout.jsonl"


def finetune_voters(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    run_dir = Path(state.run_dir)
    number = len(state.finetune) + 1
    verified = training_labels(state)
    done = trained_rows(run_dir)
    fresh = {row: label for row, label in verified.items() if row not in done}
    context.reporter.stage("finetune_voters", f"stage {number}: {len(fresh)} newly verified rows")
    folder = run_dir / FOLDER / f"stage-{number}"
    shutil.rmtree(folder, ignore_errors=True)
    examples = folder / "examples.jsonl"
    replayed = write_examples(
        state, fresh, examples, settings.finetune_replay_ratio, settings.learning_max_rows
    )
    holdout = run_dir / FOLDER / HOLDOUT
    output = folder / "adapters"
    module = package_names(state.plan)[1]
    package_dir = Path(state.package_dir)
    arguments = [f"{module}.finetune", str(examples), "--output", str(output)]
    arguments += example_column_arguments()
    arguments += ["--holdout", str(holdout if holdout.exists() else folder / HOLDOUT)]
    arguments += ["--stage-size", str(settings.finetune_stage_size)]
    arguments += ["--replay-ratio", str(settings.finetune_replay_ratio)]
    arguments += ["--epochs", str(settings.finetune_epochs), "--device", settings.device]
    arguments += ["--learning-rate", repr(settings.finetune_learning_rate)]
    arguments += ["--seed", str(number)]
    mounts = [examples] + ([holdout] if holdout.exists() else [])

    def on_event(event: dict) -> None:
        if event.get("event") == "finetune-stage":
            outcome = f"promoted {event['version']}" if event["promoted"] else "rolled back"
            context.reporter.info(
                f"{event['voter']}: held-out accuracy {event['holdout_accuracy_before']:.1%} -> "
                f"{event['holdout_accuracy_after']:.1%} on {event['holdout_rows']} rows; {outcome}"
            )

    events = run_package(
        context.sandbox, package_dir, arguments, folder, mounts, settings, on_event
    )
    if not holdout.exists():
        shutil.copyfile(folder / HOLDOUT, holdout)
    result = next(e for e in events if e.get("event") == "finetune")
    install_adapters(output, result["promoted"], package_dir / module)
    voters = tuple(_tuning(state, result["stages"]))
    stage = FinetuneStage(
        stage=number,
        verified_rows=_trained_rows(result["stages"]),
        verified_in_all=len(verified),
        replay_rows=replayed,
        holdout_rows=max((s["holdout_rows"] for s in result["stages"]), default=0),
        voters=voters,
        escalated_before=state.labeling.disagreements,
        agreement_before=state.labeling.mean_agreement,
    )
    return {"finetune": state.finetune + (stage,)}


def trained_rows(run_dir: Path) -> set[int]:
    """Verified rows earlier stages trained on or held out."""
    rows: set[int] = set()
    for examples in sorted((run_dir / FOLDER).glob("stage-*/examples.jsonl")):
        rows.update(int(row["row"]) for row in iter_rows(examples) if row["source"] == "verified")
    return rows


def _trained_rows(stages: list[dict]) -> int:
    """Verified rows the package trained on (the held-out ones excluded), per voter."""
    first = stages[0]["voter"] if stages else None
    return sum(s["verified_rows"] for s in stages if s["voter"] == first)


def _tuning(state: RunState, stages: list[dict]):
    """Per voter: the last promoted version of this call, held-out accuracy first to last."""
    for voter in state.voters:
        entries = [s for s in stages if s["voter"] == voter.name]
        if not entries:
            continue
        promoted = [s["version"] for s in entries if s["promoted"]]
        yield VoterTuning(
            voter=voter.name,
            version=promoted[-1] if promoted else None,
            holdout_before=entries[0]["holdout_accuracy_before"],
            holdout_after=max(
                (s["holdout_accuracy_after"] for s in entries if s["promoted"]),
                default=entries[0]["holdout_accuracy_before"],
            ),
            seconds=round(sum(s["seconds"] for s in entries), 3),
            samples_per_s=round(
                sum(s["samples_per_s"] * s["seconds"] for s in entries)
                / max(sum(s["seconds"] for s in entries), 1e-9),
                2,
            ),
        )


def write_examples(
    state: RunState, fresh: dict[int, str], target: Path, ratio: float, max_rows: int
) -> int:
    """Newly verified rows, then up to ``ratio`` consensus rows per verified row; the replay count.
    At most ``max_rows`` of each kind are read (a seeded sample of larger sets).

    Consensus rows are the rows nobody verified that the voters agreed on in the
    latest labeling pass; the unmarked held-out rows count as unverified there (they stand
    for those rows, :mod:`agent.rounds.heldout`), with the labeler's label.
    """
    text_column = output_text_column(state)
    verified_rows = replay_exclusions(verified_labels(state), read_heldout(Path(state.run_dir)))
    seed = f"{state.dataset.sha256}-{len(state.finetune)}"
    fresh_rows: Reservoir[dict] = Reservoir(max_rows, f"{seed}-verified")
    replayable: Reservoir[dict] = Reservoir(max_rows, f"{seed}-consensus")
    for number, row in enumerate(iter_rows(state.labeling.output_path)):
        text = cell_text(row.get(text_column))
        if number in fresh:
            fresh_rows.add(
                {
                    "row": number,
                    EXAMPLE_TEXT: text,
                    EXAMPLE_LABEL: fresh[number],
                    "source": "verified",
                }
            )
        elif number not in verified_rows and not read_flag(row[NEEDS_REVIEW]):
            replayable.add(
                {
                    "row": number,
                    EXAMPLE_TEXT: text,
                    EXAMPLE_LABEL: row[LABEL],
                    "source": "consensus",
                }
            )
    rows, consensus = fresh_rows.items, replayable.items
    random.Random(f"{state.dataset.sha256}-{len(state.finetune)}").shuffle(consensus)
    replay = consensus[: int(ratio * len(rows))]
    target.parent.mkdir(parents=True, exist_ok=True)
    with TableWriter(target, ["row", EXAMPLE_TEXT, EXAMPLE_LABEL, "source"]) as writer:
        writer.write(rows + replay)
    return len(replay)
