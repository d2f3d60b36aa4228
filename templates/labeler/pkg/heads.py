"""Fitting the embedding voters' few-shot heads on verified examples.

``python -m <package>.heads EXAMPLES --output FOLDER`` embeds the examples'
texts with each embedding voter, fits a softmax-regression head (L2-regularised,
L-BFGS, deterministic) and writes ``FOLDER/<voter>/v<N>/`` with the weights and
a ``head.json`` record, where N follows the package's current head. Installing
the folder under ``<package>/heads/`` and pointing ``CURRENT`` at it activates it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import tabular, versions
from .commands import PACKAGE_ROOT, guarded, load_spec, resolve_device
from .config import LabelerSpec
from .embedding import EmbeddingVoter, head_folder
from .kinds import load_voter
from .voters import Runtime

L2 = 1e-3
MAX_ITERATIONS = 200


def fit_softmax_regression(
    features: np.ndarray, targets: np.ndarray, labels: int, weights: np.ndarray, l2: float = L2
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (labels, dim) and bias (labels,) minimising weighted cross-entropy + L2."""
    import torch

    torch.manual_seed(0)
    x = torch.tensor(features, dtype=torch.float64)
    y = torch.tensor(targets, dtype=torch.long)
    w = torch.tensor(weights / weights.sum(), dtype=torch.float64)
    weight = torch.zeros((labels, x.shape[1]), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(labels, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=MAX_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        losses = torch.nn.functional.cross_entropy(x @ weight.T + bias, y, reduction="none")
        loss = (losses * w).sum() + l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().numpy(), bias.detach().numpy()


def read_examples(
    path: Path,
    text_column: str,
    label_column: str,
    weight_column: str | None,
    task_labels: tuple[str, ...],
):
    """Texts, label indices into ``task_labels`` and weights of verified rows."""
    texts, labels, weights = [], [], []
    for chunk in tabular.iter_chunks(path, 10_000):
        for row in chunk:
            label = row.get(label_column)
            if label not in task_labels:
                raise tabular.DataError(f"{path}: label {label!r} is not one of {task_labels}")
            texts.append("" if row.get(text_column) is None else str(row[text_column]))
            labels.append(task_labels.index(label))
            weights.append(float(row.get(weight_column) or 1.0) if weight_column else 1.0)
    if len(set(labels)) < 2:
        raise tabular.DataError(f"{path}: examples of at least two labels are needed")
    return texts, np.array(labels), np.array(weights)


def fit_heads(
    examples: Path,
    output: Path,
    *,
    text_column: str,
    label_column: str,
    weight_column: str | None,
    spec: LabelerSpec,
    runtime: Runtime,
) -> list[dict]:
    texts, targets, weights = read_examples(
        examples, text_column, label_column, weight_column, spec.labels
    )
    digest = hashlib.sha256(examples.read_bytes()).hexdigest()
    records = []
    for config in spec.voters:
        if config.kind != "embedding":
            continue
        voter = load_voter(config, spec.labels, runtime)
        assert isinstance(voter, EmbeddingVoter)
        features = voter.embed(texts)
        weight, bias = fit_softmax_regression(features, targets, len(spec.labels), weights)
        predicted = (features @ weight.T + bias).argmax(axis=1)
        version = versions.following(head_folder(PACKAGE_ROOT, config.name))
        folder = output / config.name / version
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "head.npz", weights=weight, bias=bias)
        record = {
            "voter": config.name,
            "version": version,
            "labels": list(spec.labels),
            "examples": len(texts),
            "examples_per_label": {
                label: int((targets == index).sum()) for index, label in enumerate(spec.labels)
            },
            "examples_sha256": digest,
            "training_accuracy": round(float((predicted == targets).mean()), 4),
            "l2": L2,
        }
        (folder / "head.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        records.append(record)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    spec = load_spec()
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.heads", description=__doc__)
    parser.add_argument("examples", type=Path, help="verified rows: text and label columns")
    parser.add_argument("--output", type=Path, required=True, help="folder for the new heads")
    parser.add_argument("--text-column", default=spec.text_column)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--weight-column", default=None)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    def command() -> int:
        runtime = Runtime(PACKAGE_ROOT, resolve_device(args.device), args.batch_size)
        records = fit_heads(
            args.examples,
            args.output,
            text_column=args.text_column,
            label_column=args.label_column,
            weight_column=args.weight_column,
            spec=spec,
            runtime=runtime,
        )
        print(json.dumps({"event": "heads", "heads": records}), file=sys.stderr)
        return 0

    return guarded(command)


if __name__ == "__main__":
    sys.exit(main())
