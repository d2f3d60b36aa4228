"""``--max-verified``: a verification budget, spent on the least confident rows first, and the
pilot's verified rows kept as verdicts of the run.

Most tests run ``verify_disagreements`` (and the pilot nodes) on a hand-made run: a data set
with a ``gold`` column, a disagreements file and a labeled output written here, so each one
checks which rows are verified, which are left to the vote and what the labeled data says,
in well under a second. One test runs the whole graph through the CLI with tiny voters.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent.cli import main
from agent.context import RunContext
from agent.nodes.emit_package import write_labeled_data
from agent.nodes.verify_disagreements import verify_disagreements
from agent.settings import Settings
from agent.state import Candidate, LabelingResult, RunState
from agent.verification.budget import BUDGET_FOLDER
from agent.verification.pilot import _sampled
from agent.verification.store import VERDICTS_FILE, latest_verdicts, read_jsonl, resolve
from tests.support.datasets import write_gold_tweets
from tests.support.fakes import TOXICITY_PLAN, FakeLLM, LLMCall, RecordingReporter
from tests.support.hub_fixtures import TOXIC_WORDS
from tests.support.run_states import gold_run_state, hub_voter, run_pilot_nodes
from tests.test_discovery_pilot import VOTES, ScriptedPilotSandbox

ROWS = 40
GOLD = ["toxic" if row % 3 == 0 else "non-toxic" for row in range(ROWS)]
TEXTS = [f"tweet {row}" for row in range(ROWS)]
VOTERS = ("first", "second")


def flip(label: str) -> str:
    return "toxic" if label == "non-toxic" else "non-toxic"


def voter(name: str) -> Candidate:
    return hub_voter(name)


def make_run(tmp_path: Path, voters=VOTERS) -> RunState:
    states = tuple(voter(name) for name in voters)
    return gold_run_state(tmp_path, TOXICITY_PLAN, TEXTS, GOLD, sha256="e" * 64, voters=states)


def labeling_pass(
    state: RunState,
    number: int,
    disputed: dict[int, tuple[float, float]],
    votes: dict[int, str] | None = None,
) -> RunState:
    """State after labeling pass ``number``: ``disputed`` maps row -> (confidence, agreement).
    A disputed row's vote is the gold label's opposite, any other row's the gold label, unless
    ``votes`` says otherwise."""
    votes = votes or {}
    run_dir = Path(state.run_dir)
    folder = run_dir / "labeled" / f"pass-{number}"
    folder.mkdir(parents=True)
    output = folder / "output.csv"
    vote = [
        votes.get(row, flip(GOLD[row]) if row in disputed else GOLD[row]) for row in range(ROWS)
    ]
    columns = ["text", "gold", "label", "confidence", "agreement", "needs_review"]
    columns += [f"label_{name}" for name in VOTERS] + [f"prob_{name}" for name in VOTERS]
    with open(output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in range(ROWS):
            confidence, agreement = disputed.get(row, (0.95, 1.0))
            writer.writerow(
                # the flag as the labeler writes it in CSV
                [TEXTS[row], GOLD[row], vote[row], confidence, agreement, flag(row in disputed)]
                + [vote[row], vote[row] if row not in disputed else flip(vote[row])]
                + [confidence, confidence]
            )
    path = run_dir / "disagreements.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for row, (confidence, agreement) in sorted(disputed.items()):
            record = {"row": row, "text": TEXTS[row], "vote": vote[row], "agreement": agreement}
            record |= {"confidence": confidence, "votes": {}, "probabilities": {}}
            handle.write(json.dumps(record) + "\n")
    labeling = LabelingResult(
        output_path=str(output),
        rows=ROWS,
        disagreements=len(disputed),
        seconds=0.1,
        disagreements_path=str(path),
    )
    return state.model_copy(update={"labeling": labeling, "labeling_passes": number})


def verify(state: RunState, tmp_path: Path, llm=None, **values):
    defaults = {
        "sandbox": "none",
        "verifier": "column:gold",
        "learn_vote": False,
        "vote_min_examples": 4,
        "verdict_cache": tmp_path / "verdicts.sqlite",
        "yes": True,
    }
    settings = Settings(**(defaults | values))
    context = RunContext(settings, None, RecordingReporter(), llm=llm)
    result = verify_disagreements(state, SimpleNamespace(context=context))["verification"]
    return result, context.reporter


def verdicts_of(state: RunState) -> list[dict]:
    return list(read_jsonl(Path(state.run_dir) / VERDICTS_FILE))


def by_source(state: RunState) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for row, verdict in latest_verdicts(Path(state.run_dir) / VERDICTS_FILE).items():
        found.setdefault(verdict["source"], []).append(row)
    return {source: sorted(rows) for source, rows in found.items()}


def spread(rows) -> dict[int, tuple[float, float]]:
    """Disputed rows whose confidence rises with the row number, so the first are the least
    confident; even rows of equal confidence are ordered by agreement, then row number."""
    return {row: (0.5 + row / 100, 0.5) for row in rows}


def write_pilot_verdicts(state: RunState, rows) -> None:
    with open(Path(state.run_dir) / VERDICTS_FILE, "a", encoding="utf-8") as handle:
        for row in rows:
            record = {"row": row, "label": GOLD[row], "source": "human", "reason": "pilot"}
            handle.write(json.dumps(record) + "\n")


def test_resolve_takes_the_current_vote_for_a_row_left_to_the_vote():
    left = {"row": 3, "label": "toxic", "source": "vote", "reason": "over the budget"}
    verified = {"row": 3, "label": "toxic", "source": "llm", "reason": ""}
    unresolved = {"row": 3, "label": None, "source": "unresolved", "reason": "awaits review"}

    assert resolve("non-toxic", left, True) == ("non-toxic", "vote")
    assert resolve("non-toxic", left, False) == ("non-toxic", "consensus")
    assert resolve("non-toxic", verified, False) == ("toxic", "llm")
    assert resolve("non-toxic", unresolved, True) == (None, "unresolved")
    assert resolve("non-toxic", None, True) == (None, "unresolved")


def test_the_least_confident_rows_are_verified_first_up_to_a_row_count(tmp_path):
    # Rows 10..29 disputed; rows 20 and 21 tie on confidence and are told apart by agreement.
    disputed = spread(range(10, 30)) | {20: (0.1, 0.6), 21: (0.1, 0.4)}
    state = labeling_pass(make_run(tmp_path), 1, disputed)

    result, reporter = verify(state, tmp_path, max_verified="5")

    sources = by_source(state)
    assert sources["human"] == [10, 11, 12, 20, 21]
    assert len(sources["vote"]) == 15 and not set(sources["vote"]) & set(sources["human"])
    verdicts = {v["row"]: v for v in verdicts_of(state)}
    assert [verdicts[row]["label"] for row in sources["human"]] == [
        GOLD[row] for row in sources["human"]
    ]
    assert verdicts[29]["reason"] == "over the verification budget (--max-verified 5)"
    assert (result.verified, result.unresolved) == (5, 0)
    log = " | ".join(reporter.infos)
    assert "this pass may verify 5 (all 5 left): verifying 5 disputed rows" in log
    assert "15 left to the vote" in log
    assert "5 rows verified in all (--max-verified 5: 5); 15 disputed rows left to the vote" in log
    plan = json.loads((Path(state.run_dir) / BUDGET_FOLDER / "pass-1.json").read_text())
    assert plan["verify"] == [21, 20, 10, 11, 12]  # least confident first


def test_a_share_of_the_rows_caps_every_verifier_the_same(tmp_path):
    disputed = spread(range(0, 30))
    column_state = labeling_pass(make_run(tmp_path / "column"), 1, disputed)
    human_state = labeling_pass(make_run(tmp_path / "human"), 1, disputed)
    none_state = labeling_pass(make_run(tmp_path / "none"), 1, disputed)

    verify(column_state, tmp_path, max_verified="25%")
    human, _ = verify(human_state, tmp_path, max_verified="25%", verifier="human")
    unlimited, _ = verify(none_state, tmp_path, max_verified="25%", verifier="none")

    assert by_source(column_state)["human"] == list(range(10))  # 25% of 40 rows
    assert by_source(human_state)["unresolved"] == list(range(10))
    with open(Path(human.review_path), newline="", encoding="utf-8") as handle:
        assert [int(row["row"]) for row in csv.DictReader(handle)] == list(range(10))
    assert len(by_source(human_state)["vote"]) == 20
    # --verifier none verifies nothing: the budget changes nothing there
    assert by_source(none_state) == {"vote": list(range(30))}
    assert {v["reason"] for v in verdicts_of(none_state)} == {"not verified"}
    assert not (Path(none_state.run_dir) / BUDGET_FOLDER).exists()
    assert unlimited.verified == 0


def items_of(call: LLMCall) -> dict[str, str]:
    """A judge request's items: id -> text."""
    return json.loads(call.user_text.split("Items (JSON data):", 1)[1])


