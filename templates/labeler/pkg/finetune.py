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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import tabular
from .adapters import (
    CONFIG,
    RECORD,
    WEIGHTS,
    current_adapter,
    install_adapters,
    next_version,
    target_modules,
)
from .cli import PACKAGE_ROOT, resolve_device
from .commands import guarded
from .embedding import EmbeddingVoter
from .spec import SPEC
from .transformer import SequenceClassifierVoter, load_transformer
from .voters import Runtime, load_voter

TUNABLE_KINDS = ("hf-sequence-classifier", "embedding")
MIN_HOLDOUT = 10
"""Fewer held-out rows than this cannot tell a better adapter from a worse one."""


@dataclass(frozen=True)
class Hyperparameters:
    stage_size: int = 2000
    replay_ratio: float = 1.0
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 16
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.1
    seed: int = 0
    holdout_fraction: float = 0.2
    holdout_limit: int = 500


@dataclass(frozen=True)
class Example:
    text: str
    label: int


def read_examples(
    path: Path, text_column: str, label_column: str, source_column: str
) -> tuple[list[Example], list[Example]]:
    """Verified and consensus examples, in file order."""
    verified: list[Example] = []
    consensus: list[Example] = []
    for chunk in tabular.iter_chunks(path, 10_000):
        for row in chunk:
            label, source = row.get(label_column), row.get(source_column)
            if label not in SPEC.labels:
                raise tabular.DataError(f"{path}: label {label!r} is not one of {SPEC.labels}")
            if source not in ("verified", "consensus"):
                raise tabular.DataError(
                    f"{path}: {source_column} must be 'verified' or 'consensus', not {source!r}"
                )
            text = "" if row.get(text_column) is None else str(row[text_column])
            target = verified if source == "verified" else consensus
            target.append(Example(text, SPEC.labels.index(label)))
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
    path: Path, verified: list[Example], hyper: Hyperparameters
) -> tuple[list[Example], list[Example]]:
    """The frozen holdout (read, or carved and written once) and the verified rows left."""
    if path.exists():
        holdout, _ = read_examples(path, "text", "label", "source")
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
            {"text": e.text, "label": SPEC.labels[e.label], "source": "verified"} for e in holdout
        )
    return training, holdout


