"""Learned voters (``tfidf``, ``embedding-head``), the feature cache and the ``learn`` command,
on a package bundled from the template's modules and a tiny real encoder."""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from templates.labeler.pkg import encoders, learn, learned, learned_vote, transformer
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.engine import Labeler, label_file
from templates.labeler.pkg.feature_cache import FeatureCache
from templates.labeler.pkg.kinds import LEARNED_KINDS, load_voter
from templates.labeler.pkg.voters import Runtime, VoterLoadError
from tests.support.datasets import read_csv, toxic_sentences
from tests.support.packages import PACKAGE_SOURCE
from tests.support.tiny_models import TOXIC_EXAMPLES

LABELS = ("A", "B")
MODULE = "zorb_labeler"
KEYWORD = "zorblat"
PROTOTYPES = {"A": ["a calm remark", "a plain sentence"], "B": ["something else", "a thing"]}
ENCODER = "bundled:models/encoder"
ZERO_SHOT = VoterConfig("minilm", "embedding", ENCODER, "r", {}, options={"prototypes": PROTOTYPES})
HEAD = VoterConfig("head", "embedding-head", ENCODER, "r", {})
LEXICAL = VoterConfig("lexical", "tfidf", ENCODER, "r", {})
CLASSIFIER = VoterConfig("classifier", "hf-sequence-classifier", ENCODER, "r", {"A": "A", "B": "B"})
WORDS = [f"w{i}" for i in range(300)] + "the cat sat on a mat in the park all day".split()


def make_spec(*voters: VoterConfig) -> LabelerSpec:
    return LabelerSpec("zorb-labeler", "find zorblats", LABELS, "text", 1.0, voters)


SPEC = make_spec(CLASSIFIER, ZERO_SHOT, HEAD, LEXICAL)


