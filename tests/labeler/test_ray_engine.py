"""``--engine ray`` on a local Ray cluster of 2 CPUs: the single-process engine's labels, and no
row lost or written twice when a worker is killed mid-run."""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
import signal
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from templates.labeler.pkg import kinds, tabular
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.engine import Labeler, label_file
from templates.labeler.pkg.ray_engine import RayOptions, label_file_ray
from templates.labeler.pkg.voters import Runtime, VoterLoadError
from tests.support.packages import bundle_labeler
from tests.support.tiny_models import CORPUS, TOXIC_EXAMPLES

ROOT = Path(__file__).resolve().parents[2]
IMPORT_ROOT = Path(__file__).resolve().parents[__name__.count(".")]
"""The folder this module is imported from (pytest names it ``labeler.test_ray_engine``)."""
LABELS = ("non-toxic", "toxic")
PID_FOLDER = "RAY_ENGINE_TEST_PID_FOLDER"
"""Environment variable (set on the Ray workers only): where slow fake voters note their pid."""
VOTERS = (
    ("plain", {"non-toxic": "non-toxic", "toxic": "toxic"}),
    ("shouty", {"NOT_OFFENSIVE": "non-toxic", "OFFENSIVE": "toxic"}),
    ("three_way", {"hate": "toxic", "offensive": "toxic", "neither": "non-toxic"}),
)


class SlowFakeVoter:
    """Probabilities from a hash of (voter, text), 100 ms a call; notes its process id."""

    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.config = config
        if os.environ.get(PID_FOLDER):
            (Path(os.environ[PID_FOLDER]) / str(os.getpid())).touch()

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        time.sleep(0.1)
        scores = [zlib.crc32(f"{self.config.name}|{text}".encode()) % 1000 for text in texts]
        positive = np.array([(score + 0.5) / 1000 for score in scores])
        return np.stack([1 - positive, positive], axis=1)


def register_slow_fake_voter() -> None:
    """Run in every Ray worker as it starts: the fake voter kind exists there too."""
    kinds.ADAPTERS["slow-fake"] = f"{__name__}:SlowFakeVoter"


@pytest.fixture(scope="module")
def models(toxic_voters, tmp_path_factory) -> Path:
    """The three tiny voters, bundled under one folder as in a package."""
    root = tmp_path_factory.mktemp("ray-models")
    for name, path in toxic_voters.items():
        shutil.copytree(path, root / name)
    return root


@pytest.fixture(scope="module")
def package(models, tmp_path_factory) -> Path:
    """A labeler package like a rendered one (``ray_labeler``), with the tiny voters bundled."""
    root = tmp_path_factory.mktemp("ray-package")
    voters = [(name, "hf-sequence-classifier", label_map) for name, label_map in VOTERS]
    bundle_labeler(root, "ray_labeler", models, voters, LABELS)
    return root


@pytest.fixture(scope="module")
def ray_cluster(package, tmp_path_factory) -> Path:
    """A local Ray cluster of 2 CPUs for this module; yields the fake voters' pid folder."""
    ray = pytest.importorskip("ray")
    pids = tmp_path_factory.mktemp("actor-pids")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(IMPORT_ROOT), str(package)]),
                PID_FOLDER: str(pids),
            },
            "worker_process_setup_hook": f"{__name__}.register_slow_fake_voter",
        },
    )
    try:
        yield pids
    finally:
        ray.shutdown()


@pytest.fixture
def cli(package, monkeypatch):
    monkeypatch.syspath_prepend(str(package))
    try:
        yield importlib.import_module("ray_labeler.cli")
    finally:
        for name in [name for name in sys.modules if name.startswith("ray_labeler")]:
            del sys.modules[name]


def texts(count: int) -> list[str]:
    """Short tweet-like texts, with the awkward ones a CSV reader must get right."""
    pool = [text for text, _ in TOXIC_EXAMPLES] + CORPUS
    awkward = ["", 'she said "no, never"', "line one\nline two", "naïve café, 100% 😀", "NA"]
    rows = [f"{pool[i % len(pool)]} {pool[(i * 7) % len(pool)]}" for i in range(count)]
    for index, text in enumerate(awkward):
        rows[index * 37 % count] = text
    return rows


def write_input(path: Path, count: int) -> Path:
    """An input with a zero-padded id, the text, and a column named like an output column."""
    rows = [
        {"id": f"{index:04d}", "text": text, "label": "gold" if index % 3 else ""}
        for index, text in enumerate(texts(count))
    ]
    with tabular.TableWriter(path, ["id", "text", "label"]) as writer:
        writer.write(rows)
    return path


def tiny_spec() -> LabelerSpec:
    configs = tuple(
        VoterConfig(name, "hf-sequence-classifier", f"bundled:{name}", "r", label_map)
        for name, label_map in VOTERS
    )
    return LabelerSpec("ray-labeler", "label toxicity", LABELS, "text", 1.0, configs)


