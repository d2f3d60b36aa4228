"""The learned vote: the pool's arithmetic, its fit, and the package's learned_vote command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.learned_vote import fit_pool, learn, pool_predict
from templates.labeler.pkg.vote import log_probabilities, pooled_vote, vote
from tests.support.datasets import REVIEWS, read_csv, write_csv
from tests.support.packages import copy_package, emit_package

LABELS = ("negative", "positive")


def binary(p_positive) -> np.ndarray:
    p = np.asarray(p_positive, dtype=float)
    return np.stack([1 - p, p], axis=1)


def test_pool_confidence_is_the_softmax_of_weighted_log_probabilities():
    a, b = binary([0.8]), binary([0.3])
    result = pooled_vote([a, b], [2.0, 1.0], [0.1, -0.1])
    scores = np.array([0.1 + 2 * np.log(0.2) + np.log(0.7), -0.1 + 2 * np.log(0.8) + np.log(0.3)])
    expected = np.exp(scores) / np.exp(scores).sum()
    assert result.label_index.tolist() == [1]
    assert result.confidence[0] == pytest.approx(expected[1])
    assert result.agreement.tolist() == [pytest.approx(2 / 3, abs=1e-6)]


def test_an_abstaining_or_weightless_voter_changes_nothing_and_does_not_count():
    good = binary([0.9, 0.2])
    silent = binary([0.5, 0.5])  # uniform: abstains
    ignored = binary([0.1, 0.9])  # weight 0
    alone = pooled_vote([good], [1.5], [0.0, 0.0])
    both = pooled_vote([good, silent, ignored], [1.5, 3.0, 0.0], [0.0, 0.0])
    assert both.label_index.tolist() == alone.label_index.tolist() == [1, 0]
    assert both.confidence == pytest.approx(alone.confidence)
    assert both.agreement.tolist() == [1.0, 1.0]
    assert both.abstained[1].tolist() == [True, True]


def test_negative_weights_are_refused():
    with pytest.raises(ValueError):
        pooled_vote([binary([0.9])], [-1.0], [0.0, 0.0])


def noisy_voters(rows: int, seed: int):
    """One good voter (right 85%) and two weak ones that agree with each other (right 55%)."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, 2, rows)
    good_right = rng.random(rows) < 0.85
    weak_right = rng.random(rows) < 0.55
    good = np.where(good_right, gold, 1 - gold)
    weak = np.where(weak_right, gold, 1 - gold)
    confidence = 0.6 + 0.35 * rng.random((3, rows))
    probabilities = [
        binary(np.where(label == 1, c, 1 - c))
        for label, c in zip([good, weak, weak], confidence, strict=True)
    ]
    return gold, probabilities


def test_the_fit_weighs_the_good_voter_above_two_weak_ones_that_outvote_it():
    gold, probabilities = noisy_voters(600, seed=1)
    weights, bias = fit_pool(log_probabilities(probabilities), gold)
    assert np.all(weights >= 0)
    assert weights[0] > weights[1] + weights[2]
    plain = vote(probabilities, [1.0, 1.0, 1.0]).label_index
    pooled = pool_predict(log_probabilities(probabilities), weights, bias)
    assert (pooled == gold).mean() > (plain == gold).mean() + 0.1
    again = fit_pool(log_probabilities(probabilities), gold)
    assert np.array_equal(weights, again[0]) and np.array_equal(bias, again[1])


def spec_of(voters: int) -> LabelerSpec:
    return LabelerSpec(
        name="sentiment-labeler",
        task="label sentiment",
        labels=LABELS,
        text_column="text",
        min_agreement=1.0,
        voters=tuple(
            VoterConfig(name=f"v{i}", kind="lexicon", source="pypi:x", revision="1", label_map={})
            for i in range(voters)
        ),
    )


