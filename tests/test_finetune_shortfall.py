"""A flag that cannot act says so: ``--finetune-stages N`` where no stage could run ends the
run with one warning line naming why (here: no voter left that fine-tuning can change)."""

from __future__ import annotations

from agent.learning import finetune_shortfall
from agent.settings import Settings
from agent.state import Candidate
from tests.support.fakes import TOXICITY_PLAN
from tests.support.run_states import gold_run_state, hub_voter


def lexicon(name: str) -> Candidate:
    voter = hub_voter(name, {"toxic": "toxic", "non-toxic": "non-toxic"})
    return voter.model_copy(update={"origin": "specialist", "kind": "lexicon"})


def test_no_stage_for_want_of_a_tunable_voter_is_said_in_one_line(tmp_path):
    state = gold_run_state(
        tmp_path, TOXICITY_PLAN, ["a", "b"], ["toxic", "non-toxic"], voters=(lexicon("vader"),)
    )
    line = finetune_shortfall(state, Settings(finetune_stages=1, sandbox="none"))
    assert line == (
        "--finetune-stages 1: 0 of 1 fine-tuning stages ran; no voter can be fine-tuned (only "
        "transformer and embedding voters can)"
    )


def test_nothing_is_said_when_no_stage_was_asked_for_or_all_ran(tmp_path):
    state = gold_run_state(
        tmp_path, TOXICITY_PLAN, ["a", "b"], ["toxic", "non-toxic"], voters=(hub_voter("x"),)
    )
    assert finetune_shortfall(state, Settings(sandbox="none")) is None
    assert "too few for a first stage" in finetune_shortfall(
        state, Settings(finetune_stages=2, sandbox="none")
    )
