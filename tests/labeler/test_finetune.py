"""The package's ``finetune`` module on tiny real models: train, gate, promote or roll back.

A package is emitted once with one tiny toxicity voter; each test copies it and runs
``python -m toxicity_labeler.finetune`` and the labeler in fresh processes, as a user would.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.datasets import read_csv, write_csv
from tests.support.datasets import toxic_sentences as sentences
from tests.support.packages import copy_package, emit_package

pytestmark = pytest.mark.slow

MODULE = "toxicity_labeler"


def voter_of(package: Path) -> str:
    """The package's one voter (named after its model's folder, which the session numbers)."""
    lock = json.loads((package / "models.lock.json").read_text(encoding="utf-8"))
    (voter,) = [entry["name"] for entry in lock["voters"]]
    return voter


def write_examples(path: Path, rows, source: str = "verified", flip: bool = False) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for text, label in rows:
            if flip:
                label = "non-toxic" if label == "toxic" else "toxic"
            handle.write(json.dumps({"text": text, "label": label, "source": source}) + "\n")
    return path


@pytest.fixture(scope="module")
def emitted(tmp_path_factory, toxic_voters) -> Path:
    folder = tmp_path_factory.mktemp("finetune-package")
    data = write_csv(folder / "tweets.csv", ["text"], [[text] for text, _ in sentences(12, seed=9)])
    args = ["--sandbox", "none", "--verifier", "none", "--model", str(toxic_voters["plain"])]
    return emit_package(folder, "toxicity-labeler", "label tweets for toxicity", data, *args)


@pytest.fixture
def package(emitted: Path, tmp_path: Path) -> Path:
    return copy_package(emitted, tmp_path)


def run_module(package: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=package,
        env={"PYTHONPATH": str(package), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
    )
    if check:
        assert completed.returncode == 0, completed.stderr
    return completed


def finetune(package: Path, examples: Path, holdout: Path, output: Path, *extra: str) -> dict:
    completed = run_module(
        package, f"{MODULE}.finetune", str(examples), "--holdout", str(holdout),
        "--output", str(output), "--epochs", "15", "--learning-rate", "0.003",
        "--batch-size", "8", *extra,
    )  # fmt: skip
    events = [json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{")]
    return next(e for e in events if e["event"] == "finetune")


def label(package: Path, rows, target: Path) -> list[dict[str, str]]:
    source = write_csv(target.with_suffix(".input.csv"), ["text"], [[text] for text, _ in rows])
    run_module(package, MODULE, str(source), "--output", str(target), "--progress", "none")
    return read_csv(target)


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.name != "adapter.json"
    }


def test_a_stage_that_helps_is_promoted_and_the_package_labels_with_it(package, tmp_path):
    voter = voter_of(package)
    train = write_examples(tmp_path / "verified.jsonl", sentences(120, seed=1))
    holdout = tmp_path / "holdout.jsonl"
    before = label(package, sentences(40, seed=2), tmp_path / "before.csv")
    result = finetune(package, train, holdout, tmp_path / "adapters", "--install")

    (stage,) = result["stages"]
    assert stage["voter"] == voter and stage["promoted"] and stage["version"] == "v1"
    assert stage["holdout_accuracy_after"] > stage["holdout_accuracy_before"]
    assert stage["holdout_rows"] == 24 and stage["verified_rows"] == 96
    assert holdout.is_file() and sum(1 for _ in open(holdout)) == 24
    installed = package / MODULE / "adapters" / voter
    assert (installed / "CURRENT").read_text().strip() == "v1"
    assert sorted(p.name for p in (installed / "v1").iterdir()) == [
        "adapter.json", "adapter_config.json", "adapter_model.safetensors",
    ]  # fmt: skip
    record = json.loads((installed / "v1" / "adapter.json").read_text())
    assert record["target_modules"] == ["query", "value"]
    assert (
        record["files"]["adapter_model.safetensors"]
        == digest(installed / "v1")["adapter_model.safetensors"]
    )

    # Reloaded in fresh processes, the package labels with the merged adapter, identically
    # each time, and its accuracy on the held-out rows is the one the gate measured.
    test_rows = sentences(40, seed=2)
    after = label(package, test_rows, tmp_path / "after.csv")
    again = label(package, test_rows, tmp_path / "again.csv")
    assert after == again

    def accuracy(rows):
        return sum(r[f"label_{voter}"] == g for r, (_, g) in zip(rows, test_rows, strict=True)) / 40

    assert accuracy(after) > accuracy(before)
    held = [json.loads(line) for line in open(holdout)]
    held_rows = label(package, [(h["text"], h["label"]) for h in held], tmp_path / "held.csv")
    measured = sum(r[f"label_{voter}"] == h["label"] for r, h in zip(held_rows, held, strict=True))
    assert measured / len(held) == pytest.approx(stage["holdout_accuracy_after"], abs=1e-4)


def test_a_stage_that_hurts_is_rolled_back_and_outputs_do_not_change(package, tmp_path):
    voter = voter_of(package)
    holdout = tmp_path / "holdout.jsonl"
    good = write_examples(tmp_path / "good.jsonl", sentences(120, seed=1))
    finetune(package, good, holdout, tmp_path / "first", "--install")
    test_rows = sentences(40, seed=2)
    before = label(package, test_rows, tmp_path / "before.csv")

    # The same kind of rows with every label flipped: the frozen holdout exposes it.
    flipped = write_examples(tmp_path / "flipped.jsonl", sentences(120, seed=3), flip=True)
    frozen = holdout.read_bytes()
    result = finetune(package, flipped, holdout, tmp_path / "second", "--install")
    (stage,) = result["stages"]
    assert not stage["promoted"] and stage["version"] is None
    assert stage["holdout_accuracy_after"] < stage["holdout_accuracy_before"]
    assert result["promoted"] == {}
    assert holdout.read_bytes() == frozen
    log = [json.loads(line) for line in open(tmp_path / "second" / "stages.jsonl")]
    assert [entry["promoted"] for entry in log] == [False]
    assert (package / MODULE / "adapters" / voter / "CURRENT").read_text().strip() == "v1"
    assert not (tmp_path / "second" / voter).exists()
    assert label(package, test_rows, tmp_path / "after.csv") == before


def test_stages_continue_from_the_promoted_adapter_and_are_deterministic(package, tmp_path):
    voter = voter_of(package)
    rows = sentences(120, seed=1) + sentences(60, seed=4)
    examples = write_examples(tmp_path / "verified.jsonl", rows)
    consensus = tmp_path / "consensus.jsonl"
    write_examples(consensus, sentences(30, seed=5), source="consensus")
    with open(examples, "a", encoding="utf-8") as handle:
        handle.write(consensus.read_text())
    runs = []
    for name in ("a", "b"):
        holdout = tmp_path / f"holdout-{name}.jsonl"
        runs.append(
            finetune(
                package, examples, holdout, tmp_path / name, "--stage-size", "80",
                "--replay-ratio", "0.25", "--epochs", "8",
            )
        )  # fmt: skip
    first, second = runs
    assert [s["stage"] for s in first["stages"]] == [1, 2]  # 144 training rows, stages of 80
    assert [s["verified_rows"] for s in first["stages"]] == [80, 64]
    assert [s["replay_rows"] for s in first["stages"]] == [20, 16]
    assert first["stages"][0]["promoted"]
    for entry in first["stages"][1:]:  # each stage is judged against the one before it
        assert entry["holdout_accuracy_before"] == first["stages"][0]["holdout_accuracy_after"]

    def without_timings(result: dict) -> list[dict]:
        timing = {"seconds", "samples_per_s"}
        return [{k: v for k, v in s.items() if k not in timing} for s in result["stages"]]

    assert without_timings(first) == without_timings(second)
    assert first["promoted"] == second["promoted"]
    for version in first["promoted"].values():
        assert digest(tmp_path / "a" / voter / version) == digest(tmp_path / "b" / voter / version)


def test_bad_examples_exit_2_with_one_line_and_write_nothing(package, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "x", "label": "spam", "source": "verified"}) + "\n")
    completed = run_module(
        package, f"{MODULE}.finetune", str(bad), "--holdout", str(tmp_path / "h.jsonl"),
        "--output", str(tmp_path / "out"), check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [
        f"error: {bad}: label 'spam' is not one of ('non-toxic', 'toxic')"
    ]
    few = write_examples(tmp_path / "few.jsonl", sentences(20, seed=1))
    completed = run_module(
        package, f"{MODULE}.finetune", str(few), "--holdout", str(tmp_path / "h.jsonl"),
        "--output", str(tmp_path / "out"), check=False,
    )  # fmt: skip
    assert completed.returncode == 2 and "too few" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "h.jsonl").exists() and not (tmp_path / "out").exists()
