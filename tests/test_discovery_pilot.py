"""Pilot vetting scored against verified pilot rows, with the consensus as the fallback.

The pilot nodes (``run_pilot`` -> ``verify_pilot`` -> ``choose_voters`` -> ``gate_cost``)
run on a hand-made run: the pilot labeler is a scripted sandbox that answers each
candidate's votes, the judge is :class:`FakeLLM`, so each test checks what is chosen,
what is recorded and what the LLM is asked, in a second or two.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.context import RunContext
from agent.discovery.pilot_scoring import consensus_agreement, rank_voters
from agent.errors import UserInputError
from agent.settings import Settings
from agent.state import (
    Candidate,
    LabelingResult,
    RunState,
)
from agent.verification.costs import OverBudgetError
from agent.verification.store import read_jsonl
from sandbox import SandboxResult
from tests.support.fakes import TOXICITY_PLAN, FakeLLM, LLMCall, RecordingReporter
from tests.support.run_states import gold_run_state, hub_voter, run_pilot_nodes, verify_disputed

PLAN = TOXICITY_PLAN
NAMED = {"non-toxic": "non-toxic", "toxic": "toxic"}
ROWS = 40
TRUTH = ["toxic" if row % 5 in (1, 3) else "non-toxic" for row in range(ROWS)]
TEXTS = [f"tweet {row}: " + ("you clown" if label == "toxic" else "nice day") for row, label in
         enumerate(TRUTH)]  # fmt: skip
HERD_ERRORS = [0, 2, 4, 6, 8, 10]
"""Rows three candidates get wrong together: their majority is wrong there."""


def flip(label: str) -> str:
    return "toxic" if label == "non-toxic" else "non-toxic"


def with_errors(rows: Sequence[int]) -> list[str]:
    return [flip(label) if row in rows else label for row, label in enumerate(TRUTH)]


# Three candidates share a blind spot, so they agree with each other's majority almost
# always; the loner is right where they are wrong, so the consensus marks it down.
VOTES = {
    "herd_a": with_errors([*HERD_ERRORS, 20]),
    "herd_b": with_errors([*HERD_ERRORS, 25]),
    "herd_c": with_errors([*HERD_ERRORS, 30]),
    "loner": with_errors([15, 35]),
}


class ScriptedPilotSandbox:
    """A :class:`sandbox.Sandbox` whose "labeler" writes scripted votes for the pilot rows."""

    name = "scripted"
    python = "python3"

    def __init__(self, votes: Mapping[str, Sequence[str]]) -> None:
        self.votes = votes
        self.runs = 0

    def run(self, command, workdir, read_only_mounts=(), env=None, limits=None, on_output=None):
        self.runs += 1
        output = Path(command[command.index("--output") + 1])
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8") as handle:
            for row in range(ROWS):
                record = {f"label_{name}": votes[row] for name, votes in self.votes.items()}
                record |= {f"prob_{name}": 0.9 for name in self.votes}
                handle.write(json.dumps(record) + "\n")
        if on_output is not None:
            on_output(json.dumps({"event": "done", "rows": ROWS, "needs_review": 0, "seconds": 0}))
        return SandboxResult(0, "", "", False, False, 0.1)


def candidate(name: str, labels: Mapping[str, str] = NAMED, downloads: int = 0) -> Candidate:
    return hub_voter(name, labels, downloads)


def make_state(tmp_path: Path, candidates: Sequence[Candidate], gold=TRUTH) -> RunState:
    return gold_run_state(
        tmp_path, PLAN, TEXTS, gold, data_name="tweets.csv", candidates=tuple(candidates)
    )


def items_of(call: LLMCall) -> list[dict]:
    """A judge request's items (an object, id -> text), as ``{"id", "text"}`` records."""
    items = json.loads(call.user_text.split("Items (JSON data):", 1)[1])
    return [{"id": id_, "text": text} for id_, text in items.items()]


def judge_by_truth(call: LLMCall) -> dict:
    """The judge answers the truth (what a good LLM would), and checks it is shown no votes."""
    items = items_of(call)
    assert all(isinstance(item["text"], str) for item in items), "the judge sees the text alone"
    truth = dict(zip(TEXTS, TRUTH, strict=True))
    return {"labels": {it["id"]: truth[it["text"]] for it in items}}


