"""Staged LoRA fine-tuning of the voters on verified rows, with a regression gate.

``python -m <package>.finetune EXAMPLES --holdout HOLDOUT --output FOLDER``

EXAMPLES has text, label and source columns. Rows whose source is ``verified``
(an LLM or a person settled them: the rows where the voters were weak) are the
training data, in order, in stages of ``--stage-size`` rows; ``consensus`` rows
(the voters agreed) are replayed, ``--replay-ratio`` per verified row, so that a
voter does not forget what it knew. HOLDOUT is a frozen slice of verified rows
that gates every stage: when the file does not exist yet it is carved from the
verified rows (a fixed share, chosen by a hash of each text) and written; later
calls reuse it unchanged, so every stage is judged on the same rows.

Every transformer voter trains from its promoted state: Hugging Face classifiers
with a PEFT LoRA adapter (``task_type=SEQ_CLS``), embedding voters with a LoRA
adapter on the encoder and their linear head. A stage is promoted only if the
voter's accuracy on the holdout does not drop; otherwise it is rolled back and
logged. Each promoted stage is written as ``FOLDER/<voter>/v<N>/``, and
``FOLDER/stages.jsonl`` logs every stage; ``--install`` also makes the last
promoted versions current in this package. Seeded: the same inputs give the same
adapters on the same machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import tabular
from .adapters import install_adapters, next_version
from .commands import PACKAGE_ROOT, guarded, load_spec, resolve_device
from .config import LabelerSpec
from .trainee import Example, Hyperparameters, Trainee
from .voters import Runtime

TUNABLE_KINDS = ("hf-sequence-classifier", "embedding")
MIN_HOLDOUT = 10
"""Fewer held-out rows than this cannot tell a better adapter from a worse one."""


def read_examples(
    path: Path, text_column: str, label_column: str, source_column: str, labels: tuple[str, ...]
) -> tuple[list[Example], list[Example]]:
    """Verified and consensus examples (label indices into ``labels``), in file order."""
    tabular.require_columns(path, text_column, label_column, source_column)
    verified: list[Example] = []
    consensus: list[Example] = []
    for chunk in tabular.iter_chunks(path, 10_000):
        for row in chunk:
            label, source = row.get(label_column), row.get(source_column)
            if label not in labels:
                raise tabular.DataError(f"{path}: label {label!r} is not one of {labels}")
            if source not in ("verified", "consensus"):
                raise tabular.DataError(
                    f"{path}: {source_column} must be 'verified' or 'consensus', not {source!r}"
                )
            text = "" if row.get(text_column) is None else str(row[text_column])
            target = verified if source == "verified" else consensus
            target.append(Example(text, labels.index(label)))
    return verified, consensus


def text_rank(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def carve_holdout(
    verified: Sequence[Example], fraction: float, limit: int
) -> tuple[list[Example], list[Example]]:
    """(training rows, held-out rows): the rows with the smallest text hashes are held out."""
    wanted = min(limit, int(len(verified) * fraction))
    ranked = sorted(range(len(verified)), key=lambda i: text_rank(verified[i].text))
    held = set(ranked[:wanted])
    return (
        [e for i, e in enumerate(verified) if i not in held],
        [e for i, e in enumerate(verified) if i in held],
    )


def load_holdout(
    path: Path, verified: list[Example], hyper: Hyperparameters, labels: tuple[str, ...]
) -> tuple[list[Example], list[Example]]:
    """The frozen holdout (read, or carved and written once) and the verified rows left."""
    if path.exists():
        holdout, _ = read_examples(path, "text", "label", "source", labels)
        held = {e.text for e in holdout}
        return [e for e in verified if e.text not in held], holdout
    training, holdout = carve_holdout(verified, hyper.holdout_fraction, hyper.holdout_limit)
    if len(holdout) < MIN_HOLDOUT:
        raise tabular.DataError(
            f"{len(verified)} verified rows are too few: holding out {hyper.holdout_fraction:.0%} "
            f"must give at least {MIN_HOLDOUT} rows to judge a stage by"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with tabular.TableWriter(path, ["text", "label", "source"]) as writer:
        writer.write(
            {"text": e.text, "label": labels[e.label], "source": "verified"} for e in holdout
        )
    return training, holdout


def replay_sample(consensus: Sequence[Example], count: int, seed: int, stage: int) -> list[Example]:
    order = np.random.default_rng([seed, stage]).permutation(len(consensus))
    return [consensus[i] for i in order[:count]]


def finetune(
    examples_path: Path,
    holdout_path: Path,
    output: Path,
    hyper: Hyperparameters,
    runtime: Runtime,
    *,
    spec: LabelerSpec,
    text_column: str = "text",
    label_column: str = "label",
    source_column: str = "source",
    on_stage=None,
) -> dict:
    """Train every tunable voter stage by stage; returns the log of stages and promotions."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    verified, consensus = read_examples(
        examples_path, text_column, label_column, source_column, spec.labels
    )
    training, holdout = load_holdout(holdout_path, verified, hyper, spec.labels)
    if not training:
        raise tabular.DataError(f"{examples_path}: no verified rows left to train on")
    stages = [
        training[start : start + hyper.stage_size]
        for start in range(0, len(training), hyper.stage_size)
    ]
    provenance = {
        "labels": list(spec.labels),
        "examples_sha256": hashlib.sha256(examples_path.read_bytes()).hexdigest(),
    }
    log: list[dict] = []
    promoted: dict[str, str] = {}
    output.mkdir(parents=True, exist_ok=True)
    for config in spec.voters:
        if config.kind not in TUNABLE_KINDS:
            continue
        # One voter's model at a time: the trainee is gone when its stages are.
        trainee = Trainee(config, spec.labels, runtime, hyper)
        entries = tune_voter(
            trainee, stages, consensus, holdout, hyper, output, provenance, on_stage
        )
        del trainee
        log += entries
        versions = [entry["version"] for entry in entries if entry["version"] is not None]
        if versions:
            promoted[config.name] = versions[-1]
    return {"stages": log, "promoted": promoted}