def judge_by_gold(call: LLMCall) -> dict:
    """The judge answers the gold label."""
    gold = dict(zip(TEXTS, GOLD, strict=True))
    return {"labels": {key: gold[text] for key, text in items_of(call).items()}}


def test_the_llm_is_sent_only_the_rows_within_the_budget(tmp_path):
    state = labeling_pass(make_run(tmp_path), 1, spread(range(0, 30)))
    llm = FakeLLM()
    llm.responder = judge_by_gold

    verify(state, tmp_path, llm, verifier="llm", max_verified="7")

    sent = [text for call in llm.history for text in items_of(call).values()]
    assert sorted(sent) == sorted(TEXTS[row] for row in range(7))
    assert by_source(state)["llm"] == list(range(7))


def test_the_whole_budget_now_when_the_relabel_could_not_learn_from_half(tmp_path):
    state = labeling_pass(make_run(tmp_path), 1, spread(range(0, 30)))
    # Half of 6 is 3 rows, fewer than the 4 the learned vote needs: no relabel would learn.
    verify(state, tmp_path, max_verified="6", learn_vote=True)
    assert by_source(state)["human"] == list(range(6))


def test_half_of_what_is_left_when_a_relabel_follows_then_the_rest(tmp_path):
    state = make_run(tmp_path)
    write_pilot_verdicts(state, [36, 37, 38, 39])  # the pilot's verified rows count too
    first = labeling_pass(state, 1, spread(range(0, 30)))

    verify(first, tmp_path, max_verified="20", learn_vote=True)

    # 20 in all, 4 spent by the pilot: half of the 16 left now, the rest after relabeling
    assert by_source(first)["human"] == [*range(8), 36, 37, 38, 39]
    assert by_source(first)["vote"] == list(range(8, 30))

    # Relabeled: rows 0..7 are settled, rows 20..29 are now the least confident, rows 8..19 are
    # still disputed with new votes, and row 30 is a new dispute.
    relabeled = {row: (0.9, 0.5) for row in range(8, 20)} | spread(range(20, 31))
    relabeled |= {row: (0.05 + row / 1000, 0.5) for row in range(20, 28)}
    new_votes = {row: GOLD[row] for row in range(8, 20)}  # the better-informed vote
    second = labeling_pass(first, 2, relabeled | spread(range(0, 8)), new_votes)

    _, reporter = verify(second, tmp_path, max_verified="20", learn_vote=True)

    sources = by_source(second)
    assert sources["human"] == [*range(8), *range(20, 28), 36, 37, 38, 39]
    assert "this pass may verify 8 (all 8 left)" in " | ".join(reporter.infos)
    rows = [v["row"] for v in verdicts_of(second)]
    assert all(count == 1 or row in range(20, 28) for row, count in Counter(rows).items())

    output = tmp_path / "labeled.csv"
    write_labeled_data(second, output)
    with open(output, newline="", encoding="utf-8") as handle:
        final = list(csv.DictReader(handle))
    for row in range(8, 20):  # left to the vote in both passes: the latest vote stands
        assert (final[row]["label"], final[row]["source"]) == (GOLD[row], "vote")
    for row in [*range(8), *range(20, 28), 36, 37, 38, 39]:
        assert (final[row]["label"], final[row]["source"]) == (GOLD[row], "human")
    assert Counter(row["source"] for row in final)["vote"] == 15  # 8..19, 28, 29, 30


