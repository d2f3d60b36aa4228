"""Learning from verified rows: the learned voters and the learned vote, in one command.

``python -m <package>.learn EXAMPLES --output FOLDER [--cache DIR] [--install]``

EXAMPLES holds verified rows (text, label, optional weight); ``--replay FILE`` optionally
rows of the same shape labeled by the labeler itself where it is surest (self-training:
they show the learned voters the easy part of the data that verification skips). The
command

1. fits every learned voter (:data:`.kinds.LEARNED_KINDS`) on all of them and writes
   ``FOLDER/learned/<voter>/v<N>/{model.json,weights.safetensors}``, N following the
   version the package uses;
2. computes each learned voter's out-of-fold probabilities on the verified examples (five
   folds by text hash, as the vote's cross-validation, every replayed row in each fold's
   training rows; a fold whose training rows have fewer than two labels gets uniform
   probabilities);
3. fits the learned vote (:func:`.learned_vote.learn`) on the frozen voters'
   probabilities (from ``--cache`` when it holds them: then, as for the learned head's
   embeddings, no model is loaded) and the learned voters'
   out-of-fold ones (stacking: in-sample ones would make the vote trust them blindly),
   on the verified examples only, and writes ``FOLDER/votes/v<N>/vote.json``;
4. prints one ``{"event": "learned", ...}`` line on stderr.

The same inputs and ``--seed`` give byte-identical files. ``--install`` makes the new
voters current, and the vote too if it beats the plain vote.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import versions
from .cached import embeddings_recipe, probabilities_recipe, recorded_rows
from .commands import PACKAGE_ROOT, guarded, load_spec, resolve_device
from .config import LabelerSpec, VoterConfig
from .encoders import shared_encoder
from .engine import Labeler
from .feature_cache import FeatureCache
from .kinds import LEARNED_KINDS
from .learned import (
    LEARNED,
    install_learned,
    learned_folder,
    read_examples,
    uniform,
    write_model,
)
from .learned_vote import FOLDS, fold_of, learn
from .learners import HeadLearner, TfidfLearner
from .vote import RECORD, VOTES, votes_folder
from .voters import Runtime, Voter


class Examples:
    """The verified rows, then the replayed ones: texts, label indices, weights and folds."""

    def __init__(
        self,
        path: Path,
        columns: tuple[str, str, str | None],
        spec: LabelerSpec,
        replay: Path | None = None,
    ):
        self.texts, self.targets, self.weights = read_examples(path, *columns, spec.labels)
        self.verified = len(self.texts)
        digest = hashlib.sha256(path.read_bytes())
        if replay is not None:
            texts, targets, weights = read_examples(replay, *columns, spec.labels, two=False)
            self.texts = self.texts + texts
            self.targets = np.concatenate([self.targets, targets]).astype(int)
            self.weights = np.concatenate([self.weights, weights])
            digest.update(replay.read_bytes())
        self.folds = fold_of(self.texts)
        self.sha256 = digest.hexdigest()
        self.labels = spec.labels

    @property
    def replayed(self) -> int:
        return len(self.texts) - self.verified

    def per_label(self) -> dict[str, int]:
        verified = self.targets[: self.verified]
        return {label: int((verified == i).sum()) for i, label in enumerate(self.labels)}


def cached_rows(
    cache: FeatureCache | None, namespace: str, identity: dict, texts: list[str], compute
) -> np.ndarray:
    """Each text's row from the cache where it holds one, the others ``compute``d."""
    stored, found = (None, np.zeros(len(texts), bool))
    if cache is not None:
        stored, found = cache.rows(namespace, identity, texts)
    missing = [row for row in range(len(texts)) if not found[row]]
    if not missing:
        assert stored is not None
        return stored
    computed = np.asarray(compute([texts[row] for row in missing]), dtype=np.float64)
    result = np.zeros((len(texts), computed.shape[1])) if stored is None else stored
    result[missing] = computed
    return result


def learner_for(config: VoterConfig, examples: Examples, runtime: Runtime, seed: int):
    labels = len(examples.labels)
    if config.kind == "tfidf":
        return TfidfLearner(config, examples.texts, labels, seed)
    recipe = embeddings_recipe(config, runtime.package_root, runtime.device)
    embeddings = recorded_rows(runtime.cache, "embeddings", recipe, examples.texts)
    if embeddings is None:
        encoder = shared_encoder(config, runtime)
        embeddings = cached_rows(
            runtime.cache, "embeddings", encoder.identity, examples.texts, encoder.compute
        )
    return HeadLearner(config, embeddings, labels, seed)


def out_of_fold(learner, examples: Examples) -> np.ndarray:
    """Each verified row's probabilities from the model fitted on the other folds (and every
    replayed row)."""
    result = uniform(examples.verified, len(examples.labels))
    verified = np.arange(len(examples.texts)) < examples.verified
    for fold in range(FOLDS):
        held = np.flatnonzero((examples.folds == fold) & verified)
        train = np.flatnonzero((examples.folds != fold) | ~verified)
        if len(held) == 0 or len(set(examples.targets[train].tolist())) < 2:
            continue
        fitted = learner.fit(train, examples.targets[train], examples.weights[train])
        result[held] = learner.predict(fitted, held)
    return result