def judged_texts(llm: FakeLLM) -> list[str]:
    return [item["text"] for call in llm.history for item in items_of(call)]


def vet(tmp_path: Path, state: RunState, llm: FakeLLM | None = None, votes=VOTES, **settings):
    defaults = {
        "sandbox": "none",
        "voters": 3,
        "verdict_cache": tmp_path / "verdicts.sqlite",
        "verifier": "llm" if llm is not None else None,
        "offline": llm is None,
        # The pilot's own rules, without a verification budget capping the pilot sample and
        # without learned voters joining the chosen ones.
        "max_verified": None,
        "learned_voters": False,
        "pilot_verify_rows": 50,
    }
    context = RunContext(
        Settings(**(defaults | settings)), ScriptedPilotSandbox(votes), RecordingReporter(), llm=llm
    )
    return run_pilot_nodes(state, context), context


@pytest.fixture
def herd(tmp_path: Path) -> RunState:
    return make_state(tmp_path, [candidate(name) for name in VOTES])


def test_the_consensus_rewards_a_shared_blind_spot():
    scores = {name: consensus_agreement(name, VOTES) for name in VOTES}

    chosen, _ = rank_voters([candidate(n) for n in VOTES], scores, VOTES, 3)

    assert scores["loner"] < min(scores[name] for name in ("herd_a", "herd_b", "herd_c"))
    assert "loner" not in {c.name for c in chosen}


def test_verified_pilot_rows_choose_the_accurate_candidate_over_the_agreeable_ones(tmp_path, herd):
    llm = FakeLLM()
    llm.responder = judge_by_truth

    update, context = vet(tmp_path, herd, llm)

    pilot = update["pilot"]
    chosen = [voter.name for voter in update["voters"]]
    assert chosen[0] == "loner" and len(chosen) == 3
    assert (pilot.basis, pilot.verifier, pilot.verified_rows) == ("verified", "llm:fake-llm", ROWS)
    accuracy = {score.name: score.verified_accuracy for score in pilot.scores}
    assert accuracy == {"herd_a": 0.825, "herd_b": 0.825, "herd_c": 0.825, "loner": 0.95}
    loner = next(score for score in pilot.scores if score.name == "loner")
    assert loner.note.startswith("loner (org/loner): right on 95% of 40 verified pilot rows")
    assert "by accuracy against the 40 of them verified by the LLM (fake-llm)" in pilot.basis_note
    assert pilot.basis_note in context.reporter.infos
    assert sorted(judged_texts(llm)) == sorted(TEXTS)  # every pilot row once, in batches
    assert len(llm.history) == math.ceil(ROWS / context.settings.judge_batch_size)
    ledger = list(read_jsonl(Path(herd.run_dir) / "ledger.jsonl"))
    assert len(ledger) == len(llm.history) and all(entry["outcome"] == "ok" for entry in ledger)
    verdicts = list(read_jsonl(Path(pilot.verdicts_path)))
    assert [v["label"] for v in verdicts] == TRUTH and {v["source"] for v in verdicts} == {"llm"}


def test_pilot_verdicts_are_not_asked_again_when_the_full_run_disputes_those_rows(tmp_path, herd):
    llm = FakeLLM()
    llm.responder = judge_by_truth
    update, context = vet(tmp_path, herd, llm)
    asked = len(llm.history)
    state = herd.model_copy(update=update)
    disputed = Path(herd.run_dir) / "disagreements.jsonl"
    with open(disputed, "w", encoding="utf-8") as handle:
        for row in HERD_ERRORS:
            record = {"row": row, "text": TEXTS[row], "vote": flip(TRUTH[row]), "agreement": 0.67}
            record |= {"votes": {v.name: VOTES[v.name][row] for v in state.voters}}
            handle.write(json.dumps(record) + "\n")
    state = state.model_copy(
        update={
            "labeling": LabelingResult(
                output_path=str(Path(herd.run_dir) / "output.csv"),
                rows=ROWS,
                disagreements=len(HERD_ERRORS),
                seconds=0.1,
                disagreements_path=str(disputed),
            )
        }
    )

    result = verify_disputed(state, SimpleNamespace(context=context))["verification"]

    assert len(llm.history) == asked  # every disputed row was verified in the pilot
    verdicts = list(read_jsonl(Path(result.verdicts_path)))
    assert [v["row"] for v in verdicts] == list(range(ROWS))  # the pilot's, kept once each
    assert [v["label"] for v in verdicts] == TRUTH
    assert all(v["source"] == "llm" and v["reason"].startswith("pilot") for v in verdicts)
    assert result.verified == ROWS


