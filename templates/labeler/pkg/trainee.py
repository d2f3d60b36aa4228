"""One voter being tuned with LoRA: a trainable model that outputs task-label log-probabilities.

Hugging Face classifiers train a PEFT LoRA adapter (``task_type=SEQ_CLS``) whose outputs
go through the voter's label map; embedding voters train a LoRA adapter on the encoder and
their linear head. :mod:`.finetune` runs the stages and decides what is promoted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .adapters import CONFIG, RECORD, WEIGHTS, current_adapter, target_modules
from .embedding import EmbeddingVoter
from .kinds import load_voter
from .transformer import SequenceClassifierVoter, load_transformer
from .voters import Runtime


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


class Trainee:
    """One voter being tuned: a trainable LoRA model that outputs task-label log-probabilities."""

    def __init__(
        self, config, labels: Sequence[str], runtime: Runtime, hyper: Hyperparameters
    ) -> None:
        import torch
        from peft import LoraConfig, PeftModel, get_peft_model

        self.config = config
        self.runtime = runtime
        voter = load_voter(config, labels, runtime)
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
