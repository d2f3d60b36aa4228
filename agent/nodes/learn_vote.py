"""learn_vote: weigh the voters by how often they were right on the verified rows.

A plain majority lets three weak voters outvote one good one. Once rows are
verified (the pilot's, then the disputed ones), the package's own
``learned_vote`` module fits, in the sandbox, a weight per voter and a bias per
label (a log-linear pool) on them, and cross-validates it against the plain
vote on the same rows; only a learned vote at least as accurate is installed
in the package, and the next labeling pass uses it. Its confidence is a
calibrated probability, which makes ``--min-confidence`` and the least
confident first order of ``--max-verified`` meaningful.

The node runs before every labeling pass and does nothing when no new verified
rows (or too few) exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows
from agent.labeler_runtime import TableWriter, install_vote
from agent.learning import Reservoir, learn_blocker
from agent.packaging.build import package_names
from agent.packaging.runner import run_package
from agent.state import RunState, VoteRecord
from agent.verification.store import verified_labels

FOLDER = "votes"


def learn_vote(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    settings = context.settings
    blocker = learn_blocker(state, settings)
    if blocker is not None:
        if settings.learn_vote and state.labeling_passes:
            context.reporter.info(f"learned vote: not refitted ({blocker})")
        return {}
    verified = verified_labels(state)
    next_pass = state.labeling_passes + 1
    context.reporter.stage("learn_vote", f"{len(verified)} verified rows, before pass {next_pass}")
    folder = Path(state.run_dir) / FOLDER / f"pass-{next_pass}"
    shutil.rmtree(folder, ignore_errors=True)
    examples = folder / "examples.jsonl"
    write_examples(state, verified, examples, settings.learning_max_rows)
    module = package_names(state.plan)[1]
    package_dir = Path(state.package_dir)
    output = folder / "fitted"
    arguments = [f"{module}.learned_vote", str(examples), "--output", str(output)]
    arguments += ["--text-column", "text", "--device", settings.device]
    events = run_package(context.sandbox, package_dir, arguments, folder, [examples], settings)
    record = next(e["vote"] for e in events if e.get("event") == "vote")
    weights = {entry["voter"]: entry["weight"] for entry in record["voters"]}
    shown = ", ".join(f"{name} {weight:.2f}" for name, weight in weights.items())
    comparison = (
        f"{record['cross_validated_accuracy']:.1%} in cross-validation against "
        f"{record['plain_vote_accuracy']:.1%} for the plain vote"
    )
    if record["adopted"]:
        install_vote(output, record["version"], package_dir / module)
        context.reporter.info(f"learned vote {record['version']}: {shown}; {comparison}")
    else:
        context.reporter.info(f"plain vote kept: the learned one scored {comparison}")
    vote = VoteRecord(
        version=record["version"],
        examples=len(verified),
        weights=weights,
        cross_validated_accuracy=record["cross_validated_accuracy"],
        plain_vote_accuracy=record["plain_vote_accuracy"],
        adopted=record["adopted"],
        before_pass=next_pass,
    )
    return {"votes": (*state.votes, vote)}


def write_examples(state: RunState, verified: dict[int, str], target: Path, max_rows: int) -> None:
    """The verified rows' texts (from the data set) and labels; at most ``max_rows`` of them
    (a seeded sample of a larger set)."""
    column = state.plan.text_column
    rows: Reservoir[dict] = Reservoir(max_rows, f"{state.dataset.sha256}-vote")
    for number, row in enumerate(iter_rows(state.dataset.path)):
        if number in verified:
            text = "" if row.get(column) is None else str(row[column])
            rows.add({"text": text, "label": verified[number]})
    with TableWriter(target, ["text", "label"]) as writer:
        writer.write(rows.items)