def test_offline_the_consensus_decides_and_says_why(tmp_path, herd):
    update, context = vet(tmp_path, herd)

    pilot = update["pilot"]
    assert "loner" not in {voter.name for voter in update["voters"]}
    assert (pilot.basis, pilot.verified_rows, pilot.verifier) == ("consensus", 0, "")
    assert all(score.verified_accuracy is None for score in pilot.scores)
    assert "leave-one-out consensus" in pilot.basis_note
    assert "no LLM endpoint (--offline)" in pilot.basis_note
    herd_a = next(score for score in pilot.scores if score.name == "herd_a")
    assert herd_a.note == (
        "herd_a (org/herd_a): agreed with the other voters' majority on 98% of 40 pilot rows; "
        "selected"
    )


def test_a_column_verifier_answers_for_the_same_sample_as_the_llm_and_costs_nothing(tmp_path):
    gold = [*TRUTH[:-1], "maybe"]  # a value outside the labels verifies nothing
    state = make_state(tmp_path, [candidate(name) for name in VOTES], gold=gold)
    llm = FakeLLM()
    llm.responder = judge_by_truth
    by_llm, _ = vet(tmp_path / "llm", make_state(tmp_path / "llm", state.candidates), llm,
                    pilot_verify_rows=30)  # fmt: skip

    update, _ = vet(tmp_path, state, verifier="column:gold", pilot_verify_rows=30)

    pilot = update["pilot"]
    asked = [v["pilot_row"] for v in read_jsonl(Path(pilot.verdicts_path))]
    assert len(asked) == 30  # the column is a person: each row it answers is effort
    assert asked == [v["pilot_row"] for v in read_jsonl(Path(by_llm["pilot"].verdicts_path))]
    verified = 30 - (ROWS - 1 in asked)
    assert (pilot.basis, pilot.verifier, pilot.verified_rows) == (
        "verified",
        "column:gold",
        verified,
    )
    assert update["voters"][0].name == "loner"
    assert "verified by column gold" in pilot.basis_note
    assert not (Path(state.run_dir) / "ledger.jsonl").exists()
    kept = list(read_jsonl(Path(state.run_dir) / "verdicts.jsonl"))
    assert len(kept) == verified and {v["source"] for v in kept} == {"human"}


def test_a_column_answers_in_another_case_and_a_column_of_no_label_is_refused(tmp_path):
    shouted = [label.upper() for label in TRUTH]
    state = make_state(tmp_path / "case", [candidate(name) for name in VOTES], gold=shouted)
    update, _ = vet(tmp_path / "case", state, verifier="column:gold", pilot_verify_rows=30)
    kept = list(read_jsonl(Path(state.run_dir) / "verdicts.jsonl"))
    assert update["pilot"].verified_rows == 30 == len(kept)
    assert {v["label"] for v in kept} <= {"toxic", "non-toxic"}

    other = ["spam" if label == "toxic" else "ham" for label in TRUTH]
    state = make_state(tmp_path / "other", [candidate(name) for name in VOTES], gold=other)
    with pytest.raises(UserInputError) as refused:
        vet(tmp_path / "other", state, verifier="column:gold", pilot_verify_rows=30)
    message = str(refused.value)
    assert "none of the 30 pilot rows it verifies holds a label" in message
    assert "'ham', 'spam'" in message or "'spam', 'ham'" in message
    assert "check --labels" in message and "\n" not in message


def test_pilot_verification_can_be_turned_off(tmp_path, herd):
    llm = FakeLLM()

    update, _ = vet(tmp_path, herd, llm, pilot_verify_rows=0)

    assert update["pilot"].basis == "consensus" and "--pilot-verify 0" in update["pilot"].basis_note
    assert llm.history == []