def pinned_spec() -> LabelerSpec:
    """:func:`tiny_spec` with CPU precisions pinned at build time: int8, fp32, none."""
    pins = {"plain": "int8", "shouty": "fp32"}
    spec = tiny_spec()
    voters = tuple(replace(v, precision=pins.get(v.name)) for v in spec.voters)
    return replace(spec, voters=voters)


def read(path: Path) -> list[dict]:
    return [row for chunk in tabular.iter_chunks(path, 10_000) for row in chunk]


def assert_same_labels(first: list[dict], second: list[dict]) -> None:
    """Same rows, columns and labels; probabilities equal to their 6 decimals' last digit."""
    assert len(first) == len(second)
    for one, other in zip(first, second, strict=True):
        assert list(one) == list(other)
        probabilities = [column for column in one if column.startswith("prob_")]
        assert {k: v for k, v in one.items() if k not in probabilities} == {
            k: v for k, v in other.items() if k not in probabilities
        }
        for column in probabilities:
            assert float(one[column]) == pytest.approx(float(other[column]), abs=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "quantize"),
    [(".csv", "auto"), (".jsonl", "none"), (".parquet", "none"), (".tsv", "pinned")],
)
def test_ray_gives_the_labels_of_the_single_process_engine(
    ray_cluster, models, tmp_path, suffix, quantize
):
    table = write_input(tmp_path / f"input{suffix}", 300)
    local_decisions, ray_decisions = [], []
    spec = pinned_spec() if quantize == "pinned" else tiny_spec()
    reference = label_file(
        Labeler(spec, Runtime(models, "cpu", 8), quantize=quantize),
        table,
        tmp_path / f"reference{suffix}",
        text_column="text",
        chunk_size=10_000,
        min_agreement=1.0,
        on_int8=local_decisions.append,
    )
    options = RayOptions(
        actors=2, block_rows=64, device="cpu", batch_size=8, quantize=quantize, package_root=models
    )
    summary = label_file_ray(
        spec,
        table,
        tmp_path / f"ray{suffix}",
        text_column="text",
        min_agreement=1.0,
        options=options,
        on_int8=ray_decisions.append,
    )

    assert (summary.rows, summary.needs_review) == (reference.rows, reference.needs_review)
    assert ray_decisions == local_decisions
    assert len(local_decisions) == {"auto": 3, "pinned": 2}.get(quantize, 0)
    if quantize == "pinned":
        assert [(d.voter, d.int8, d.rows) for d in ray_decisions] == [
            ("plain", True, 0),
            ("shouty", False, 0),
        ]
    labeled = read(tmp_path / f"ray{suffix}")
    assert_same_labels(labeled, read(tmp_path / f"reference{suffix}"))
    assert [row["id"] for row in labeled] == [f"{index:04d}" for index in range(300)]
    assert labeled[0]["label_input"] in ("gold", "") and labeled[0]["text"] == ""
    if suffix in (".csv", ".tsv"):
        ray_bytes = (tmp_path / f"ray{suffix}").read_bytes()
        assert ray_bytes == (tmp_path / f"reference{suffix}").read_bytes()


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_and_repeats_no_row(ray_cluster, tmp_path, monkeypatch):
    pids = ray_cluster
    for noted in pids.iterdir():
        noted.unlink()
    monkeypatch.setitem(kinds.ADAPTERS, "slow-fake", f"{__name__}:SlowFakeVoter")
    spec = LabelerSpec(
        "fake-labeler",
        "label toxicity",
        LABELS,
        "text",
        1.0,
        tuple(VoterConfig(n, "slow-fake", "fake:none", "r", {x: x for x in LABELS}) for n in "ab"),
    )
    table = write_input(tmp_path / "input.csv", 400)
    run = dict(text_column="text", min_agreement=1.0)
    label_file(
        Labeler(spec, Runtime(tmp_path, "cpu", 8)),
        table,
        tmp_path / "reference.csv",
        chunk_size=10_000,
        **run,
    )
    killed: list[tuple[int, int]] = []

    def kill_an_actor_after_the_first_block(done: int, total: int) -> None:
        if not killed and done >= 20:
            victim = min(pids.iterdir(), key=lambda noted: noted.stat().st_mtime_ns)
            os.kill(int(victim.name), signal.SIGKILL)
            killed.append((int(victim.name), done))

    # 20 blocks of 20 rows, 200 ms each: about 2 s of work on 2 actors.
    options = RayOptions(actors=2, block_rows=20, device="cpu", quantize="none")
    summary = label_file_ray(
        spec,
        table,
        tmp_path / "labeled.csv",
        options=options,
        on_progress=kill_an_actor_after_the_first_block,
        **run,
    )

    assert killed and killed[0][1] < 400, "the actor was killed before the run ended"
    assert len(list(pids.iterdir())) == 3, "two actors, and the one restarted after the kill"
    assert summary.rows == 400
    assert (tmp_path / "labeled.csv").read_bytes() == (tmp_path / "reference.csv").read_bytes()


