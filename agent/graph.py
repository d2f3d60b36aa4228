"""The agent, as a graph that reads like the design.

    START -> plan_task -> (search_models | resolve_models)
    -> run_pilot -> verify_pilot -> choose_voters -> gate_cost
    -> render_labeler -> lint_labeler -> learn_vote -> run_labeler
    run_labeler -> verify_disagreements | emit_package
    verify_disagreements -> finetune_voters | fit_heads | learn_vote | emit_package
    finetune_voters -> learn_vote;  fit_heads -> learn_vote
    emit_package -> END

``graph.py`` only wires: each node lives in ``agent/nodes/<name>.py``, each router is
``route_after_<node>`` and decides from the state's records alone, never from files.

The pilot: every candidate runs in the real labeler on a sample (``run_pilot``); when a
verifier is at hand a sample of the pilot rows is verified and kept as verdicts of the run
(``verify_pilot``, a no-op otherwise); label maps are settled, the candidates scored and
the voters chosen (``choose_voters``); the expected LLM cost is shown and, over
``--budget-usd``, asked about (``gate_cost``). A lint failure raises and stops the run (it is
a template bug). Before every labeling pass the vote's weights are learned from the rows
verified so far (``learn_vote``; the pilot's first), when enough are. A pass with no
disagreements goes straight to ``emit_package``. Then verify -> learn -> relabel: the
verified rows teach the labeler and the data is labeled again; with ``--finetune-stages
N``, N gated LoRA stages, each learning from the rows verified since the last; otherwise
the embedding voters get a few-shot head once; otherwise, after the first pass only, new
vote weights when they can be learned; else the labels are final. The graph is
checkpointed in the run folder, so an interrupted run resumes (a checkpoint written by an
earlier version of this graph is refused: :func:`agent.runs.check_resumable`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.learning import learn_blocker, should_finetune, should_fit_heads
from agent.nodes.choose_voters import choose_voters
from agent.nodes.emit_package import emit_package
from agent.nodes.finetune_voters import finetune_voters
from agent.nodes.fit_heads import fit_heads
from agent.nodes.gate_cost import gate_cost
from agent.nodes.learn_vote import learn_vote
from agent.nodes.lint_labeler import lint_labeler
from agent.nodes.plan_task import plan_task
from agent.nodes.render_labeler import render_labeler
from agent.nodes.resolve_models import resolve_models
from agent.nodes.run_labeler import run_labeler
from agent.nodes.run_pilot import run_pilot
from agent.nodes.search_models import search_models
from agent.nodes.verify_disagreements import verify_disagreements
from agent.nodes.verify_pilot import verify_pilot
from agent.state import STATE_RECORDS, RunInput, RunOutput, RunState

CHECKPOINTS = "checkpoints.sqlite"


def route_after_plan_task(
    state: RunState, runtime: Runtime[RunContext]
) -> Literal["resolve_models", "search_models"]:
    """Voters named with ``--model`` skip discovery."""
    return "resolve_models" if runtime.context.settings.models else "search_models"


def route_after_run_labeler(state: RunState) -> Literal["verify_disagreements", "emit_package"]:
    """Only disagreements need verifying."""
    return "verify_disagreements" if state.labeling.disagreements else "emit_package"


def route_after_verify_disagreements(
    state: RunState, runtime: Runtime[RunContext]
) -> Literal["finetune_voters", "fit_heads", "learn_vote", "emit_package"]:
    """Verified rows become training data: a fine-tuning stage while stages remain, else a
    head once, else (after the first pass only) new vote weights; then the labels are final.
    Decided from the counts the verifying nodes recorded (:mod:`agent.learning`)."""
    settings = runtime.context.settings
    if should_finetune(state, settings):
        return "finetune_voters"
    if not state.finetune and should_fit_heads(state, settings):
        return "fit_heads"
    if state.labeling_passes == 1 and learn_blocker(state, settings) is None:
        return "learn_vote"
    return "emit_package"


def build_graph() -> StateGraph:
    graph = StateGraph(
        RunState, context_schema=RunContext, input_schema=RunInput, output_schema=RunOutput
    )
    for node in (
        plan_task,
        search_models,
        resolve_models,
        run_pilot,
        verify_pilot,
        choose_voters,
        gate_cost,
        render_labeler,
        lint_labeler,
        run_labeler,
        verify_disagreements,
        finetune_voters,
        fit_heads,
        learn_vote,
        emit_package,
    ):
        graph.add_node(node)
    graph.add_edge(START, "plan_task")
    graph.add_conditional_edges("plan_task", route_after_plan_task)
    graph.add_edge("search_models", "run_pilot")
    graph.add_edge("resolve_models", "run_pilot")
    graph.add_edge("run_pilot", "verify_pilot")
    graph.add_edge("verify_pilot", "choose_voters")
    graph.add_edge("choose_voters", "gate_cost")
    graph.add_edge("gate_cost", "render_labeler")
    graph.add_edge("render_labeler", "lint_labeler")
    graph.add_edge("lint_labeler", "learn_vote")
    graph.add_conditional_edges("run_labeler", route_after_run_labeler)
    graph.add_conditional_edges("verify_disagreements", route_after_verify_disagreements)
    graph.add_edge("finetune_voters", "learn_vote")
    graph.add_edge("fit_heads", "learn_vote")
    graph.add_edge("learn_vote", "run_labeler")
    graph.add_edge("emit_package", END)
    return graph


def serializer() -> JsonPlusSerializer:
    """The checkpoint serialiser, allowed to restore exactly our state records."""
    allowed = [(record.__module__, record.__name__) for record in STATE_RECORDS]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def open_checkpointer(run_dir: Path) -> SqliteSaver:
    connection = sqlite3.connect(run_dir / CHECKPOINTS, check_same_thread=False)
    return SqliteSaver(connection, serde=serializer())


def compile_graph(run_dir: Path):
    return build_graph().compile(checkpointer=open_checkpointer(run_dir))
