"""``--quantize pinned``, the default: each voter's CPU precision as the build pinned it.

Nothing is measured (no int8 check, no fp32 run beside the int8 one), so a text gets the same
label in any file; ``auto``, ``measure``, ``int8`` and ``none`` still override the pins, and
the feature cache remembers what each labeling ran so ``learn`` computes the same.
"""

from __future__ import annotations

import csv
import importlib
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from templates.labeler.pkg import engine, precision, transformer
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.engine import Labeler, label_file
from templates.labeler.pkg.feature_cache import FeatureCache
from templates.labeler.pkg.voters import Runtime
from tests.support.packages import bundle_labeler
from tests.support.tiny_models import TOXIC_EXAMPLES

LABELS = ("non-toxic", "toxic")
MAP = {"non-toxic": "non-toxic", "toxic": "toxic"}
PINS = {"plain": "int8", "shouty": "fp32", "loose": None}
TEXTS = [text for text, _ in TOXIC_EXAMPLES] + [
    "you are so stupid and I hate this",
    "a friendly hello to everyone at the park today",
    "idiot",
]


@pytest.fixture(scope="module")
def models(toxic_voters, tmp_path_factory) -> Path:
    """Three tiny classifiers under one folder, named as the spec's voters."""
    root = tmp_path_factory.mktemp("pinned-models")
    for name, source in zip(PINS, ("plain", "shouty", "plain"), strict=True):
        shutil.copytree(toxic_voters[source], root / name)
    return root


def spec(folder: str = "") -> LabelerSpec:
    """The three voters, pinned as :data:`PINS` says; their models under ``folder``."""
    shouty = {"NOT_OFFENSIVE": "non-toxic", "OFFENSIVE": "toxic"}
    voters = tuple(
        VoterConfig(
            name,
            "hf-sequence-classifier",
            f"bundled:{folder}{name}",
            "r",
            shouty if name == "shouty" else MAP,
            precision=pin,
        )
        for name, pin in PINS.items()
    )
    return LabelerSpec("pinned-labeler", "label toxicity", LABELS, "text", 1.0, voters)


def labeler(models: Path, quantize: str = "pinned", cache: Path | None = None) -> Labeler:
    runtime = Runtime(models, "cpu", 4, None if cache is None else FeatureCache(cache))
    return Labeler(spec(), runtime, quantize)


def write_table(path: Path, texts: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(texts))
    return path


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def int8_layers(model) -> int:
    return sum(hasattr(module, "weight_int8") for module in model.modules())


def count_predictions(subject: Labeler) -> dict[str, list[int]]:
    """Rows each voter's model is run on, call by call."""
    calls: dict[str, list[int]] = {voter.config.name: [] for voter in subject.voters}
    for voter in subject.voters:

        def counted(texts, voter=voter, predict=voter.predict):
            calls[voter.config.name].append(len(texts))
            return predict(texts)

        voter.predict = counted
    return calls


def label(subject: Labeler, table: Path, target: Path, chunk_size: int = 50, **options):
    return label_file(
        subject, table, target, text_column="text", chunk_size=chunk_size, min_agreement=1.0,
        **options,
    )  # fmt: skip


def test_pinned_applies_the_build_precisions_and_measures_nothing(models, tmp_path, monkeypatch):
    def no_check(*args):
        raise AssertionError("pinned must not measure int8 against fp32")

    monkeypatch.setattr(engine, "try_int8", no_check)
    subject = labeler(models)
    calls = count_predictions(subject)
    decisions = []
    table = write_table(tmp_path / "input.csv", [TEXTS[i % len(TEXTS)] for i in range(300)])

    label(subject, table, tmp_path / "out.csv", chunk_size=100, on_int8=decisions.append)

    assert [(d.voter, d.int8, d.rows, d.agreement) for d in decisions] == [
        ("plain", True, 0, None),
        ("shouty", False, 0, None),
    ]
    assert {d.reason for d in decisions} == {precision.PINNED}
    assert subject.precisions() == {"plain": "int8", "shouty": "fp32", "loose": "fp32"}
    assert [int8_layers(v.model) > 0 for v in subject.voters] == [True, False, False]
    # Each row through each model once: no sample run twice before labeling.
    assert calls == {name: [100, 100, 100] for name in PINS}


def test_a_text_gets_the_same_label_in_two_different_files(models, tmp_path):
    disputed = "you are so stupid and I hate this"
    first = write_table(tmp_path / "a.csv", [disputed] + TEXTS * 30)
    second = write_table(tmp_path / "b.csv", ["hello there"] * 250 + [disputed])

    label(labeler(models), first, tmp_path / "a.out.csv")
    label(labeler(models), second, tmp_path / "b.out.csv")

    one, other = read(tmp_path / "a.out.csv")[0], read(tmp_path / "b.out.csv")[-1]
    assert one["text"] == other["text"] == disputed
    del one["id"], other["id"]
    assert one == other
    # ... and it is the int8 model's answer for the voter pinned to int8.
    int8 = labeler(models, "int8")
    int8.settle_precision()
    expected = int8.voters[0].predict([disputed])[0]
    assert float(one["prob_plain"]) == pytest.approx(float(expected.max()), abs=1e-6)