def events(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_cli_engine_ray_writes_what_the_local_engine_writes(ray_cluster, cli, tmp_path, capsys):
    table = write_input(tmp_path / "input.csv", 120)
    common = [str(table), "--progress", "json", "--quantize", "none", "--device", "cpu"]
    assert cli.main(common + ["-o", str(tmp_path / "local.csv")]) == 0
    capsys.readouterr()

    ray_flags = ["--engine", "ray", "--ray-actors", "2", "--ray-batch-size", "50"]
    assert cli.main(common + ["-o", str(tmp_path / "ray.csv")] + ray_flags) == 0

    stream = events(capsys.readouterr().err)
    progress = [event for event in stream if event["event"] == "progress"]
    assert progress[0]["rows"] == 0 and progress[-1]["rows"] == 120
    assert stream[-1]["event"] == "done" and stream[-1]["rows"] == 120
    assert_same_labels(read(tmp_path / "ray.csv"), read(tmp_path / "local.csv"))


def test_cli_engine_ray_without_ray_names_the_extra_to_install(cli, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    table = write_input(tmp_path / "input.csv", 3)
    args = [str(table), "-o", str(tmp_path / "out.csv"), "--engine", "ray"]

    assert cli.main(args) == 2

    assert capsys.readouterr().err == "error: --engine ray needs: pip install 'ray-labeler[ray]'\n"
    assert not (tmp_path / "out.csv").exists()


def test_cli_refuses_ray_flags_without_engine_ray(cli, tmp_path, capsys):
    table = write_input(tmp_path / "input.csv", 3)
    args = [str(table), "-o", str(tmp_path / "out.csv"), "--ray-address", "auto"]
    assert cli.main(args) == 2
    assert "--ray-address, --ray-actors and --ray-batch-size need --engine ray" in (
        capsys.readouterr().err
    )


def test_an_unknown_text_column_is_refused_before_ray_starts(tmp_path, monkeypatch):
    monkeypatch.setattr("ray.init", lambda **settings: pytest.fail("Ray was started"))
    table = write_input(tmp_path / "input.csv", 3)
    with pytest.raises(tabular.DataError, match="no column 'body'"):
        label_file_ray(
            tiny_spec(),
            table,
            tmp_path / "out.csv",
            text_column="body",
            min_agreement=1.0,
            options=RayOptions(),
        )


def test_a_folder_of_mixed_formats_is_refused(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_input(folder / "a.csv", 3)
    write_input(folder / "b.jsonl", 3)
    with pytest.raises(tabular.DataError, match=r"files of one format \(found: csv, jsonl\)"):
        label_file_ray(
            tiny_spec(),
            folder,
            tmp_path / "out.csv",
            text_column="text",
            min_agreement=1.0,
            options=RayOptions(),
        )


@pytest.mark.slow
def test_a_folder_of_csv_files_is_labeled_as_one_table(ray_cluster, models, tmp_path):
    whole = read(write_input(tmp_path / "whole.csv", 120))
    folder = tmp_path / "data"
    folder.mkdir()
    for name, rows in (("part-0.csv", whole[:50]), ("part-1.csv", whole[50:])):
        with tabular.TableWriter(folder / name, ["id", "text", "label"]) as writer:
            writer.write(rows)
    label_file(
        Labeler(tiny_spec(), Runtime(models, "cpu", 8)),
        tmp_path / "whole.csv",
        tmp_path / "reference.parquet",
        text_column="text",
        chunk_size=10_000,
        min_agreement=1.0,
    )
    options = RayOptions(
        actors=2, block_rows=32, device="cpu", quantize="none", package_root=models
    )

    summary = label_file_ray(
        tiny_spec(),
        folder,
        f"file://{tmp_path / 'labeled.parquet'}",
        text_column="text",
        min_agreement=1.0,
        options=options,
    )

    assert summary.rows == 120
    assert_same_labels(read(tmp_path / "labeled.parquet"), read(tmp_path / "reference.parquet"))


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["none", "auto"])
def test_a_voter_that_cannot_load_is_the_voters_own_error(ray_cluster, models, tmp_path, quantize):
    gone = VoterConfig("gone", "hf-sequence-classifier", "bundled:gone", "r", {"x": "toxic"})
    table = write_input(tmp_path / "input.csv", 250)
    options = RayOptions(actors=1, device="cpu", quantize=quantize, package_root=models)

    with pytest.raises(VoterLoadError, match=r"^voter gone: bundled model \S+ is missing$"):
        label_file_ray(
            replace(tiny_spec(), voters=(gone,)),
            table,
            tmp_path / "out.csv",
            text_column="text",
            min_agreement=1.0,
            options=options,
        )
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_a_malformed_csv_is_one_data_error_line(ray_cluster, models, tmp_path):
    table = tmp_path / "input.csv"
    table.write_text("id,text\n1,hello\n2,too,many\n", encoding="utf-8")
    options = RayOptions(actors=1, device="cpu", quantize="none", package_root=models)

    with pytest.raises(tabular.DataError) as raised:
        label_file_ray(
            tiny_spec(),
            table,
            tmp_path / "out.csv",
            text_column="text",
            min_agreement=1.0,
            options=options,
        )
    message = str(raised.value)
    assert message.startswith(f"{table}: cannot be read as a table (") and "\n" not in message
    assert not (tmp_path / "out.csv").exists()
