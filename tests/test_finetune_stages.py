"""Continual learning in the agent: ``--finetune-stages`` and ``autoannotator-agent finetune``.

Tiny real voters, the column verifier (gold labels settle each row a round verifies), the
real sandbox: stages run inside the rounds (verify_round -> finetune_voters ->
learn_voters), each trains LoRA adapters in the package's own ``finetune`` module on the
round's verified rows less the held-out ones, the gate keeps or rolls back each voter, the
data is relabeled, and the emitted package (adapters merged at load) relabels the data
exactly as the agent did.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import commands
from agent.cli import main
from tests.support.datasets import read_csv, read_jsonl, write_csv
from tests.support.datasets import toxic_sentences as sentences
from tests.support.packages import relabel

pytestmark = pytest.mark.slow


@pytest.fixture
def gold_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "tweets.csv", ["text", "gold"], sentences(160, seed=11))


@pytest.fixture(autouse=True)
def quick_training(monkeypatch):
    """Hyperparameters that teach the tiny models in seconds."""
    monkeypatch.setenv("AUTOANNOTATOR_FINETUNE_EPOCHS", "15")
    monkeypatch.setenv("AUTOANNOTATOR_FINETUNE_LEARNING_RATE", "0.003")


def label_args(data: Path, toxic_voters: dict[str, Path], sandbox_kind: str) -> list[str]:
    args = ["label tweets for toxicity", "--data", str(data), "--offline", "--yes", "--json"]
    args += ["--sandbox", sandbox_kind, "--verifier", "column:gold", "--output", "labeled.csv"]
    # Rounds that give the stages enough rows: 20 held-out pilot rows, then rounds of 60 and
    # 120 rows (a tenth held out); a stage needs 50 verified rows that are not held out.
    args += ["--pilot-verify", "20", "--round-rows", "60", "--target-accuracy", "none"]
    args += ["--min-round-yield", "0"]
    for path in toxic_voters.values():
        args += ["--model", str(path)]
    return args


def assert_relabels_identically(package: Path, data: Path, output: Path, tmp_path: Path) -> None:
    rows = read_csv(output)
    again = relabel(package, data, tmp_path / "again.csv")
    voters = [c for c in rows[0] if c.startswith(("label_", "prob_"))]
    assert [[r[c] for c in voters] for r in rows] == [[r[c] for c in voters] for r in again]


def test_stages_learn_gate_and_relabel_and_the_package_pins_its_adapters(
    tmp_path, monkeypatch, capsys, toxic_voters, sandbox_kind, gold_csv
):
    monkeypatch.chdir(tmp_path)
    args = label_args(gold_csv, toxic_voters, sandbox_kind) + ["--finetune-stages", "2"]
    args += ["--max-verified", "none"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    stages = summary["finetune"]
    assert 1 <= len(stages) <= 2
    first = stages[0]
    assert first["stage"] == 1 and first["verified_rows"] > 0 and first["holdout_rows"] >= 10
    assert first["escalated_after"] is not None
    for stage in stages:
        for voter in stage["voters"]:  # the gate: a kept adapter never scores worse
            if voter["version"] is not None:
                assert voter["holdout_after"] >= voter["holdout_before"]
    promoted = {v["voter"]: v["version"] for s in stages for v in s["voters"] if v["version"]}
    assert promoted, "at least one voter learned from the verified rows"

    run_dir = next((tmp_path / ".autoannotator" / "runs").iterdir())
    passes = sorted(p.name for p in (run_dir / "labeled").glob("pass-*"))
    assert passes == [f"pass-{n}" for n in range(1, len(stages) + 2)]  # one stage per round
    heldout = {int(row) for row in json.loads((run_dir / "heldout.json").read_text())["rows"]}
    assert heldout, "the pilot's verified rows and each round's slice are held out"
    holdout = read_jsonl(run_dir / "finetune" / "holdout.jsonl")
    assert len(holdout) == first["holdout_rows"]
    for stage in stages:  # each stage trains on the rows verified since the last, held-out ones
        examples = read_jsonl(run_dir / "finetune" / f"stage-{stage['stage']}" / "examples.jsonl")
        verified = [e for e in examples if e["source"] == "verified"]
        held = len(holdout) if stage["stage"] == 1 else 0  # carved from the first stage's rows
        assert stage["verified_rows"] == len(verified) - held
        assert not {e["row"] for e in verified} & heldout, "stages never train on held-out rows"
    first_rows = read_jsonl(run_dir / "finetune" / "stage-1" / "examples.jsonl")
    assert {h["text"] for h in holdout} <= {e["text"] for e in first_rows}

    package = tmp_path / "generated" / "toxicity-labeler"
    lock = json.loads((package / "models.lock.json").read_text())
    manifest = json.loads((package / "manifest.json").read_text())
    for voter in lock["voters"]:
        if voter["name"] in promoted:
            version = promoted[voter["name"]]
            folder = package / "toxicity_labeler" / "adapters" / voter["name"]
            assert (folder / "CURRENT").read_text().strip() == version
            assert voter["adapter"]["version"] == version
            assert voter["adapter"]["path"] == f"adapters/{voter['name']}/{version}"
        else:
            assert "adapter" not in voter
    assert [v.get("adapter") for v in manifest["package"]["voters"]] == [
        v.get("adapter") for v in lock["voters"]
    ]
    assert any(r.startswith("peft==") for r in manifest["package"]["requirements"])
    assert "peft==" in (package / "pyproject.toml").read_text()

    rows = read_csv(tmp_path / "labeled.csv")
    gold = [label for _, label in sentences(160, seed=11)]
    for row, label in zip(rows, gold, strict=True):
        if row["source"] == "human":
            assert row["label"] == label
    assert_relabels_identically(package, gold_csv, tmp_path / "labeled.csv", tmp_path)


def test_finetune_command_continues_a_finished_run(
    tmp_path, monkeypatch, capsys, toxic_voters, sandbox_kind, gold_csv
):
    monkeypatch.chdir(tmp_path)
    # 80 rows: the 20 pilot rows and a round of 60, 54 of them not held out (a stage needs 50).
    assert main(label_args(gold_csv, toxic_voters, sandbox_kind) + ["--max-verified", "80"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["finetune"] == []
    run_id = next((tmp_path / ".autoannotator" / "runs").iterdir()).name

    noted = []  # the re-emitted package's image is noted as after a run (a no-op here)
    original = commands.note_package_image

    def note(context, result, run_dir, noted_run):
        noted.append((result.package_path, run_dir.name, noted_run))
        original(context, result, run_dir, noted_run)

    monkeypatch.setattr(commands, "note_package_image", note)
    assert main(["finetune", run_id, "--stages", "1", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert noted == [(after["package"], run_id, run_id)]
    (stage,) = after["finetune"]
    assert stage["escalated_before"] == before["disagreements"]
    assert stage["escalated_after"] == after["disagreements"]
    request = json.loads(
        (tmp_path / ".autoannotator" / "runs" / run_id / "request.json").read_text()
    )
    assert request["settings"]["finetune_stages"] == 1
    package = tmp_path / "generated" / "toxicity-labeler"
    assert_relabels_identically(package, gold_csv, tmp_path / "labeled.csv", tmp_path)

    assert main(["finetune", "no-such-run"]) != 0
    assert "no run 'no-such-run'" in capsys.readouterr().err