class Trainee:
    """One voter being tuned: a trainable LoRA model that outputs task-label log-probabilities."""

    def __init__(self, config, runtime: Runtime, hyper: Hyperparameters) -> None:
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        self.config = config
        self.runtime = runtime
        voter = load_voter(config, SPEC.labels, runtime)
        self.tokenizer, self.max_length = voter.tokenizer, voter.max_length
        self.embedding = isinstance(voter, EmbeddingVoter)
        auto_class = "AutoModel" if self.embedding else "AutoModelForSequenceClassification"
        _, base = load_transformer(config, runtime, auto_class, adapters=False)
        base.float()  # trained in fp32 on every device; the labeler loads it like any model
        self.promoted = current_adapter(runtime.package_root, config.name)
        torch.manual_seed(hyper.seed)  # LoRA's initial weights
        if self.promoted is not None:
            self.model = PeftModel.from_pretrained(base, str(self.promoted), is_trainable=True)
        else:
            self.modules = target_modules(base)
            lora = LoraConfig(
                task_type="FEATURE_EXTRACTION" if self.embedding else "SEQ_CLS",
                r=hyper.rank,
                lora_alpha=hyper.alpha,
                lora_dropout=hyper.dropout,
                target_modules=self.modules,
            )
            self.model = get_peft_model(base, lora)
        self.modules = sorted(self.model.peft_config["default"].target_modules)
        device = runtime.device
        if self.embedding:
            weights, bias = voter.linear_head()
            self.head = torch.nn.Linear(weights.shape[1], weights.shape[0]).to(device)
            with torch.no_grad():
                self.head.weight.copy_(torch.tensor(weights, dtype=torch.float32))
                self.head.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        else:
            assert isinstance(voter, SequenceClassifierVoter)
            self.matrix = torch.tensor(voter.matrix, dtype=torch.float32, device=device)
        del voter
        self.model.to(device)

    def parameters(self) -> list:
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        return trainable + (list(self.head.parameters()) if self.embedding else [])

    def snapshot(self) -> list:
        return [p.detach().clone() for p in self.parameters()]

    def restore(self, snapshot: list) -> None:
        import torch

        with torch.no_grad():
            for parameter, saved in zip(self.parameters(), snapshot, strict=True):
                parameter.copy_(saved)

    def log_probabilities(self, texts: Sequence[str]):
        import torch

        inputs = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        wanted = set(self.tokenizer.model_input_names)
        inputs = {k: v.to(self.runtime.device) for k, v in inputs.items() if k in wanted}
        if self.embedding:
            hidden = self.model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            pooled = mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-12)
            return torch.log_softmax(self.head(pooled), dim=-1)
        probabilities = self.model(**inputs).logits.float().softmax(dim=-1) @ self.matrix
        totals = probabilities.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        return torch.log((probabilities / totals).clamp(min=1e-12))

    def accuracy(self, examples: Sequence[Example], batch_size: int) -> float:
        import torch

        self.model.eval()
        correct = 0
        with torch.inference_mode():
            for start in range(0, len(examples), batch_size):
                batch = examples[start : start + batch_size]
                predicted = self.log_probabilities([e.text for e in batch]).argmax(dim=-1)
                correct += sum(
                    int(p) == e.label for p, e in zip(predicted.tolist(), batch, strict=True)
                )
        return correct / max(len(examples), 1)

    def train(self, examples: Sequence[Example], hyper: Hyperparameters, seed: int) -> None:
        import torch

        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(self.parameters(), lr=hyper.learning_rate)
        labels = torch.tensor([e.label for e in examples], device=self.runtime.device)
        self.model.train()
        for _ in range(hyper.epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            for start in range(0, len(order), hyper.batch_size):
                rows = order[start : start + hyper.batch_size]
                log_probabilities = self.log_probabilities([examples[i].text for i in rows])
                loss = torch.nn.functional.nll_loss(log_probabilities, labels[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.model.eval()

    def save(self, folder: Path, record: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder), safe_serialization=True)
        (folder / "README.md").unlink(missing_ok=True)  # PEFT's empty model card
        # PEFT writes target_modules from a set, in an order that varies between processes.
        config_file = folder / CONFIG
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if isinstance(config.get("target_modules"), list):
            config["target_modules"] = sorted(config["target_modules"])
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", "utf-8")
        if self.embedding:
            weights = self.head.weight.detach().cpu().double().numpy()
            bias = self.head.bias.detach().cpu().double().numpy()
            np.savez(folder / "head.npz", weights=weights, bias=bias)
        for name in (WEIGHTS, CONFIG):
            record.setdefault("files", {})[name] = hashlib.sha256(
                (folder / name).read_bytes()
            ).hexdigest()
        (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


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
    text_column: str = "text",
    label_column: str = "label",
    source_column: str = "source",
    on_stage=None,
) -> dict:
    """Train every tunable voter stage by stage; returns the log of stages and promotions."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    verified, consensus = read_examples(examples_path, text_column, label_column, source_column)
    training, holdout = load_holdout(holdout_path, verified, hyper)
    if not training:
        raise tabular.DataError(f"{examples_path}: no verified rows left to train on")
    stages = [
        training[start : start + hyper.stage_size]
        for start in range(0, len(training), hyper.stage_size)
    ]
    digest = hashlib.sha256(examples_path.read_bytes()).hexdigest()
    log: list[dict] = []
    promoted: dict[str, str] = {}
    output.mkdir(parents=True, exist_ok=True)
    for config in SPEC.voters:
        if config.kind not in TUNABLE_KINDS:
            continue
        trainee = Trainee(config, runtime, hyper)
        version = next_version(runtime.package_root, config.name)
        accuracy = trainee.accuracy(holdout, hyper.batch_size * 4)
        for number, rows in enumerate(stages, start=1):
            replay = replay_sample(
                consensus, int(hyper.replay_ratio * len(rows)), hyper.seed, number
            )
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
                    labels=list(SPEC.labels),
                    base_revision=config.revision,
                    target_modules=trainee.modules,
                    examples_sha256=digest,
                    hyperparameters=hyper.__dict__,
                )
                trainee.save(output / config.name / version, record)
                promoted[config.name] = version
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
        del trainee
    return {"stages": log, "promoted": promoted}


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
            args.examples, args.holdout, args.output, hyper, runtime, on_stage=report_stage
        )
        if args.install:
            install_adapters(args.output, result["promoted"], PACKAGE_ROOT)
        print(json.dumps({"event": "finetune", **result}), file=sys.stderr, flush=True)
        return 0

    return guarded(command)


if __name__ == "__main__":
    sys.exit(main())
