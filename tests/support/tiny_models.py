"""Tiny real sequence classifiers built at test time (no Hub, a few seconds each).

Each model is a genuine BERT-style network with a trained WordPiece tokenizer,
saved with ``save_pretrained`` (safetensors), so ``AutoModelForSequenceClassification``
and ``pipeline("text-classification")`` load it exactly as they would a Hub model.
Weights are random but seeded: the same ``seed`` gives the same model, and
different seeds give voters that disagree on some rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CORPUS = [
    "you are a wonderful person and I love this",
    "this is the worst thing I have ever seen",
    "I hate you so much, you idiot",
    "what a lovely day in the park with friends",
    "shut up, nobody cares about your stupid opinion",
    "thanks for the help, really appreciated",
    "the movie was boring and far too long",
    "great service, friendly staff, will come back",
    "go away loser, you are pathetic",
    "the weather is fine today",
]


BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def bert_wordpiece(vocab: dict[str, int] | None = None):
    """An uncased BERT-style WordPiece ``tokenizers.Tokenizer`` over ``vocab`` (None: empty,
    to be trained)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def wrap_bert(tokenizer, model_max_length: int):
    """``tokenizer`` with BERT's [CLS] ... [SEP] framing, as transformers loads a Hub one."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


def build_tokenizer(directory: Path, corpus: Sequence[str] = CORPUS):
    """A small WordPiece tokenizer over the corpus's words, wrapped for transformers.

    The vocabulary is built here (sorted), not trained: the tokenizers trainer breaks
    frequency ties differently from one process to the next, which made the tiny models,
    and every test that depends on their votes, vary between sessions.
    """
    import string

    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words = sorted(
        {w for text in corpus for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text))}
    )
    chars = sorted(
        {c for word in words for c in word}
        | set(string.ascii_lowercase + string.digits + string.punctuation)
    )
    vocab = BERT_SPECIALS + chars + [f"##{c}" for c in chars] + [w for w in words if w not in chars]
    tokenizer = bert_wordpiece({token: index for index, token in enumerate(vocab)})
    wrapped = wrap_bert(tokenizer, model_max_length=64)
    wrapped.save_pretrained(directory)
    return wrapped


def build_classifier(
    directory: Path,
    id2label: dict[int, str],
    *,
    seed: int = 0,
    hidden_size: int = 32,
    logit_bias: Sequence[float] | None = None,
    train_examples: Sequence[tuple[str, int]] = (),
    train_steps: int = 60,
) -> Path:
    """Build and save a tiny BERT sequence classifier with the given ``id2label``.

    ``logit_bias`` adds a constant to each class logit (through the classifier
    bias), which makes a voter lean towards some labels: useful to script
    agreement and disagreement between voters. ``train_examples`` (text, label
    index) are fitted for ``train_steps`` full-batch steps, so the model really
    responds to its input (random weights alone give near-constant outputs).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(directory)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=64,
        num_labels=len(id2label),
        id2label={int(k): v for k, v in id2label.items()},
        label2id={v: int(k) for k, v in id2label.items()},
        pad_token_id=tokenizer.pad_token_id,
    )
    model = AutoModelForSequenceClassification.from_config(config)
    if train_examples:
        _fit(model, tokenizer, train_examples, train_steps)
    if logit_bias is not None:
        with torch.no_grad():
            model.classifier.bias.add_(torch.tensor(list(logit_bias), dtype=torch.float32))
    model.eval()
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def _fit(model, tokenizer, examples: Sequence[tuple[str, int]], steps: int) -> None:
    import torch

    batch = tokenizer([text for text, _ in examples], padding=True, return_tensors="pt")
    targets = torch.tensor([label for _, label in examples])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**batch, labels=targets).loss
        loss.backward()
        optimizer.step()
    model.eval()


TOXIC_EXAMPLES = (
    ("you are an idiot", 1),
    ("shut up you stupid loser", 1),
    ("I hate you, go away", 1),
    ("you are pathetic and dumb", 1),
    ("what a moron", 1),
    ("have a lovely day", 0),
    ("thanks for the help", 0),
    ("the weather is fine today", 0),
    ("great service and friendly staff", 0),
    ("see you at the park", 0),
)
"""Toxicity examples (1 = toxic) for training tiny voters that react to words."""
