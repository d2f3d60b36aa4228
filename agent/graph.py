"""The agent, as a graph that reads like the design.

    START -> plan_task -> (search_models | resolve_models)
    -> run_pilot -> verify_pilot -> choose_voters -> gate_cost
    -> render_labeler -> lint_labeler -> learn_voters -> run_labeler -> plan_round
    plan_round -> verify_round | emit_package
    verify_round -> finetune_voters | learn_voters;  finetune_voters -> learn_voters
    emit_package -> END

``graph.py`` only wires: each node lives in ``agent/nodes/<name>.py``, each router is
``route_after_<node>`` and decides from the state's records alone, never from files.

The pilot: every candidate runs in the real labeler on a sample (``run_pilot``); when a
verifier is at hand a uniform sample of the pilot rows is verified (``verify_pilot``, a
no-op otherwise): it scores the candidates and becomes the first held-out slice; label maps
are settled, voters no better than the majority label dropped, the voters chosen and the
learned voters added (``choose_voters``); the expected LLM cost is shown and, over
``--budget-usd``, asked about (``gate_cost``). A lint failure raises and stops the run (it is
a template bug). Then the rounds of active learning: each labeling pass (``run_labeler``,
from cached features after the first) is measured on the held-out rows and either a round
of rows is chosen by expected gain, plus a held-out slice (``plan_round``), verified
(``verify_round``) and learned from (with ``--finetune-stages N``, N gated LoRA stages
first; then the learned voters and vote, ``learn_voters``) before the next pass, or the
rounds stop (target reached, budget spent, learning curve flat) and the labels are
emitted. The graph is checkpointed in the run folder, so an interrupted run resumes (a
checkpoint written by an earlier version of this graph is refused:
:func:`agent.runs.check_resumable`).
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
from agent.learning import should_finetune
from agent.nodes.choose_voters import choose_voters
from agent.nodes.emit_package import emit_package
from agent.nodes.finetune_voters import finetune_voters
from agent.nodes.gate_cost import gate_cost
from agent.nodes.learn_voters import learn_voters
from agent.nodes.lint_labeler import lint_labeler
from agent.nodes.plan_round import plan_round
from agent.nodes.plan_task import plan_task
from agent.nodes.render_labeler import render_labeler
from agent.nodes.resolve_models import resolve_models
from agent.nodes.run_labeler import run_labeler
from agent.nodes.run_pilot import run_pilot
from agent.nodes.search_models import search_models
from agent.nodes.verify_pilot import verify_pilot
from agent.nodes.verify_round import verify_round
from agent.state import STATE_RECORDS, RunInput, RunOutput, RunState

CHECKPOINTS = "checkpoints.sqlite"


def route_after_plan_task(
    state: RunState, runtime: Runtime[RunContext]
) -> Literal["resolve_models", "search_models"]:
    """Voters named with ``--model`` skip discovery."""
    return "resolve_models" if runtime.context.settings.models else "search_models"


def route_after_plan_round(state: RunState) -> Literal["verify_round", "emit_package"]:
    """Another round, unless the rounds stopped (the reason is in the round's record)."""
    return "emit_package" if state.rounds[-1].stop else "verify_round"


def route_after_verify_round(
    state: RunState, runtime: Runtime[RunContext]
) -> Literal["finetune_voters", "learn_voters"]:
    """A LoRA fine-tuning stage while stages remain and rows are new to them; then the
    learned voters and vote learn (:mod:`agent.learning`)."""
    return "finetune_voters" if should_finetune(state, runtime.context.settings) else "learn_voters"


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
        plan_round,
        verify_round,
        finetune_voters,
        learn_voters,
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
    graph.add_edge("lint_labeler", "learn_voters")
    graph.add_edge("learn_voters", "run_labeler")
    graph.add_edge("run_labeler", "plan_round")
    graph.add_conditional_edges("plan_round", route_after_plan_round)
    graph.add_conditional_edges("verify_round", route_after_verify_round)
    graph.add_edge("finetune_voters", "learn_voters")
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