def test_a_resumed_pass_verifies_the_rows_it_chose(tmp_path):
    state = labeling_pass(make_run(tmp_path), 1, spread(range(0, 30)))
    verify(state, tmp_path, max_verified="10", learn_vote=True)  # half of 10 now: rows 0..4
    path = Path(state.run_dir) / VERDICTS_FILE
    lines = path.read_text().splitlines(keepends=True)
    # A crash after the rows over budget and two of the five verified ones were written:
    path.write_text("".join(lines[:-3]))

    verify(state, tmp_path, max_verified="10", learn_vote=True)

    # Planned afresh, the pass would take half of the 8 left: rows 2..5, six rows in all.
    assert by_source(state) == {"human": list(range(5)), "vote": list(range(5, 30))}
    assert len(verdicts_of(state)) == 30  # nothing written twice


def pilot_run(tmp_path: Path) -> RunState:
    state = make_run(tmp_path).model_copy(
        update={"voters": (), "candidates": tuple(voter(name) for name in VOTES)}
    )
    return state


def vet(state: RunState, tmp_path: Path, **values) -> tuple[dict, RunContext]:
    defaults = {
        "sandbox": "none",
        "voters": 3,
        "verifier": "column:gold",
        "offline": True,
        "verdict_cache": tmp_path / "verdicts.sqlite",
    }
    context = RunContext(
        Settings(**(defaults | values)), ScriptedPilotSandbox(VOTES), RecordingReporter()
    )
    return run_pilot_nodes(state, context), context


