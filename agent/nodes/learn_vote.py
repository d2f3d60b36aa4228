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

from templates.labeler.pkg.learned_vote import install_vote
from templates.labeler.pkg.tabular import TableWriter

from ..context import RunContext
from ..data import iter_rows
from ..labeler_runs import run_package
from ..packaging import package_names
from ..settings import Settings
from ..state import RunState, VoteRecord
from .finetune_voters import FIRST_STAGE_MIN
from .fit_heads import verified_labels

FOLDER = "votes"


def learn_blocker(state: RunState, settings: Settings) -> str | None:
    """Why no vote is learned now, or None when one is due."""
    if not settings.learn_vote:
        return "--no-learn-vote"
    if len(state.voters) < 2:
        return "a single voter has nothing to weigh"
    verified = verified_labels(state)
    if len(verified) < settings.vote_min_examples or len(set(verified.values())) < 2:
        return (
            f"{len(verified)} verified rows are too few (at least {settings.vote_min_examples}, "
            "of two labels or more)"
        )
    if state.votes and state.votes[-1].examples >= len(verified):
        return "no rows were verified since the last learned vote"
    return None


def relabel_follows(state: RunState, settings: Settings, verified_after: int | None = None) -> bool:
    """Whether the rows verified now will teach the labeler before another labeling pass
    (fine-tuning stages, a few-shot head, the learned vote): then verification can keep
    part of its budget for that better-informed pass. ``verified_after``: the rows verified
    in all once this pass is done, if known; a step whose minimum it misses does not count."""

    def enough(minimum: int) -> bool:
        return verified_after is None or verified_after >= minimum

    if settings.finetune_stages:
        due = len(state.finetune) < settings.finetune_stages
        return due and (bool(state.finetune) or enough(FIRST_STAGE_MIN))
    if state.labeling_passes != 1:
        return False
    heads = settings.fit_heads and not state.heads and enough(settings.head_min_examples)
    heads = heads and any(voter.kind == "embedding" for voter in state.voters)
    vote = settings.learn_vote and len(state.voters) > 1 and enough(settings.vote_min_examples)
    return heads or vote


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
    write_examples(state, verified, examples)
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


def write_examples(state: RunState, verified: dict[int, str], target: Path) -> None:
    """The verified rows' texts (from the data set) and labels."""
    column = state.plan.text_column
    rows = []
    for number, row in enumerate(iter_rows(state.dataset.path)):
        if number in verified:
            text = "" if row.get(column) is None else str(row[column])
            rows.append({"text": text, "label": verified[number]})
    with TableWriter(target, ["text", "label"]) as writer:
        writer.write(rows)