def tune_voter(
    trainee: Trainee,
    stages: Sequence[list[Example]],
    consensus: Sequence[Example],
    holdout: Sequence[Example],
    hyper: Hyperparameters,
    output: Path,
    provenance: dict,
    on_stage=None,
) -> list[dict]:
    """Train ``trainee`` stage by stage, saving each promoted stage as a new version and
    rolling back each other one; every stage is logged to ``output/stages.jsonl``."""
    config, runtime = trainee.config, trainee.runtime
    version = next_version(runtime.package_root, config.name)
    accuracy = trainee.accuracy(holdout, hyper.batch_size * 4)
    log = []
    for number, rows in enumerate(stages, start=1):
        replay = replay_sample(consensus, int(hyper.replay_ratio * len(rows)), hyper.seed, number)
        data = rows + replay
        saved = trainee.snapshot()
        started = time.monotonic()
        trainee.train(data, hyper, hyper.seed + number)
        seconds = time.monotonic() - started
        after = trainee.accuracy(holdout, hyper.batch_size * 4)
        entry = {
            "voter": config.name,
            "stage": number,
            "verified_rows": len(rows),
            "replay_rows": len(replay),
            "holdout_rows": len(holdout),
            "holdout_accuracy_before": round(accuracy, 4),
            "holdout_accuracy_after": round(after, 4),
            "promoted": after >= accuracy,
            "seconds": round(seconds, 3),
            "samples_per_s": round(len(data) * hyper.epochs / max(seconds, 1e-9), 2),
            "device": runtime.device,
        }
        if entry["promoted"]:
            entry["version"] = version
            record = dict(entry)
            record.update(
                labels=provenance["labels"],
                base_revision=config.revision,
                target_modules=trainee.modules,
                examples_sha256=provenance["examples_sha256"],
                hyperparameters=hyper.__dict__,
            )
            trainee.save(output / config.name / version, record)
            accuracy = after
            version = f"v{int(version[1:]) + 1}"
        else:
            trainee.restore(saved)
            entry["version"] = None
        log.append(entry)
        with open(output / "stages.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
        if on_stage is not None:
            on_stage(entry)
    return log


def report_stage(entry: dict) -> None:
    print(json.dumps({"event": "finetune-stage", **entry}), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    defaults = Hyperparameters()
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.finetune", description=__doc__)
    parser.add_argument("examples", type=Path, help="text, label and source columns")
    parser.add_argument("--holdout", type=Path, required=True, help="frozen held-out rows")
    parser.add_argument("--output", type=Path, required=True, help="folder for new adapters")
    parser.add_argument("--install", action="store_true", help="make promoted adapters current")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--source-column", default="source")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    for name in ("stage_size", "epochs", "batch_size", "rank", "alpha", "seed", "holdout_limit"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name)
        )
    for name in ("replay_ratio", "learning_rate", "dropout", "holdout_fraction"):
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, type=float, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    hyper = Hyperparameters(
        **{name: getattr(args, name) for name in Hyperparameters.__dataclass_fields__}
    )
    if min(hyper.stage_size, hyper.epochs, hyper.batch_size, hyper.rank) < 1:
        parser.error("--stage-size, --epochs, --batch-size and --rank must be at least 1")
    if not 0 < hyper.holdout_fraction < 1 or hyper.replay_ratio < 0:
        parser.error("--holdout-fraction must be in (0, 1) and --replay-ratio at least 0")

    def command() -> int:
        runtime = Runtime(PACKAGE_ROOT, resolve_device(args.device), hyper.batch_size * 4)
        result = finetune(
            args.examples,
            args.holdout,
            args.output,
            hyper,
            runtime,
            spec=load_spec(),
            on_stage=report_stage,
        )
        if args.install:
            install_adapters(args.output, result["promoted"], PACKAGE_ROOT)
        print(json.dumps({"event": "finetune", **result}), file=sys.stderr, flush=True)
        return 0

    return guarded(command)


if __name__ == "__main__":
    sys.exit(main())
