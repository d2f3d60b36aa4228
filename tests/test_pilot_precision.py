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
    """A copy of a tiny classifier whose fp32 labels split ``texts`` about in half while its
    int8 labels all fall on one side, so the pilot must keep it in fp32.

    The classifier's first row is snapped to its int8 grid (per-row scale s = max |w| / 127)
    and the second is the first plus 0.3 s along the texts' main direction, leaving the
    largest entries alone: both rows quantize to the same integers with the same scale, so
    int8 logits differ by the bias difference only (one side for every text), while fp32
    logits differ by 0.3 s times each text's offset along that direction, centred by the
    bias: margins of about 1e-4, far above float rounding whatever the order of the sums."""
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
        scale = weight[0].abs().max() / 127
        weight[0] = torch.round(weight[0] / scale) * scale
        direction[weight[0].abs() >= 126.5 * scale] = 0
        step = 0.3 * scale * direction / direction.abs().max()
        weight[1] = weight[0] + step
        bias[1] = bias[0] - float(step @ pooled.mean(dim=0))
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
    # Every voter's precision recomputed here, a text at a time.
    assert pinned == {name: expected_precision(origins[name], texts) for name in pinned}
    assert spec_precisions(package) == pinned
    shown = " ".join(log.split())  # the run log wraps its lines
    for name, precision in pinned.items():
        note = rf"{name} \([^)]*\): agreed [^;]*; selected, {precision} on CPU \(int8 labels "
        assert re.search(note + rf"agree with fp32 on [\d.]+% of {len(texts)} rows", shown)
    fragile_name = next(n for n, o in origins.items() if o == fragile)
    agreement = re.search(rf"{fragile_name} \([^)]*\):.*? agree with fp32 on ([\d.]+)%", shown)
    assert 20 <= float(agreement.group(1)) <= 80  # int8 on one side, fp32's split

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