def test_learn_adopts_the_pool_only_when_cross_validation_says_it_beats_the_plain_vote():
    gold, probabilities = noisy_voters(400, seed=2)
    texts = [f"row {i}" for i in range(len(gold))]
    record = learn(texts, gold, spec_of(3), probabilities)
    assert record["adopted"] is True
    assert record["cross_validated_accuracy"] > record["plain_vote_accuracy"]
    assert [v["voter"] for v in record["voters"]] == ["v0", "v1", "v2"]
    assert set(record["bias"]) == set(LABELS)
    # Three copies of one voter: the pool cannot beat the plain vote, which stays.
    same = [probabilities[0]] * 3
    record = learn(texts, gold, spec_of(3), same)
    assert record["cross_validated_accuracy"] <= record["plain_vote_accuracy"] + 1e-9


# The package's command, on a real offline package (lexicons and MiniLM).

MODULE = "sentiment_labeler"


@pytest.fixture(scope="module")
def emitted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vote-package")
    data = write_rows(folder / "reviews.csv", REVIEWS)
    args = ["--sandbox", "none", "--verifier", "none", "--voters", "4"]
    return emit_package(
        folder, "sentiment-labeler", "label these reviews by sentiment polarity", data, *args
    )


@pytest.fixture
def package(emitted: Path, tmp_path: Path) -> Path:
    return copy_package(emitted, tmp_path)


def write_rows(path: Path, rows) -> Path:
    return write_csv(path, ["label", "text"], rows)


def run_module(package: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=package,
        env={**os.environ, "PYTHONPATH": str(package), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_the_command_fits_installs_and_the_labeler_then_votes_with_it(package, tmp_path):
    examples = write_rows(tmp_path / "verified.csv", REVIEWS)
    output = tmp_path / "votes"
    done = run_module(
        package, f"{MODULE}.learned_vote", str(examples), "--output", str(output), "--install"
    )
    assert done.returncode == 0, done.stderr
    event = next(json.loads(x) for x in done.stderr.splitlines() if x.startswith('{"event"'))
    record = event["vote"]
    assert record["version"] == "v1" and record["examples"] == len(REVIEWS)
    assert json.loads((output / "v1" / "vote.json").read_text()) == record
    installed = package / MODULE / "votes"
    if not record["adopted"]:
        assert not installed.exists()
        pytest.skip("the plain vote won on these rows; nothing to label with")
    assert (installed / "CURRENT").read_text().strip() == "v1"

    labeled = tmp_path / "labeled.csv"
    done = run_module(
        package, MODULE, str(examples), "--output", str(labeled), "--progress", "none"
    )
    assert done.returncode == 0, done.stderr
    rows = read_csv(labeled)
    names = [v["voter"] for v in record["voters"]]
    weights = [v["weight"] for v in record["voters"]]
    bias = [record["bias"][label] for label in LABELS]
    probabilities = []
    for name in names:
        p_positive = []
        for row in rows:
            p = float(row[f"prob_{name}"])
            own = row[f"label_{name}"]
            p_positive.append(0.5 if own == "" else p if own == "positive" else 1 - p)
        probabilities.append(binary(p_positive))
    expected = pooled_vote(probabilities, weights, bias)
    assert [row["label"] for row in rows] == [LABELS[i] for i in expected.label_index]
    assert [float(row["confidence"]) for row in rows] == pytest.approx(
        expected.confidence.tolist(), abs=1e-4
    )


@pytest.mark.slow
def test_bad_examples_exit_2_with_one_line_and_install_nothing(package, tmp_path):
    one_label = write_rows(tmp_path / "one.csv", [r for r in REVIEWS if r[0] == "positive"])
    for examples in (one_label, tmp_path / "missing.csv"):
        done = run_module(
            package, f"{MODULE}.learned_vote", str(examples), "--output", str(tmp_path / "o")
        )
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (package / MODULE / "votes").exists()


@pytest.mark.slow
def test_a_broken_installed_vote_stops_the_labeler_with_one_line(package, tmp_path):
    votes = package / MODULE / "votes"
    (votes / "v1").mkdir(parents=True)
    (votes / "v1" / "vote.json").write_text('{"voters": [{"voter": "nobody", "weight": 1}]}')
    (votes / "CURRENT").write_text("v1\n")
    data = write_rows(tmp_path / "in.csv", REVIEWS[:3])
    done = run_module(package, MODULE, str(data), "--output", str(tmp_path / "out.csv"))
    assert done.returncode != 0
    assert "learned vote" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()