def test_named_voters_are_checked_on_verified_rows_and_kept_when_better_than_chance(tmp_path, herd):
    llm = FakeLLM()
    llm.responder = judge_by_truth

    update, _ = vet(tmp_path, herd, llm, models=tuple(f"org/{name}" for name in VOTES))

    assert [voter.name for voter in update["voters"]] == list(VOTES)
    assert llm.history, "the pilot rows are verified even for named voters"
    assert update["pilot"].basis == "verified"
    assert not [r for r in update["rejections"] if "carry no signal" in r.reason]
    kept = [score.note for score in update["pilot"].scores if score.selected]
    assert kept and all("selected, carries signal: Cohen's kappa" in note for note in kept)


def test_a_named_voter_at_chance_is_dropped_with_its_reason(tmp_path):
    votes = dict(VOTES) | {"coin": [("toxic", "non-toxic")[row % 2] for row in range(ROWS)]}
    state = make_state(tmp_path, [candidate(name) for name in votes])
    llm = FakeLLM()
    llm.responder = judge_by_truth

    update, context = vet(
        tmp_path, state, llm, votes=votes, models=tuple(f"org/{n}" for n in votes)
    )

    assert [voter.name for voter in update["voters"]] == list(VOTES)
    (dropped,) = [r for r in update["rejections"] if "carry no signal" in r.reason]
    assert dropped.ref.endswith("coin") and "one-sided binomial test" in dropped.reason
    assert any("dropped" in line for line in context.reporter.infos)


def test_too_few_verified_rows_fall_back_to_the_consensus(tmp_path, herd):
    def abstains_after_row_9(call: LLMCall) -> dict:
        answer = judge_by_truth(call)
        for item in items_of(call):
            if TEXTS.index(item["text"]) >= 10:
                answer["labels"][item["id"]] = "abstain"
                answer.setdefault("reasons", {})[item["id"]] = "unsure"
        return answer

    llm = FakeLLM()
    llm.responder = abstains_after_row_9

    update, _ = vet(tmp_path, herd, llm)

    pilot = update["pilot"]
    assert (pilot.basis, pilot.verified_rows) == ("consensus", 10)
    assert "only 10 could be verified, fewer than 20" in pilot.basis_note
    assert "loner" not in {voter.name for voter in update["voters"]}


def test_pilot_verification_over_the_budget_stops_before_any_call(tmp_path, herd):
    llm = FakeLLM()

    with pytest.raises(OverBudgetError, match="over --budget-usd"):
        vet(tmp_path, herd, llm, budget_usd=0.000001, llm_prices={"fake-llm": (100.0, 100.0)})

    assert llm.history == []


def test_the_verified_rows_map_opaque_labels_even_when_the_named_voters_are_wrong(tmp_path):
    opaque = {"LABEL_0": "non-toxic", "LABEL_1": "toxic"}
    # The named voters (embedding voters: never flipped) are wrong on most rows; the opaque
    # model is right, and its class 0 means toxic.
    votes = {
        "wrong_a": with_errors(range(0, 30)),
        "wrong_b": with_errors(range(2, 32)),
        "opaque": [flip(label) for label in with_errors([7])],
    }
    named = [candidate(name).model_copy(update={"kind": "embedding"}) for name in votes][:2]
    candidates = [*named, candidate("opaque", opaque)]
    llm = FakeLLM()
    llm.responder = judge_by_truth

    offline, _ = vet(tmp_path / "offline", make_state(tmp_path / "offline", candidates),
                     votes=votes)  # fmt: skip
    verified, _ = vet(tmp_path, make_state(tmp_path, candidates), llm, votes=votes)

    def settled(update: dict) -> Candidate:
        return next(voter for voter in update["voters"] if voter.name == "opaque")

    assert settled(offline).label_map == opaque  # the wrong majority maps it the wrong way
    assert settled(verified).label_map == {"LABEL_0": "toxic", "LABEL_1": "non-toxic"}
    note = next(score.note for score in verified["pilot"].scores if score.name == "opaque")
    assert "agreed with the verified pilot rows on 98% of 40 rows" in note