def keyword_rows(count: int, seed: int, flip: float = 0.0) -> list[tuple[str, str]]:
    """Random words; label B exactly when the text holds the keyword (``flip``: a share of
    labels turned wrong)."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        words = rng.sample(WORDS, 6)
        keyword = index % 2 == 0
        if keyword:
            words.insert(rng.randrange(len(words) + 1), KEYWORD)
        label = "B" if keyword else "A"
        if rng.random() < flip:
            label = "A" if keyword else "B"
        rows.append((" ".join(words), label))
    return rows


def write_rows(path: Path, rows, header=("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def bundle(folder: Path, encoder: Path | None, spec: LabelerSpec = SPEC) -> Path:
    """A package ``folder/zorb_labeler`` as the agent renders one: the template's modules,
    the encoder bundled under ``models/encoder``, and ``spec``."""
    package = folder / MODULE
    package.mkdir(parents=True)
    for source in PACKAGE_SOURCE.glob("*.py"):
        shutil.copy(source, package / source.name)
    (package / "__init__.py").write_text("", encoding="utf-8")
    if encoder is not None:
        shutil.copytree(encoder, package / "models" / "encoder")
    (package / "spec.py").write_text(
        f"from .config import LabelerSpec, VoterConfig\nSPEC = {spec!r}\n", encoding="utf-8"
    )
    return package


def runtime(package: Path, cache: Path | None = None) -> Runtime:
    return Runtime(package, "cpu", 8, None if cache is None else FeatureCache(cache))


def accuracy(probabilities: np.ndarray, rows) -> float:
    gold = np.array([LABELS.index(label) for _, label in rows])
    return float((probabilities.argmax(axis=1) == gold).mean())


def learn_into(package: Path, examples: Path, output: Path, spec=SPEC, cache=None) -> dict:
    loaded = learn.Examples(examples, ("text", "label", None), spec)
    return learn.learn_all(loaded, output, spec, runtime(package, cache), seed=0)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# Without models: the features, abstention, loading and the cache itself.


def test_examples_without_the_text_column_are_refused_not_read_as_blank(tmp_path):
    """A file whose text column has another name was read as blank texts (every learned
    voter then learned nothing): it is one clear error now, for learn and finetune alike."""
    from templates.labeler.pkg import finetune
    from templates.labeler.pkg.tabular import DataError

    examples = tmp_path / "examples.jsonl"
    rows = [{"text": "a zorblat", "label": "B", "source": "verified"}, {"text": "x", "label": "A"}]
    examples.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    with pytest.raises(DataError, match="no column 'headline'; columns are"):
        learned.read_examples(examples, "headline", "label", None, LABELS)
    with pytest.raises(DataError, match="no column 'weight'"):
        learned.read_examples(examples, "text", "label", "weight", LABELS)
    with pytest.raises(DataError, match="no column 'headline'"):
        finetune.read_examples(examples, "headline", "label", "source", LABELS)
    texts, targets, _ = learned.read_examples(examples, "text", "label", None, LABELS)
    assert texts == ["a zorblat", "x"] and targets.tolist() == [1, 0]


def test_tfidf_features_match_scikit_learns_vectorizers():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from templates.labeler.pkg import tfidf

    texts = ["Hello world, a zorblat!", "it's a fine day in the park-side", "x", "", "Café naïve"]
    settings = {"word": {"ngram_range": (1, 2)}, "char": {"analyzer": "char_wb"}}
    settings["char"]["ngram_range"] = (2, 5)
    for view, options in settings.items():
        reference = TfidfVectorizer(sublinear_tf=True, **options).fit(texts)
        terms = tfidf.analyze(texts)[view]
        vocabulary = tfidf.build_vocabulary(terms, 10**6)
        assert vocabulary == sorted(reference.vocabulary_)
        counts = tfidf.term_matrix(terms, vocabulary)
        ours = tfidf.weigh(counts, tfidf.smooth_idf(counts, len(texts))).toarray()
        assert np.allclose(ours, reference.transform(texts).toarray(), atol=1e-12)


def test_tfidf_learner_fits_a_fold_as_if_given_only_its_texts():
    """The learner splits every text into terms once; a fit on some rows still sees only
    theirs (vocabulary, idf and model), and predicts as the stored model does."""
    from templates.labeler.pkg import tfidf
    from templates.labeler.pkg.learners import TfidfLearner

    texts = ["great fun", "awful mess", "great cast, awful plot", "fun fun fun", "a mess", "ok"]
    targets = np.array([1, 0, 0, 1, 0, 1])
    config = make_spec(LEXICAL).voters[0]
    whole = TfidfLearner(config, texts, 2, seed=0)
    rows = np.array([0, 1, 3, 4])
    fold = whole.fit(rows, targets[rows], np.ones(4))
    alone = TfidfLearner(config, [texts[r] for r in rows], 2, seed=0)
    reference = alone.fit(np.arange(4), targets[rows], np.ones(4))
    assert fold.record == reference.record
    assert fold.arrays.keys() == reference.arrays.keys()
    assert all(np.array_equal(fold.arrays[k], reference.arrays[k]) for k in fold.arrays)
    others = np.array([2, 5])
    stored = tfidf.probabilities([texts[r] for r in others], fold.record["vocabulary"], fold.arrays)
    assert np.array_equal(whole.predict(fold, others), stored)
    assert "plot" not in fold.record["vocabulary"]["word"]  # row 2 is not in the fold


def test_tfidf_learner_without_any_term_learns_the_label_rates(tmp_path):
    """Verified rows whose texts are all blank give no feature: the model is the label
    rates, stored and read back like any other (zero-width arrays)."""
    from templates.labeler.pkg import tfidf
    from templates.labeler.pkg.learned import read_model, write_model
    from templates.labeler.pkg.learners import TfidfLearner

    config = make_spec(LEXICAL).voters[0]
    learner = TfidfLearner(config, ["", " ", "", "\t"], 3, seed=0)
    fitted = learner.fit(np.arange(4), np.array([0, 1, 0, 0]), np.ones(4))
    assert fitted.arrays["coef"].shape == (3, 0)
    record = {"kind": "tfidf", "labels": ["a", "b", "c"], **fitted.record}
    write_model(tmp_path / "v1", record, fitted.arrays)
    stored = read_model(tmp_path / "v1", config, ("a", "b", "c"))
    found = tfidf.probabilities(["", "a new text"], stored.record["vocabulary"], stored.arrays)
    assert np.allclose(found, [[0.75, 0.25, 0.0]] * 2, atol=1e-3)


def test_untrained_learned_voters_abstain_without_loading_a_model(tmp_path):
    package = bundle(tmp_path, encoder=None, spec=make_spec(HEAD, LEXICAL))  # no model at all
    labeler = Labeler(make_spec(HEAD, LEXICAL), runtime(package))
    assert LEARNED_KINDS == ("embedding-head", "tfidf")
    assert all(voter.learned and voter.version is None for voter in labeler.voters)
    assert labeler.voters[0].encoder is None
    for voter in labeler.voters:
        assert np.array_equal(voter.predict(["one", "two", ""]), np.full((3, 2), 0.5))
    rows = labeler.label_texts(["one", "two"], 1.0)
    assert [row["label_head"] for row in rows] == [None, None]
    assert labeler.learned()["learned:lexical"] is None


def test_a_learned_version_for_other_labels_or_with_missing_files_is_refused(tmp_path):
    package = bundle(tmp_path, encoder=None, spec=make_spec(LEXICAL))
    folder = learned.learned_folder(package, "lexical")
    arrays = {"coef": np.zeros((2, 1)), "intercept": np.zeros(2)}
    learned.write_model(folder / "v1", {"kind": "tfidf", "labels": ["X", "Y"]}, arrays)
    (folder / "CURRENT").write_text("v1\n")
    with pytest.raises(VoterLoadError, match="labels"):
        load_voter(LEXICAL, LABELS, runtime(package))
    learned.write_model(folder / "v1", {"kind": "tfidf", "labels": list(LABELS)}, arrays)
    (folder / "v1" / learned.WEIGHTS).unlink()
    with pytest.raises(VoterLoadError, match="missing") as refused:
        load_voter(LEXICAL, LABELS, runtime(package))
    assert "\n" not in str(refused.value)


def test_the_cache_finds_rows_by_text_and_treats_a_corrupt_file_as_missing(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    identity = {"voter": "v", "precision": "fp32"}
    cache.put("probabilities", identity, ["a", "b"], np.array([[0.1, 0.9], [0.7, 0.3]]))
    cache.put("probabilities", identity, ["c"], np.array([[0.5, 0.5]]))
    assert cache.get("probabilities", identity, ["a", "b"]).tolist() == [[0.1, 0.9], [0.7, 0.3]]
    assert cache.get("probabilities", {"voter": "v", "precision": "int8"}, ["a", "b"]) is None
    rows, found = cache.rows("probabilities", identity, ["c", "zzz", "a"])
    assert found.tolist() == [True, False, True]
    assert rows[[0, 2]].tolist() == [[0.5, 0.5], [0.1, 0.9]]
    for path in (tmp_path / "cache").rglob("*.npy"):
        path.write_bytes(b"not an array")
    assert cache.get("probabilities", identity, ["a", "b"]) is None
    assert cache.rows("probabilities", identity, ["a"])[1].tolist() == [False]


# With the tiny encoder.


@pytest.fixture(scope="module")
def encoder(tiny_models) -> Path:
    return tiny_models.get({0: "A", 1: "B"}, seed=5, train_examples=TOXIC_EXAMPLES)


@pytest.fixture(scope="module")
def keyword_task(tmp_path_factory, encoder):
    """A package that learned the keyword task once: (package, examples, output, event)."""
    folder = tmp_path_factory.mktemp("keyword")
    package = bundle(folder, encoder)
    examples = write_rows(folder / "verified.csv", keyword_rows(300, seed=0))
    event = learn_into(package, examples, folder / "learned")
    return package, examples, folder / "learned", event


@pytest.fixture
def package(keyword_task, tmp_path) -> Path:
    """A private copy of the keyword package, nothing installed yet."""
    target = tmp_path / "copy" / MODULE
    shutil.copytree(keyword_task[0], target)
    return target


@pytest.mark.slow
def test_tfidf_learns_a_keyword_task_that_the_zero_shot_voter_cannot(keyword_task, package):
    _, _, output, event = keyword_task
    lexical = next(v for v in event["voters"] if v["voter"] == "lexical")
    assert lexical["version"] == "v1" and lexical["examples"] == 300
    assert lexical["examples_per_label"] == {"A": 150, "B": 150}
    assert learned.install_learned(output, package)["voters"] == {"head": "v1", "lexical": "v1"}
    held_out = keyword_rows(200, seed=1)
    texts = [text for text, _ in held_out]
    voters = {voter.config.name: voter for voter in Labeler(SPEC, runtime(package)).voters}
    assert voters["lexical"].version == "v1"
    assert accuracy(voters["lexical"].predict(texts), held_out) >= 0.95
    assert accuracy(voters["minilm"].predict(texts), held_out) < 0.8


@pytest.mark.slow
def test_the_head_learns_a_task_from_the_encoders_embeddings(tmp_path, encoder):
    spec = make_spec(VoterConfig("head", "embedding-head", ENCODER, "r", {}, options={"l2": 1e-6}))
    package = bundle(tmp_path, encoder, spec)
    rows = toxic_sentences(80, seed=3)
    relabeled = [(text, "B" if label == "toxic" else "A") for text, label in rows]
    examples = write_rows(tmp_path / "verified.csv", relabeled)
    event = learn_into(package, examples, tmp_path / "out", spec)
    head = event["voters"][0]
    assert head["kind"] == "embedding-head" and head["training_accuracy"] >= 0.9
    assert head["cross_validated_accuracy"] > 0.65
    learned.install_learned(tmp_path / "out", package)
    voter = Labeler(spec, runtime(package)).voters[0]
    held_out = [(t, "B" if label == "toxic" else "A") for t, label in toxic_sentences(60, seed=4)]
    assert accuracy(voter.predict([text for text, _ in held_out]), held_out) > 0.65


@pytest.mark.slow
def test_what_is_learned_holds_no_pickle_and_repeats_byte_for_byte(keyword_task, tmp_path):
    from safetensors.numpy import load_file

    package, examples, first, event = keyword_task
    again = learn_into(package, examples, tmp_path / "again")
    assert again == event
    assert files_of(tmp_path / "again") == files_of(first)
    for voter in ("head", "lexical"):
        folder = first / "learned" / voter / "v1"
        assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.safetensors"]
        record = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        assert record["kind"] in LEARNED_KINDS and record["labels"] == list(LABELS)
        assert all(isinstance(a, np.ndarray) for a in load_file(folder / learned.WEIGHTS).values())
    vote = json.loads((first / "votes" / "v1" / "vote.json").read_text(encoding="utf-8"))
    assert vote == event["vote"] and vote["learned_voters"] == {"head": "v1", "lexical": "v1"}


@pytest.mark.slow
def test_the_vote_weighs_learned_voters_by_their_out_of_fold_probabilities(tmp_path, encoder):
    spec = make_spec(ZERO_SHOT, LEXICAL)
    package = bundle(tmp_path, encoder, spec)
    examples = write_rows(tmp_path / "noisy.csv", keyword_rows(200, seed=5, flip=0.15))
    event = learn_into(package, examples, tmp_path / "out", spec)
    lexical = event["voters"][0]
    # In sample the model fits the wrong labels too; held out it cannot.
    assert lexical["training_accuracy"] == 1.0
    assert lexical["cross_validated_accuracy"] < 0.95
    loaded = learn.Examples(examples, ("text", "label", None), spec)
    fitted = learn.learner_for(LEXICAL, loaded, runtime(package), seed=0)
    zero_shot = Labeler(spec, runtime(package)).voters[0].predict(loaded.texts)
    stacked = [zero_shot, learn.out_of_fold(fitted, loaded)]
    expected = learned_vote.learn(loaded.texts, loaded.targets, spec, stacked)
    assert event["vote"]["voters"] == expected["voters"]
    assert event["vote"]["cross_validated_accuracy"] == expected["cross_validated_accuracy"]


def count_forward_calls(monkeypatch) -> list[str]:
    """Every batch-running call of a transformer model (encoders and classifiers)."""
    calls: list[str] = []
    original = transformer.run_batches

    def counting(tokenizer, texts, *args, **options):
        calls.append(f"{len(texts)} texts")
        return original(tokenizer, texts, *args, **options)

    monkeypatch.setattr(transformer, "run_batches", counting)
    monkeypatch.setattr(encoders, "run_batches", counting)
    return calls


def label_to(package: Path, data: Path, target: Path, cache: Path | None = None, **options):
    labeler = Labeler(SPEC, runtime(package, cache), **options)
    label_file(labeler, data, target, text_column="text", chunk_size=16, min_agreement=1.0)
    return target.read_bytes()


@pytest.mark.slow
def test_relabeling_with_a_cache_runs_no_frozen_model_and_changes_no_byte(
    keyword_task, package, tmp_path, monkeypatch
):
    data = write_rows(tmp_path / "data.csv", keyword_rows(40, seed=7))
    cache = tmp_path / "cache"
    assert label_to(package, data, tmp_path / "a.csv", cache) == label_to(
        package, data, tmp_path / "plain-a.csv"
    )
    learned.install_learned(keyword_task[2], package)  # new versions of the learned voters
    calls = count_forward_calls(monkeypatch)
    relabeled = label_to(package, data, tmp_path / "b.csv", cache)
    assert calls == []  # the head's embeddings came from the cache too
    monkeypatch.undo()
    assert relabeled == label_to(package, data, tmp_path / "plain-b.csv")
    rows = read_csv(tmp_path / "b.csv")
    assert {row["label_lexical"] for row in rows} == {"A", "B"}
    for path in cache.rglob("*.npy"):
        path.write_bytes(b"\x93NUMPY broken")
    assert label_to(package, data, tmp_path / "c.csv", cache) == relabeled  # recomputed
    calls = count_forward_calls(monkeypatch)
    assert label_to(package, data, tmp_path / "d.csv", cache) == relabeled
    assert calls == []  # and rewritten whole


@pytest.mark.slow
def test_an_encoder_shared_by_two_voters_embeds_each_text_once(keyword_task, package, monkeypatch):
    learned.install_learned(keyword_task[2], package)
    labeler = Labeler(SPEC, runtime(package))
    voters = {voter.config.name: voter for voter in labeler.voters}
    assert voters["head"].encoder is voters["minilm"].encoder
    calls = count_forward_calls(monkeypatch)
    labeler.label_texts([text for text, _ in keyword_rows(12, seed=8)], 1.0)
    assert calls == ["12 texts", "12 texts"]  # the classifier, and the one shared encoder


@pytest.mark.slow
def test_an_int8_decision_is_taken_once_with_a_cache(package, tmp_path, monkeypatch):
    data = write_rows(tmp_path / "data.csv", keyword_rows(20, seed=9))
    cache = tmp_path / "cache"
    first = label_to(package, data, tmp_path / "a.csv", cache, quantize="int8")
    labeler = Labeler(SPEC, runtime(package, cache), quantize="int8")
    calls = count_forward_calls(monkeypatch)
    decisions = labeler.settle_precision([])
    assert sorted(d.voter for d in decisions) == ["classifier", "minilm"]
    precisions = {"classifier": "int8", "minilm": "int8", "head": "fp32", "lexical": "fp32"}
    assert labeler.precisions() == precisions
    label_file(labeler, data, tmp_path / "b.csv", text_column="text", chunk_size=16,
               min_agreement=1.0)  # fmt: skip
    assert calls == [] and (tmp_path / "b.csv").read_bytes() == first


@pytest.mark.slow
def test_learn_after_a_labeling_with_a_cache_loads_no_model(package, tmp_path, monkeypatch):
    """The labeling recorded the identities it used: ``learn`` reads the frozen voters'
    probabilities and the encoder's embeddings from the cache without loading a model, and
    writes what it writes having loaded them; a cache without the records loads them."""
    rows = keyword_rows(60, seed=12)
    examples = write_rows(tmp_path / "verified.csv", rows)
    cache = tmp_path / "cache"
    label_to(package, write_rows(tmp_path / "data.csv", rows + keyword_rows(20, seed=13)),
             tmp_path / "labeled.csv", cache)  # fmt: skip
    records = cache / "identities"
    assert records.is_dir()
    records.rename(tmp_path / "records")
    calls = count_forward_calls(monkeypatch)
    expected = learn_into(package, examples, tmp_path / "loaded", SPEC, cache)
    assert calls == []  # the models were loaded, but every row came from the cache
    monkeypatch.undo()
    shutil.rmtree(records)  # what the loaded voters recorded: the labeling's records only
    (tmp_path / "records").rename(records)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(learn, "Labeler", no_model)
    monkeypatch.setattr(learn, "shared_encoder", no_model)
    assert learn_into(package, examples, tmp_path / "recorded", SPEC, cache) == expected
    assert files_of(tmp_path / "recorded") == files_of(tmp_path / "loaded")


def run_module(package: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=package.parent,
        env={**os.environ, "PYTHONPATH": str(package.parent), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
    )


@pytest.mark.slow
def test_the_learn_command_then_install_then_relabel(keyword_task, package, tmp_path):
    examples, cache, output = keyword_task[1], tmp_path / "cache", tmp_path / "learned"
    data = write_rows(tmp_path / "held-out.csv", keyword_rows(60, seed=11))
    labeled = tmp_path / "labeled.csv"
    first = run_module(package, MODULE, str(data), "-o", str(labeled), "--cache", str(cache))
    assert first.returncode == 0, first.stderr
    done = run_module(
        package, f"{MODULE}.learn", str(examples), "--output", str(output), "--cache", str(cache)
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [event["event"] for event in events] == ["learned"]
    event = events[0]
    assert [v["voter"] for v in event["voters"]] == ["head", "lexical"]
    assert set(event["voters"][0]) == {
        "voter", "kind", "version", "examples", "replayed", "examples_per_label",
        "training_accuracy", "cross_validated_accuracy",
    }  # fmt: skip
    assert event["vote"]["version"] == "v1" and "adopted" in event["vote"]
    learned.install_learned(output, package)
    pinned = learned.installed(package)
    assert {voter: entry["version"] for voter, entry in pinned.items()} == {
        "head": "v1",
        "lexical": "v1",
    }
    assert set(pinned["lexical"]["files"]) == {"model.json", "weights.safetensors"}
    again = run_module(package, MODULE, str(data), "-o", str(labeled), "--cache", str(cache))
    assert again.returncode == 0, again.stderr
    rows = read_csv(labeled)
    gold = [label for _, label in keyword_rows(60, seed=11)]
    assert (
        np.mean([row["label_lexical"] == label for row, label in zip(rows, gold, strict=True)])
        >= 0.95
    )
    old_command = run_module(
        package, f"{MODULE}.learned_vote", str(examples), "--output", str(tmp_path / "votes")
    )
    assert old_command.returncode == 0, old_command.stderr
    # Replayed rows (labeled by the labeler itself) train the learned voters, never the vote.
    replay = write_rows(tmp_path / "replay.csv", keyword_rows(30, seed=12))
    replayed = run_module(
        package, f"{MODULE}.learn", str(examples), "--output", str(tmp_path / "with-replay"),
        "--cache", str(cache), "--replay", str(replay),
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    line = next(x for x in replayed.stderr.splitlines() if x.startswith("{"))
    with_replay = json.loads(line)
    verified = event["voters"][0]["examples"]
    assert {v["replayed"] for v in with_replay["voters"]} == {30}
    assert {v["examples"] for v in with_replay["voters"]} == {verified}
    assert with_replay["vote"]["examples"] == verified


@pytest.mark.slow
def test_one_pass_gives_the_embedding_and_the_upper_layer_view(keyword_task, package, tmp_path):
    """The zero-shot voter reads the last layer's embedding; the head reads the upper layers'
    pooled features by default, and a stored head says which view it was fitted on (one from
    before views were recorded reads the embedding)."""
    learned.install_learned(keyword_task[2], package)
    labeler = Labeler(SPEC, runtime(package))
    head = next(voter for voter in labeler.voters if voter.config.name == "head")
    texts = [text for text, _ in keyword_rows(6, seed=9)]
    both = head.encoder.features(texts)
    width = head.encoder.dimension
    assert both.shape == (6, 2 * width)
    assert np.allclose(np.linalg.norm(both[:, :width], axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(both[:, width:], axis=1), 1.0, atol=1e-5)
    assert np.array_equal(head.encoder.embed(texts), both[:, :width])
    assert not np.allclose(both[:, :width], both[:, width:])
    assert head.view == encoders.UPPER_LAYERS
    record_file = next((package / "learned" / "head").glob("v*/model.json"))
    record = json.loads(record_file.read_text(encoding="utf-8"))
    assert record["hyper"]["view"] == encoders.UPPER_LAYERS and record["hyper"]["standardized"]
    del record["hyper"]["view"]  # as a version written before views existed
    record_file.write_text(json.dumps(record), encoding="utf-8")
    old = next(v for v in Labeler(SPEC, runtime(package)).voters if v.config.name == "head")
    assert old.view == encoders.EMBEDDING
    expected = learned_head_probabilities(old, old.encoder.embed(texts))
    assert np.allclose(old.predict(texts), expected)


def learned_head_probabilities(voter, features: np.ndarray) -> np.ndarray:
    from templates.labeler.pkg.embedding_head import head_probabilities

    return head_probabilities(voter.stored.arrays, features)
