"""verify_pilot: verify a sample of the pilot rows, when a verifier is at hand.

A uniform sample of ``--pilot-verify`` pilot rows is verified (:mod:`agent.verification.
pilot`: by a data column or the LLM judge, priced and confirmed first), so that the
candidates can be scored by accuracy rather than only by agreeing with each other. The
verified rows are kept as verdicts of the run: applied to the output, counted as verified,
never asked again. Without a verifier (a person answers only after the run, ``--verifier
none``, ``--pilot-verify 0``, or named voters with nothing to decide) the node does nothing
and the consensus decides.
"""

from __future__ import annotations

from pathlib import Path

from langgraph.runtime import Runtime

from agent.context import RunContext
from agent.dataset import sample_rows
from agent.state import PilotVerification, RunState
from agent.verification.pilot import keep_verified, pilot_verifier, verify_pilot_rows


def verify_pilot(state: RunState, runtime: Runtime[RunContext]) -> dict:
    context = runtime.context
    verifier = pilot_verifier(context, state.candidates)
    if verifier is None:
        return {}
    # The same sample run_pilot drew (seeded by the data's content), read again rather
    # than kept in the state: a column verifier needs every column of its rows.
    sample = sample_rows(state.dataset, context.settings.pilot_rows, seed=state.dataset.sha256)
    run_dir = Path(state.run_dir)
    verdicts = verify_pilot_rows(verifier, sample, state.plan, state.dataset, run_dir, context)
    kept = keep_verified(verdicts, run_dir)
    if verdicts.verified:
        context.reporter.info(
            f"{verdicts.verified} verified pilot rows are kept as verdicts of the run "
            f"({kept} new): they count as verified and are not asked again"
        )
    record = PilotVerification(
        verifier=verdicts.verifier,
        asked=verdicts.asked,
        verified=verdicts.verified,
        verified_labels=len({label for label in verdicts.labels if label is not None}),
        verdicts_path=verdicts.path,
    )
    return {"pilot_verification": record}
