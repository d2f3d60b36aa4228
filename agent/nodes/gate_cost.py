"""gate_cost: what LLM verification is expected to cost, asked about before it is spent.

After the voters are chosen, their pilot votes give the expected disagreement rate and the
judge's prompt rendered on the pilot's own disputed rows gives the tokens per row
(:func:`agent.verification.costs.check_verification_cost`): the estimate is printed and saved,
and a cost over ``--budget-usd`` is confirmed on the terminal or stops the run (``--yes``
skips the question). Nothing happens unless the LLM verifies.
"""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import iter_rows
from agent.state import RunState
from agent.verification.costs import check_verification_cost


def gate_cost(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context, pilot = runtime.context, state.pilot
    text_column = state.plan.text_column
    texts = [row.get(text_column) for row in iter_rows(state.pilot_run.input_path)]
    votes = json.loads(Path(pilot.votes_path).read_text(encoding="utf-8"))
    check_verification_cost(
        state, context, texts, votes, pilot.disagreement_rate, pilot.verified_rows
    )
    return {}
