"""Discovery end to end against the loopback Hub: the issue's "done when".

``autoannotator-agent "label tweets for toxicity"`` searches the loopback Hub through the real
``huggingface_hub`` client, refuses every trap of the catalog with its reason, maps the opaque
model's labels and flips the inverted model's by pilot agreement, pins each voter's commit, and a
second run with the Hub stopped (the same command, then with ``--model``) reproduces the package.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.support.hub_fixtures import GOOD_TOXICITY_MODELS, TOXIC_WORDS
from tests.support.hub_server import LoopbackHub

pytestmark = pytest.mark.slow

PACKAGE = "toxicity-labeler"
REFUSED = {
    "erin/toxic-gated": "gated",
    "carol/toxic-pickle-only": "no safetensors weights",
    "dave/toxic-remote-code": "needs remote code",
    "frank/toxic-german": "do not include en",
    "kate/offensive-multilabel": "its labels cover only",
    "liam/offensive-noncommercial": "licence cc-by-nc-4.0 is not on the allow-list",
}


def label(args: list[str], capsys) -> str:
    """Run the CLI; its log with the terminal's line wrapping undone."""
    code = main(args)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err
    return " ".join(err.split())


def lock_of(out: Path) -> dict:
    return json.loads((out / PACKAGE / "models.lock.json").read_text())


def spec_of(out: Path) -> str:
    return (out / PACKAGE / "toxicity_labeler" / "spec.py").read_text()


def keyword_truth(text: str) -> str:
    return "toxic" if any(word in text.lower() for word in TOXIC_WORDS) else "non-toxic"


def test_discovery_avoids_traps_maps_opaque_and_inverted_labels_and_reproduces_offline(
    catalog_hub: LoopbackHub, tweets_csv, tmp_path, monkeypatch, sandbox_kind, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    command = ["label tweets for toxicity", "--data", str(tweets_csv), "--sandbox", sandbox_kind]
    command += ["--verifier", "none", "--voters", "4"]

    log = label(command + ["--out", "first", "--output", "first.csv"], capsys)

    lock = lock_of(tmp_path / "first")
    voters = {voter["origin"]: voter for voter in lock["voters"]}
    assert set(voters) == set(GOOD_TOXICITY_MODELS)
    for repo, voter in voters.items():
        assert voter["source"] == f"hub:{repo}"
        assert voter["revision"] == catalog_hub.models[repo].refs["main"]  # pinned
        assert set(voter["files"]) == {
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
        }
    assert voters["acme/toxic-bert-tiny"]["label_map"] == {
        "non-toxic": "non-toxic",
        "toxic": "toxic",
    }
    # config.json says class 1 is "toxic"; the pilot showed it is not, so the map is flipped.
    assert voters["judy/offensive-inverted"]["label_map"] == {
        "non-toxic": "toxic",
        "toxic": "non-toxic",
    }
    assert voters["ivan/offensive-label-ids"]["label_map"] == {
        "LABEL_0": "toxic",
        "LABEL_1": "non-toxic",
    }
    assert "its label names are inverted" in log

    # The flipped and remapped votes are right: they agree with the keywords the voters learnt.
    rows = list(csv.DictReader(open(tmp_path / "first.csv", newline="", encoding="utf-8")))
    for repo in ("judy/offensive-inverted", "ivan/offensive-label-ids"):
        column = f"label_{voters[repo]['name']}"
        right = sum(row[column] == keyword_truth(row["text"]) for row in rows)
        assert right / len(rows) >= 0.8, (repo, right)
    readme = (tmp_path / "first" / PACKAGE / "README.md").read_text()
    judy_note = next(line for line in readme.splitlines() if "judy/offensive-inverted" in line)
    assert "inverted" in judy_note
    for repo, reason in REFUSED.items():
        assert any(repo in line and reason in line for line in readme.splitlines()), repo
    assert "gina/toxic-generator" not in readme  # the search asks for text classifiers only
    # Labels are read from config.json before any weights are fetched.
    fetched = {r.path for r in catalog_hub.requests if "/resolve/" in r.path}
    assert not [path for path in fetched if path.endswith(".safetensors") and "kate/" in path]
    assert any(path.startswith("/kate/offensive-multilabel/") for path in fetched)

    catalog_hub.stop()
    log = label(command + ["--out", "replayed"], capsys)

    assert "the Hub is unreachable; replaying" in log
    assert lock_of(tmp_path / "replayed") == lock
    assert spec_of(tmp_path / "replayed") == spec_of(tmp_path / "first")

    by_model = [argument for voter in lock["voters"] for argument in ("--model", voter["origin"])]
    label(command + by_model + ["--out", "named"], capsys)

    assert lock_of(tmp_path / "named") == lock
    assert spec_of(tmp_path / "named") == spec_of(tmp_path / "first")