def accuracy(probabilities: np.ndarray, targets: np.ndarray) -> float:
    return round(float((probabilities.argmax(axis=1) == targets).mean()), 4)


def learn_voter(
    config: VoterConfig, examples: Examples, runtime: Runtime, output: Path, seed: int
) -> tuple[dict, np.ndarray]:
    """Fit, write and describe one learned voter; its out-of-fold probabilities."""
    learner = learner_for(config, examples, runtime, seed)
    rows = np.arange(len(examples.texts))
    fitted = learner.fit(rows, examples.targets, examples.weights)
    held_out = out_of_fold(learner, examples)
    version = versions.following(learned_folder(runtime.package_root, config.name))
    summary = {
        "voter": config.name,
        "kind": config.kind,
        "version": version,
        "examples": examples.verified,
        "replayed": examples.replayed,
        "examples_per_label": examples.per_label(),
        "training_accuracy": accuracy(learner.predict(fitted, rows), examples.targets),
        "cross_validated_accuracy": accuracy(held_out, examples.targets[: examples.verified]),
    }
    training = summary | {"examples_sha256": examples.sha256, "seed": seed, "folds": FOLDS}
    record = {"kind": config.kind, "labels": list(examples.labels), **fitted.record}
    record["training"] = training
    write_model(output / LEARNED / config.name / version, record, fitted.arrays)
    return summary, held_out


class FrozenVoters:
    """The frozen voters' probabilities for the verified rows: read from the cache under the
    identities the last labeling recorded, with no model loaded; the voters are loaded (at the
    precisions that labeling ran them at) only when the cache lacks some of them."""

    def __init__(self, spec: LabelerSpec, runtime: Runtime) -> None:
        self.spec, self.runtime = spec, runtime
        self.labeler: Labeler | None = None

    def probabilities(self, index: int, texts: list[str]) -> np.ndarray:
        runtime = self.runtime
        config = self.spec.voters[index]
        recipe = probabilities_recipe(
            config, self.spec.labels, runtime.package_root, runtime.device
        )
        stored = recorded_rows(runtime.cache, "probabilities", recipe, texts)
        if stored is not None:
            return stored
        if self.labeler is None:
            self.labeler = Labeler(self.spec, runtime)
            self.labeler.replay_precision()
        voter: Voter = self.labeler.voters[index]
        identity = self.labeler.identities()[index]
        return cached_rows(runtime.cache, "probabilities", identity, texts, voter.predict)


def learn_all(
    examples: Examples, output: Path, spec: LabelerSpec, runtime: Runtime, seed: int
) -> dict:
    """Steps 1-3 of the module's docstring; the ``learned`` event."""
    frozen = FrozenVoters(spec, runtime)
    summaries, probabilities = [], []
    texts, targets = examples.texts[: examples.verified], examples.targets[: examples.verified]
    for index, config in enumerate(spec.voters):
        if config.kind in LEARNED_KINDS:
            summary, held_out = learn_voter(config, examples, runtime, output, seed)
            summaries.append(summary)
            probabilities.append(held_out)
        else:
            probabilities.append(frozen.probabilities(index, texts))
    record = learn(texts, targets, spec, probabilities)
    version = versions.following(votes_folder(runtime.package_root))
    record = {"version": version} | record
    record["examples_sha256"] = examples.sha256
    record["learned_voters"] = {summary["voter"]: summary["version"] for summary in summaries}
    folder = output / VOTES / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return {"event": "learned", "voters": summaries, "vote": record}


def build_parser(spec: LabelerSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.learn", description=__doc__)
    parser.add_argument("examples", type=Path, help="verified rows: text and label columns")
    parser.add_argument("--output", type=Path, required=True, help="folder for what is learned")
    parser.add_argument("--cache", type=Path, help="the labeler's --cache folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-column", default=spec.text_column)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--weight-column", default=None)
    parser.add_argument(
        "--replay", type=Path, default=None, help="rows labeled by the labeler, to train on too"
    )
    parser.add_argument("--install", action="store_true", help="make them current in this package")
    return parser


def main(argv: Sequence[str] | None = None, package_root: Path = PACKAGE_ROOT) -> int:
    spec = load_spec()
    args = build_parser(spec).parse_args(argv)

    def command() -> int:
        cache = None if args.cache is None else FeatureCache(args.cache)
        device = resolve_device(args.device)
        runtime = Runtime(package_root, device, args.batch_size, cache)
        columns = (args.text_column, args.label_column, args.weight_column)
        examples = Examples(args.examples, columns, spec, args.replay)
        event = learn_all(examples, args.output, spec, runtime, args.seed)
        if args.install:
            install_learned(args.output, package_root)
        print(json.dumps(event), file=sys.stderr)
        return 0

    return guarded(command)


if __name__ == "__main__":
    sys.exit(main())
