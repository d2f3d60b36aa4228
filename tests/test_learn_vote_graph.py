"""The learned vote in the graph: fitted on verified rows, relabeling once, shipped pinned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.runs import execute, prepare_run
from tests.support.datasets import write_gold_tweets
from tests.support.fakes import FakeLLM
from tests.test_graph import PLAN, context_for, make_settings

pytestmark = pytest.mark.slow

TOXIC_WORDS = ("idiot", "stupid", "hate", "pathetic", "moron", "clown", "garbage", "dumbest")


@pytest.fixture
def gold_tweets(tmp_path: Path) -> Path:
    """The example tweets with a gold column (a toxic word makes a tweet toxic)."""
    return write_gold_tweets(tmp_path / "tweets.csv", TOXIC_WORDS)


def run(tmp_path: Path, data: Path, toxic_voters, **values):
    models = tuple(str(toxic_voters[name]) for name in ("plain", "shouty", "three_way"))
    settings = make_settings(
        tmp_path,
        models=models,
        verifier="column:gold",
        min_agreement=1.0,
        vote_min_examples=4,
        yes=True,
        **({"pilot_verify_rows": 0} | values),
    )
    llm = FakeLLM()
    llm.enqueue(PLAN)
    run = prepare_run("label tweets for toxicity", data, settings)
    context, reporter = context_for(settings, llm)
    return execute(run, run.run_id, Path(run.run_dir), context), reporter, Path(run.run_dir)


def test_voters_that_cannot_learn_still_relabel_once_with_the_learned_vote(
    tmp_path, gold_tweets, toxic_voters
):
    result, reporter, run_dir = run(tmp_path, gold_tweets, toxic_voters)
    assert result.verification is not None and result.verification.verified >= 4
    assert reporter.stages.count("learn_vote") == 1
    assert reporter.stages.count("run_labeler") == 2
    (vote,) = result.votes
    assert vote.before_pass == 2 and vote.examples == result.verification.verified
    assert set(vote.weights) == {voter.name for voter in result.voters}
    package = Path(result.package_path)
    lock = json.loads((package / "models.lock.json").read_text())
    votes = package / "toxicity_labeler" / "votes"
    if vote.adopted:
        assert (votes / "CURRENT").read_text().strip() == vote.version
        assert lock["learned_vote"]["weights"] == vote.weights
    else:
        assert not votes.exists() and "learned_vote" not in lock
    assert (run_dir / "votes" / "pass-2" / "examples.jsonl").is_file()
    report = (run_dir / "report.html").read_text()
    assert "Learned vote" in report


def test_no_learn_vote_keeps_the_plain_vote_and_one_pass(tmp_path, gold_tweets, toxic_voters):
    result, reporter, _ = run(tmp_path, gold_tweets, toxic_voters, learn_vote=False)
    assert result.votes == ()
    assert reporter.stages.count("run_labeler") == 1
    assert not (Path(result.package_path) / "toxicity_labeler" / "votes").exists()


def test_the_pilots_verified_rows_teach_the_vote_before_the_first_pass(
    tmp_path, gold_tweets, toxic_voters
):
    result, reporter, _ = run(tmp_path, gold_tweets, toxic_voters, pilot_verify_rows=8)
    first, *rest = result.votes
    assert first.before_pass == 1 and first.examples == 8
    assert reporter.stages.index("learn_vote") < reporter.stages.index("run_labeler")
    if rest:  # more rows were verified in the first pass: the vote is refitted once
        (second,) = rest
        assert second.before_pass == 2 and second.examples > first.examples