@pytest.mark.slow
def test_pilot_verdicts_are_kept_once_applied_to_the_output_and_not_asked_again(tmp_path):
    state = pilot_run(tmp_path)

    update, context = vet(state, tmp_path, pilot_verify_rows=25)
    vet(state, tmp_path, pilot_verify_rows=25)  # resumed: the same rows, appended once

    sampled = _sampled(ROWS, 25, state.dataset.sha256)
    pilot = list(read_jsonl(Path(update["pilot"].verdicts_path)))
    assert [v["pilot_row"] for v in pilot] == sampled  # the column answers for the sample only
    assert update["pilot"].verified_rows == 25
    kept = verdicts_of(state)
    assert [v["row"] for v in kept] == sampled
    assert all(v["source"] == "human" and v["reason"].startswith("pilot") for v in kept)
    assert [v["label"] for v in kept] == [GOLD[row] for row in sampled]
    assert any("25 verified pilot rows are kept" in line for line in context.reporter.infos)

    # The full run disputes five pilot rows and five others, under a budget of 28 rows.
    others = [row for row in range(ROWS) if row not in sampled][:5]
    state = state.model_copy(update=update | {"voters": tuple(voter(n) for n in VOTERS)})
    state = labeling_pass(state, 1, spread([*sampled[:5], *others]))
    result, _ = verify(state, tmp_path, max_verified="28")

    rows = Counter(v["row"] for v in verdicts_of(state))
    assert set(rows.values()) == {1}  # the pilot rows were not asked again
    assert by_source(state)["human"] == sorted([*sampled, *others[:3]])  # 28 - 25 = 3 more
    assert result.verified == 28
    output = tmp_path / "labeled.csv"
    sources = write_labeled_data(state, output)
    with open(output, newline="", encoding="utf-8") as handle:
        final = list(csv.DictReader(handle))
    assert all(final[row]["source"] == "human" for row in sampled)  # disputed or not
    assert sources["human"] == 28 and sources["vote"] == 2


