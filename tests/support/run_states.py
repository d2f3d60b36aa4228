"""Run states for node tests: a small gold-labelled data set, a run folder, voters or candidates.

A node test starts from :func:`gold_run_state` (the data written as ``text,gold``, so the column
verifier can settle any row) and adds the fields its node reads; :func:`hub_voter` builds the
Hub candidates those fields name; :func:`run_pilot_nodes` runs the pilot's nodes on a state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

from agent.context import RunContext
from agent.nodes.choose_voters import choose_voters
from agent.nodes.gate_cost import gate_cost
from agent.nodes.run_pilot import run_pilot
from agent.nodes.verify_pilot import verify_pilot
from agent.state import Candidate, DatasetInfo, RunState, TaskPlan
from tests.support.datasets import write_csv

IDENTITY_MAP = {"non-toxic": "non-toxic", "toxic": "toxic"}


def hub_voter(
    name: str, label_map: Mapping[str, str] = IDENTITY_MAP, downloads: int | None = None
) -> Candidate:
    """A Hub model ``org/<name>`` at a pinned revision whose labels map by ``label_map``."""
    return Candidate(
        name=name,
        ref=f"org/{name}",
        origin="hub",
        path="",
        revision="0" * 40,
        model_labels=tuple(label_map),
        label_map=dict(label_map),
        downloads=downloads,
    )


def gold_run_state(
    folder: Path,
    plan: TaskPlan,
    texts: Sequence[str],
    gold: Sequence[str],
    *,
    data_name: str = "data.csv",
    sha256: str = "d" * 64,
    **fields: object,
) -> RunState:
    """A run of ``plan`` over ``texts`` (with their ``gold`` column) in ``folder``; ``fields``
    (voters, candidates...) are the state the node under test starts from."""
    folder.mkdir(parents=True, exist_ok=True)
    data = write_csv(folder / data_name, ["text", "gold"], zip(texts, gold, strict=True))
    run_dir = folder / "run"
    run_dir.mkdir()
    dataset = DatasetInfo(
        path=str(data), format="csv", columns=("text", "gold"), rows=len(texts), sha256=sha256
    )
    return RunState(
        task=plan.task,
        data_path=str(data),
        dataset=dataset,
        run_id="run",
        run_dir=str(run_dir),
        plan=plan,
        **fields,
    )


def run_pilot_nodes(state: RunState, context: RunContext) -> dict:
    """The pilot's nodes in the graph's order; every update they made, merged."""
    update: dict = {}
    for node in (run_pilot, verify_pilot, choose_voters, gate_cost):
        step = node(state, SimpleNamespace(context=context))
        state = state.model_copy(update=step)
        update |= step
    return update


def verify_disputed(state: RunState, runtime) -> dict:
    """``verify_round`` on the rows of ``state.labeling.disagreements_path``, as a round that
    chose exactly those rows (the records have the same shape)."""
    from agent.nodes.verify_round import verify_round
    from agent.state import RoundRecord

    chosen = RoundRecord(
        round=len(state.rounds) + 1,
        labeling_pass=state.labeling_passes,
        verified=0,
        heldout=0,
        unverified=state.dataset.rows,
        chosen=state.labeling.disagreements,
        records_path=state.labeling.disagreements_path,
    )
    return verify_round(state.model_copy(update={"rounds": (*state.rounds, chosen)}), runtime)
