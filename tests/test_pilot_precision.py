"""The CPU precision of each transformer voter is decided once, in the agent's pilot.

The pilot runs the labeler with ``--quantize measure`` on its rows; the precision it reports
for each voter reaches the chosen candidates, so the spec and ``models.lock.json`` pin it and
the selection notes say it; the emitted labeler then applies it without measuring.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.dataset import iter_rows
from tests.support.packages import emit_package, module_of

pytestmark = pytest.mark.slow


def expected_precision(model_folder: Path, texts: list[str]) -> str:
    """What the pilot must decide, computed here: int8 when the int8 copy's labels agree with
    fp32 on at least 99.5% of the pilot rows."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from templates.labeler.pkg.transformer import int8_copy

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForSequenceClassification.from_pretrained(model_folder).eval()
    quantized = int8_copy(model)
    labels = []
    with torch.inference_mode():
        for candidate in (model, quantized):
            batches = [tokenizer([text], truncation=True, return_tensors="pt") for text in texts]
            labels.append(np.array([int(candidate(**b).logits.argmax()) for b in batches]))
    return "int8" if float(np.mean(labels[0] == labels[1])) >= 0.995 else "fp32"


def spec_precisions(package: Path) -> dict[str, str | None]:
    """Each voter's ``precision=`` in the rendered spec.py, read from its syntax tree."""
    tree = ast.parse((package / module_of(package) / "spec.py").read_text(encoding="utf-8"))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "VoterConfig":
            keywords = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            found[keywords["name"]] = keywords.get("precision")
    return found


def fragile_copy(source: Path, target: Path, texts: list[str]) -> Path:
    """A copy of a tiny classifier whose two logits almost tie on ``texts``, one way or the
    other: int8 rounds the two classifier rows to the same values, so its labels all fall on
    one side while fp32's split, and the pilot must keep it in fp32."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    shutil.copytree(source, target)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(source).eval()
    with torch.inference_mode():
        pooled = torch.cat(
            [model.bert(**tokenizer([t], return_tensors="pt")).pooler_output for t in texts]
        )
    centred = pooled - pooled.mean(dim=0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    with torch.no_grad():
        weight, bias = model.classifier.weight, model.classifier.bias
        weight[1] = weight[0] + 1e-5 * direction
        bias[1] = bias[0] - 1e-5 * float(direction @ pooled.mean(dim=0))
    model.save_pretrained(target)
    return target


def test_the_pilot_decides_each_voters_precision_and_the_package_pins_it(
    tmp_path, toxic_voters, tweets_csv, capsys
):
    models = []
    texts = [row["text"] for row in iter_rows(str(tweets_csv))]
    fragile = fragile_copy(toxic_voters["plain"], tmp_path / "fragile", texts)
    for path in [toxic_voters["plain"], toxic_voters["shouty"], fragile]:
        models += ["--model", str(path)]
    package = emit_package(
        tmp_path, "toxicity-labeler", "label tweets for toxicity", tweets_csv,
        "--sandbox", "none", "--verifier", "none", *models,
    )  # fmt: skip
    log = capsys.readouterr().err

    pilot_input = next((tmp_path / "runs").glob("*/pilot/input.jsonl"))
    texts = [row["text"] for row in iter_rows(str(pilot_input))]
    lock = json.loads((package / "models.lock.json").read_text(encoding="utf-8"))
    pinned = {voter["name"]: voter.get("precision") for voter in lock["voters"]}
    origins = {voter["name"]: Path(voter["origin"]) for voter in lock["voters"]}
    assert len(pinned) == 3 and set(pinned.values()) == {"int8", "fp32"}
    assert pinned[next(n for n, o in origins.items() if o == fragile)] == "fp32"
    # The others' precision recomputed here, a text at a time. Not the fragile copy's: its
    # logits tie to 1e-5, so which side fp32 puts a text on depends on the order of the sums
    # (batch shapes, thread count); the pilot's own measurement keeps it in fp32 (above).
    robust = [name for name in pinned if origins[name] != fragile]
    assert {name: pinned[name] for name in robust} == {
        name: expected_precision(origins[name], texts) for name in robust
    }
    assert spec_precisions(package) == pinned
    shown = " ".join(log.split())  # the run log wraps its lines
    for name, precision in pinned.items():
        note = rf"{name} \([^)]*\): agreed [^;]*; selected, {precision} on CPU \(int8 labels "
        assert re.search(note + rf"agree with fp32 on [\d.]+% of {len(texts)} rows", shown)

    events = relabel_events(package, tweets_csv, tmp_path / "relabeled.csv")
    decisions = {e["voter"]: e for e in events if e["event"] == "quantize"}
    assert {name: e["precision"] for name, e in decisions.items()} == pinned
    assert all(e["rows"] == 0 and e["agreement"] is None for e in decisions.values())
    assert {e["reason"] for e in decisions.values()} == {"pinned at build time"}


def relabel_events(package: Path, data: Path, target: Path) -> list[dict]:
    """The package's labeler, as a user runs it (default ``--quantize``): its JSON events."""
    result = subprocess.run(
        [sys.executable, "-m", module_of(package), str(data), "--output", str(target),
         "--progress", "json", "--device", "cpu"],
        check=True, env={**os.environ, "PYTHONPATH": str(package)}, capture_output=True,
        text=True,
    )  # fmt: skip
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
