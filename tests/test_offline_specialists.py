"""The embedded offline default: pretrained specialists, learned voters, identical relabeling."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tests.support.datasets import REVIEWS, read_csv

pytestmark = pytest.mark.slow


def test_offline_run_learns_from_verified_rows_and_the_package_relabels_identically(
    tmp_path, monkeypatch, sandbox_kind
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTOANNOTATOR_VOTE_MIN_EXAMPLES", "4")
    data = tmp_path / "reviews.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "text"])
        writer.writerows((i, label, text) for i, (label, text) in enumerate(REVIEWS))
    output = tmp_path / "labeled.csv"
    code = main(
        ["label these reviews by sentiment polarity", "--data", str(data), "--offline",
         "--verifier", "column:label", "--output", str(output), "--out", "out",
         "--sandbox", sandbox_kind, "--voters", "4", "--min-agreement", "0.75",
         "--max-verified", "60%", "--target-accuracy", "1.0"]
    )  # fmt: skip
    assert code == 0
    package = tmp_path / "out" / "sentiment-labeler"
    learned = package / "sentiment_labeler" / "learned" / "tfidf"
    assert (learned / "CURRENT").read_text().strip() == "v1"
    assert (learned / "v1" / "weights.safetensors").is_file()
    rows = read_csv(output)
    assert [row["id"] for row in rows] == [str(i) for i in range(len(REVIEWS))]
    assert {row["source"] for row in rows} <= {"consensus", "vote", "human"}
    assert "human" in {row["source"] for row in rows}
    for row, (gold, _) in zip(rows, REVIEWS, strict=True):
        if row["source"] == "human":
            assert row["label"] == gold
    readme = (package / "README.md").read_text()
    assert "learned voter tfidf" in readme and "estimated accuracy" in readme

    relabeled = tmp_path / "relabeled.csv"
    subprocess.run(
        [sys.executable, "-m", "sentiment_labeler", str(data), "--output", str(relabeled),
         "--progress", "none"],
        check=True, env={**os.environ, "PYTHONPATH": str(package)}, cwd=tmp_path,
    )  # fmt: skip
    again = read_csv(relabeled)
    voters = [c for c in rows[0] if c.startswith(("label_", "prob_")) and c != "label_input"]
    assert voters, "the output names each voter"
    for first, second in zip(rows, again, strict=True):
        assert [first[c] for c in voters] == [second[c] for c in voters]
        assert [first[c] for c in ("confidence", "agreement")] == [
            second[c] for c in ("confidence", "agreement")
        ]
        if first["source"] in ("consensus", "vote"):
            assert first["label"] == second["label"]
    # The vote learned from the verified rows, if it beat the plain vote, ships pinned.
    lock = json.loads((package / "models.lock.json").read_text())
    votes = package / "sentiment_labeler" / "votes"
    if (votes / "CURRENT").is_file():
        version = (votes / "CURRENT").read_text().strip()
        assert lock["learned_vote"]["version"] == version
        assert "learned from" in readme
    else:
        assert "learned_vote" not in lock


def network_can_be_cut() -> bool:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not network_can_be_cut(), reason="unshare -n needs root (CI runs as root)")
def test_with_the_network_cut_the_cli_labels_every_row_and_the_package_agrees(tmp_path):
    data = tmp_path / "reviews.csv"
    data.write_text(
        Path(__file__).resolve().parent.parent.joinpath("examples/reviews.csv").read_text()
    )
    cli = [sys.executable, "-m", "agent", "label these reviews by sentiment", "--data", str(data)]
    cli += ["--offline", "--output", "out.csv", "--verifier", "none"]
    env = {key: value for key, value in os.environ.items() if key != "OPENAI_API_KEY"}
    subprocess.run(["unshare", "-n", *cli], check=True, cwd=tmp_path, env=env, capture_output=True)
    rows = read_csv(tmp_path / "out.csv")
    assert len(rows) == len(read_csv(data)) and all(row["label"] for row in rows)
    package = tmp_path / "generated" / "sentiment-labeler"
    subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "sentiment_labeler", str(data), "--output",
         "again.csv", "--progress", "none"],
        check=True, cwd=tmp_path, env={**env, "PYTHONPATH": str(package)}, capture_output=True,
    )  # fmt: skip
    again = read_csv(tmp_path / "again.csv")
    voters = [c for c in rows[0] if c.startswith(("label_", "prob_"))]
    assert [[r[c] for c in voters] for r in rows] == [[r[c] for c in voters] for r in again]
