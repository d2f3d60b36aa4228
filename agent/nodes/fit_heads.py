"""fit_heads: learn from the verified rows, then relabel (the paper's continual learning).

The rows an LLM or a person verified are exactly where the voters were weak.
Each embedding voter gets a few-shot head fitted, in the sandbox by the
package's own ``heads`` module, on those rows plus a replay of consensus rows
(so it does not forget what the voters agreed on). The head is installed in
the package as a new version, and the graph relabels the data with it.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows
from agent.labeler_runtime import (
    LABEL,
    NEEDS_REVIEW,
    TableWriter,
    head_folder,
    output_text_column,
    read_flag,
    versions,
)
from agent.learning import Reservoir
from agent.packaging.build import package_names
from agent.packaging.runner import run_package
from agent.state import HeadRecord, RunState
from agent.verification.store import verified_labels


def fit_heads(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    verified = verified_labels(state)
    context.reporter.stage("fit_heads", f"{len(verified)} verified rows")
    folder = Path(state.run_dir) / "heads"
    examples = folder / "examples.jsonl"
    count = write_examples(
        state, verified, examples, settings.replay_ratio, settings.learning_max_rows
    )
    module = package_names(state.plan)[1]
    package_dir = Path(state.package_dir)
    output = folder / "fitted"
    shutil.rmtree(output, ignore_errors=True)
    arguments = [f"{module}.heads", str(examples), "--output", str(output)]
    arguments += ["--text-column", "text", "--weight-column", "weight", "--device", settings.device]
    events = run_package(context.sandbox, package_dir, arguments, folder, [examples], settings)
    records = next(e["heads"] for e in events if e.get("event") == "heads")
    heads = []
    for record in records:
        voter, version = record["voter"], record["version"]
        versions.install(
            output / voter / version, head_folder(package_dir / module, voter), version
        )
        heads.append(
            HeadRecord(
                voter=record["voter"],
                version=record["version"],
                examples=count,
                training_accuracy=record["training_accuracy"],
            )
        )
        context.reporter.info(
            f"{record['voter']}: head {record['version']} fitted on {count} rows "
            f"(training accuracy {record['training_accuracy']:.1%})"
        )
    return {"heads": tuple(heads)}


def write_examples(
    state: RunState,
    verified: dict[int, str],
    target: Path,
    ratio: float,
    max_rows: int,
) -> int:
    """Verified rows, plus up to ``ratio`` consensus rows per verified row, as training data;
    at most ``max_rows`` of each kind are read (a seeded sample of larger sets)."""
    text_column = output_text_column(state)
    verified_rows: Reservoir[dict] = Reservoir(max_rows, f"{state.dataset.sha256}-heads-verified")
    replayable: Reservoir[dict] = Reservoir(max_rows, f"{state.dataset.sha256}-heads-consensus")
    for number, row in enumerate(iter_rows(state.labeling.output_path)):
        text = "" if row.get(text_column) is None else str(row[text_column])
        if number in verified:
            verified_rows.add({"text": text, "label": verified[number], "weight": 1.0})
        elif not read_flag(row[NEEDS_REVIEW]):
            replayable.add({"text": text, "label": row[LABEL], "weight": 1.0})
    rows, consensus = verified_rows.items, replayable.items
    budget = int(ratio * len(rows))
    random.Random(state.dataset.sha256).shuffle(consensus)
    rows += consensus[:budget]
    with TableWriter(target, ["text", "label", "weight"]) as writer:
        writer.write(rows)
    return len(rows)
