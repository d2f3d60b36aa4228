"""Fitting the learned vote: weights for the voters, fitted on verified rows.

``python -m <package>.learned_vote EXAMPLES --output FOLDER`` runs every voter
(with its current adapter or learned version) over the examples' texts and fits a weighted
log-linear pool (:func:`.vote.pooled_vote`): one non-negative weight per voter
and one bias per label, minimising cross-entropy against the verified labels
(L2-regularised, projected gradient descent, deterministic). Five-fold
cross-validation on the same rows compares it with the plain majority vote;
the record says whether it is better (``adopted``). It is written to
``FOLDER/v<N>/vote.json``, N following the package's current learned vote;
installing it under ``<package>/votes/`` and pointing ``votes/CURRENT`` at it
makes the labeler use it (:mod:`.vote` reads it). Without one, the labeler takes
the plain vote. (:mod:`.learn` fits the learned voters and this vote together, on the
learned voters' out-of-fold probabilities; it is what the agent runs.)
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
from .commands import PACKAGE_ROOT, guarded, load_spec, resolve_device
from .config import LabelerSpec
from .engine import Labeler
from .learned import read_examples
from .vote import (
    RECORD,
    install_vote,
    log_probabilities,
    pool_scores,
    softmax,
    vote,
    votes_folder,
)
from .voters import Runtime

L2_WEIGHTS = 1e-2
L2_BIAS = 1e-3
MAX_ITERATIONS = 2000
TOLERANCE = 1e-10
FOLDS = 5


def fit_pool(
    log_probs: np.ndarray,
    targets: np.ndarray,
    l2_weights: float = L2_WEIGHTS,
    l2_bias: float = L2_BIAS,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (voters,) >= 0 and biases (labels,) minimising the pool's mean cross-entropy
    on ``log_probs`` (voters, rows, labels) against ``targets`` (rows,), plus L2."""
    voters, rows, labels = log_probs.shape
    onehot = np.eye(labels)[targets]

    def loss_and_gradient(weights: np.ndarray, bias: np.ndarray):
        scores = pool_scores(log_probs, weights, bias)
        log_posterior = scores - scores.max(axis=1, keepdims=True)
        log_posterior -= np.log(np.exp(log_posterior).sum(axis=1, keepdims=True))
        loss = -(onehot * log_posterior).sum() / rows
        loss += l2_weights * (weights**2).sum() + l2_bias * (bias**2).sum()
        residual = (np.exp(log_posterior) - onehot) / rows
        grad_w = np.einsum("nk,jnk->j", residual, log_probs) + 2 * l2_weights * weights
        grad_b = residual.sum(axis=0) + 2 * l2_bias * bias
        return loss, grad_w, grad_b

    weights, bias = np.ones(voters), np.zeros(labels)
    loss, grad_w, grad_b = loss_and_gradient(weights, bias)
    step = 1.0
    for _ in range(MAX_ITERATIONS):
        while True:  # backtracking on the projected step (weights stay >= 0)
            new_w = np.maximum(weights - step * grad_w, 0.0)
            new_b = bias - step * grad_b
            new_loss, new_grad_w, new_grad_b = loss_and_gradient(new_w, new_b)
            moved = ((new_w - weights) ** 2).sum() + ((new_b - bias) ** 2).sum()
            if new_loss <= loss - moved / (2 * step) or step < 1e-12:
                break
            step /= 2
        improvement = loss - new_loss
        weights, bias, loss, grad_w, grad_b = new_w, new_b, new_loss, new_grad_w, new_grad_b
        if improvement < TOLERANCE:
            break
        step *= 2
    return weights, bias


def pool_predict(log_probs: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return softmax(pool_scores(log_probs, weights, bias)).argmax(axis=1)


def fold_of(texts: Sequence[str]) -> np.ndarray:
    """A fold per row, from its text's hash: the same rows always fall in the same fold."""
    return np.array([int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) % FOLDS for t in texts])


def cross_validate(
    probabilities: list[np.ndarray], targets: np.ndarray, folds: np.ndarray, plain_weights
) -> tuple[float, float]:
    """Accuracy of the pool and of the plain vote on held-out folds."""
    log_probs = log_probabilities(probabilities)
    plain = vote(probabilities, plain_weights).label_index
    pooled = np.empty_like(targets)
    for fold in range(FOLDS):
        held = folds == fold
        if not held.any():
            continue
        train = ~held
        if len(set(targets[train].tolist())) < 2:
            pooled[held] = plain[held]
            continue
        weights, bias = fit_pool(log_probs[:, train], targets[train])
        pooled[held] = pool_predict(log_probs[:, held], weights, bias)
    return float((pooled == targets).mean()), float((plain == targets).mean())


def learn(
    texts: Sequence[str], targets: np.ndarray, spec: LabelerSpec, probabilities: list[np.ndarray]
) -> dict:
    """The learned vote's record: weights, biases and how it compares with the plain vote."""
    plain_weights = [voter.weight for voter in spec.voters]
    pooled_accuracy, plain_accuracy = cross_validate(
        probabilities, targets, fold_of(texts), plain_weights
    )
    weights, bias = fit_pool(log_probabilities(probabilities), targets)
    return {
        "labels": list(spec.labels),
        "voters": [
            {"voter": voter.name, "weight": round(float(w), 6)}
            for voter, w in zip(spec.voters, weights, strict=True)
        ],
        "bias": {label: round(float(b), 6) for label, b in zip(spec.labels, bias, strict=True)},
        "examples": len(texts),
        "examples_per_label": {
            label: int((targets == index).sum()) for index, label in enumerate(spec.labels)
        },
        "cross_validated_accuracy": round(pooled_accuracy, 4),
        "plain_vote_accuracy": round(plain_accuracy, 4),
        "adopted": pooled_accuracy >= plain_accuracy,
        "folds": FOLDS,
        "l2": {"weights": L2_WEIGHTS, "bias": L2_BIAS},
    }


def main(argv: Sequence[str] | None = None) -> int:
    spec = load_spec()
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}.learned_vote", description=__doc__
    )
    parser.add_argument("examples", type=Path, help="verified rows: text and label columns")
    parser.add_argument("--output", type=Path, required=True, help="folder for the new vote")
    parser.add_argument("--text-column", default=spec.text_column)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--install", action="store_true", help="make it the package's vote if it is adopted"
    )
    args = parser.parse_args(argv)

    def command() -> int:
        texts, targets, _ = read_examples(
            args.examples, args.text_column, args.label_column, None, spec.labels
        )
        labeler = Labeler(spec, Runtime(PACKAGE_ROOT, resolve_device(args.device), args.batch_size))
        probabilities = [voter.predict(texts) for voter in labeler.voters]
        record = learn(texts, targets, spec, probabilities)
        version = versions.following(votes_folder(PACKAGE_ROOT))
        record = {"version": version} | record
        record["examples_sha256"] = hashlib.sha256(args.examples.read_bytes()).hexdigest()
        folder = args.output / version
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if args.install and record["adopted"]:
            install_vote(args.output, version, PACKAGE_ROOT)
        print(json.dumps({"event": "vote", "vote": record}), file=sys.stderr)
        return 0

    return guarded(command)


if __name__ == "__main__":
    sys.exit(main())