def test_a_bad_max_verified_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = tmp_path / "tweets.csv"
    data.write_text("id,text\n1,hello\n")
    for value in ("lots", "120%", "-3"):
        code = main(["label tweets", "--data", str(data), "--offline", "--max-verified", value])
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert code == 2
        assert len(lines) == 1 and lines[0].startswith("error: --max-verified: "), lines
    assert not (tmp_path / ".autoannotator").exists()


@pytest.fixture
def gold_tweets(tmp_path: Path) -> Path:
    return write_gold_tweets(tmp_path / "tweets.csv", TOXIC_WORDS)


@pytest.mark.slow
def test_a_run_spends_its_budget_over_the_pilot_and_both_passes(
    tmp_path, gold_tweets, toxic_voters, monkeypatch
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AUTOANNOTATOR_VOTE_MIN_EXAMPLES", "4")
    runs, output = tmp_path / "runs", tmp_path / "labeled.csv"
    args = ["label tweets for toxicity", "--data", str(gold_tweets), "--sandbox", "none"]
    args += ["--offline", "--verifier", "column:gold", "--runs-dir", str(runs)]
    args += ["--out", str(tmp_path / "out"), "--output", str(output)]
    args += ["--pilot-rows", "40", "--pilot-verify", "6", "--max-verified", "30%"]
    for path in toxic_voters.values():
        args += ["--model", str(path)]

    assert main(args) == 0

    (run_dir,) = runs.iterdir()
    plans = [json.loads(path.read_text()) for path in sorted(run_dir.glob("budget/pass-*.json"))]
    # 30% of 40 rows is 12, 6 of them the pilot's: half of the 6 left before the relabeling
    # (the learned vote), the rest after it
    assert [(plan["spent"], plan["allowance"], plan["kept"]) for plan in plans] == [
        (6, 3, True),
        (9, 3, False),
    ]
    verdicts = latest_verdicts(run_dir / VERDICTS_FILE)
    spent = [row for row, v in verdicts.items() if v["source"] != "vote"]
    assert len(spent) == 12
    pilot = [row for row, v in verdicts.items() if v["reason"].startswith("pilot")]
    assert len(pilot) == 6
    with open(output, newline="", encoding="utf-8") as handle:
        final = list(csv.DictReader(handle))
    assert all(final[row]["source"] == "human" for row in pilot)
    assert all(final[row]["label"] == final[row]["gold"] for row in spent)
    passes = sorted((run_dir / "labeled").iterdir())
    with open(next(passes[-1].glob("output.*")), newline="", encoding="utf-8") as handle:
        last = list(csv.DictReader(handle))
    for row, record in enumerate(final):
        if record["source"] == "vote":
            assert record["label"] == last[row]["label"]  # the latest pass's vote


def test_the_pilots_expected_flag_rate_follows_the_whole_review_rule():
    from agent.discovery.pilot_scoring import expected_flag_rate

    votes = [["a", "a", "b", None], ["a", "b", "b", None], ["a", "a", "a", "a"]]
    chances = [[0.9, 0.6, 0.8, 0.5], [0.9, 0.7, 0.55, 0.5], [0.95, 0.6, 0.9, 0.7]]
    # Row 0 unanimous and sure; rows 1 and 2 two to one; row 3 a single voter (two abstain).
    assert expected_flag_rate(votes, chances, 2, 1.0) == 0.5
    assert expected_flag_rate(votes, chances, 2, 0.6) == 0.0
    # Confidence of the winner: row 1 (0.6 + 0.3 + 0.6) / 3 = 0.5, row 2 (0.8 + 0.55 + 0.1) / 3
    # = 0.483, row 3 0.7 (abstentions do not count), row 0 0.917.
    assert expected_flag_rate(votes, chances, 2, 0.6, min_confidence=0.65) == 0.5
    assert expected_flag_rate(votes, chances, 2, 0.6, min_confidence=0.75) == 0.75


def flag(value: bool) -> str:
    return "true" if value else "false"