@pytest.mark.parametrize(
    ("quantize", "int8_voters", "measured_rows"),
    [("none", [], None), ("int8", ["plain", "shouty", "loose"], 0), ("auto", None, 50)],
)
def test_other_modes_override_the_pins(models, tmp_path, quantize, int8_voters, measured_rows):
    subject = labeler(models, quantize)
    decisions = []
    table = write_table(tmp_path / "input.csv", [TEXTS[i % len(TEXTS)] for i in range(120)])

    label(subject, table, tmp_path / "out.csv", on_int8=decisions.append)

    if measured_rows is None:
        assert decisions == []
    else:
        assert [(d.voter, d.rows) for d in decisions] == [(n, measured_rows) for n in PINS]
    if int8_voters is None:  # auto: whatever it measured, not the pins
        int8_voters = [d.voter for d in decisions if d.int8]
        assert all(d.agreement is not None for d in decisions)
    running = [v.config.name for v in subject.voters if int8_layers(v.model)]
    assert running == int8_voters


def test_measure_checks_every_row_of_a_small_file_and_labels_them_once_more_at_most(
    models, tmp_path
):
    subject = labeler(models, "measure")
    calls = count_predictions(subject)
    decisions = []
    table = write_table(tmp_path / "input.csv", TEXTS)

    label(subject, table, tmp_path / "out.csv", on_int8=decisions.append)

    assert [(d.voter, d.rows) for d in decisions] == [(name, len(TEXTS)) for name in PINS]
    for decision in decisions:
        assert decision.int8 == (decision.agreement >= precision.INT8_MIN_AGREEMENT)
        assert decision.reason.startswith("int8 labels agree with fp32 on ")
    # fp32 and int8 on the rows, and the labeling takes what the kept model gave.
    assert calls == {name: [len(TEXTS), len(TEXTS)] for name in PINS}
    reference = labeler(models, "none")
    for decision, voter in zip(decisions, reference.voters, strict=True):
        if decision.int8:
            voter.model = transformer.int8_copy(voter.model)
    expected = reference.label_texts(TEXTS, 1.0)
    assert [{k: v for k, v in row.items() if k.startswith("label")} for row in expected] == [
        {k: v for k, v in row.items() if k.startswith("label")}
        for row in read(tmp_path / "out.csv")
    ]


def test_measure_on_cuda_records_fp32_for_the_cpu(models):
    subject = labeler(models, "measure")
    subject.runtime = replace(subject.runtime, device="cuda")  # the models stay where they are
    decisions = subject.settle_precision(TEXTS)
    assert [(d.voter, d.int8) for d in decisions] == [(name, False) for name in PINS]
    assert {d.reason for d in decisions} == {precision.NOT_MEASURED_ON_CUDA}
    assert not any(int8_layers(v.model) for v in subject.voters)


def test_learn_replays_the_precision_the_last_labeling_ran_at(models, tmp_path):
    table = write_table(tmp_path / "input.csv", TEXTS)
    cache = tmp_path / "cache"

    def replayed() -> dict[str, str]:
        subject = labeler(models, cache=cache)
        subject.replay_precision()
        return {name: p for name, p in subject.precisions().items() if name != "loose"}

    assert replayed() == {"plain": "int8", "shouty": "fp32"}  # nothing recorded: the pins
    label(labeler(models, "none", cache), table, tmp_path / "none.csv")
    assert replayed() == {"plain": "fp32", "shouty": "fp32"}
    label(labeler(models, "int8", cache), table, tmp_path / "int8.csv")
    assert replayed() == {"plain": "int8", "shouty": "int8"}
    label(labeler(models, cache=cache), table, tmp_path / "pinned.csv")
    assert replayed() == {"plain": "int8", "shouty": "fp32"}


@pytest.fixture
def cli(models, tmp_path, monkeypatch):
    """A package like a rendered one whose spec pins the precisions."""
    bundle_labeler(tmp_path, "pinned_labeler", models, [(n, "x", MAP) for n in PINS], LABELS)
    text = "from .config import LabelerSpec, VoterConfig\nSPEC = " + repr(spec("models/"))
    (tmp_path / "pinned_labeler" / "spec.py").write_text(text + "\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield importlib.import_module("pinned_labeler.cli")
    finally:
        for name in [name for name in sys.modules if name.startswith("pinned_labeler")]:
            del sys.modules[name]


def test_cli_default_is_pinned_and_says_so(cli, tmp_path, capsys):
    table = write_table(tmp_path / "input.csv", TEXTS * 20)
    assert cli.build_parser(cli.load_spec()).get_default("quantize") == "pinned"

    assert cli.main([str(table), "-o", str(tmp_path / "out.csv"), "--progress", "json"]) == 0
    events = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    quantize = [e for e in events if e["event"] == "quantize"]
    assert [(e["voter"], e["precision"], e["rows"]) for e in quantize] == [
        ("plain", "int8", 0),
        ("shouty", "fp32", 0),
    ]

    assert cli.main([str(table), "-o", str(tmp_path / "bar.csv"), "--progress", "bar"]) == 0
    err = capsys.readouterr().err
    assert "voter plain: int8 (pinned at build time)" in err
    assert "voter shouty: fp32 (pinned at build time)" in err


def test_cli_measure_is_for_the_local_engine(cli, tmp_path, capsys):
    table = write_table(tmp_path / "input.csv", TEXTS)
    args = [str(table), "-o", str(tmp_path / "out.csv"), "--quantize", "measure"]
    assert cli.main(args + ["--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: --quantize measure works with --engine local only"
    assert not (tmp_path / "out.csv").exists()


def test_the_probabilities_of_the_check_are_those_the_labeling_would_compute(models):
    """measure reuses what it computed only because it is exactly what labeling computes."""
    subject = labeler(models, "measure")
    subject.settle_precision(TEXTS)
    reused = subject.probabilities(TEXTS)
    recomputed = subject.probabilities(TEXTS)
    for first, second in zip(reused, recomputed, strict=True):
        np.testing.assert_array_equal(first, second)
