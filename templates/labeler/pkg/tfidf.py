"""The ``tfidf`` voter: a sparse lexical model learned from verified rows.

Two views of each lowercased text, as scikit-learn's ``TfidfVectorizer`` would build
them: word 1-2-grams (tokens ``(?u)\\b\\w\\w+\\b``) and character 2-5-grams within word
boundaries (``char_wb``). Each view weighs its terms by sublinear tf (``1 + ln tf``) times
smooth idf (``ln((1 + n) / (1 + df)) + 1``), is L2-normalised, and the two are
concatenated. The vocabulary keeps each view's most frequent terms (``max_features``;
ties go to the earlier term). A multinomial logistic regression maps the features to
label probabilities.

Everything here needs numpy and scipy only: :mod:`.learners` fits the regression with
scikit-learn, through these same functions, and stores vocabulary, idf and coefficients.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .config import VoterConfig
from .learned import LearnedVoter, uniform
from .voters import Runtime, VoterLoadError

WORD = re.compile(r"(?u)\b\w\w+\b")
"""scikit-learn's default token pattern."""
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
MAX_FEATURES = 50_000
VIEWS = ("word", "char")


def word_terms(text: str) -> list[str]:
    tokens = WORD.findall(text.lower())
    terms = list(tokens)
    for n in range(2, WORD_NGRAMS[1] + 1):
        terms += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return terms


def char_terms(text: str) -> list[str]:
    """Character n-grams of each whitespace-separated word padded with one space each side;
    a word shorter than n gives itself once (as scikit-learn's ``char_wb``)."""
    terms = []
    for word in text.lower().split():
        padded = f" {word} "
        for n in range(CHAR_NGRAMS[0], CHAR_NGRAMS[1] + 1):
            if len(padded) <= n:
                terms.append(padded)
                break
            terms += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return terms


ANALYZERS = {"word": word_terms, "char": char_terms}


def build_vocabulary(texts: Sequence[str], view: str, max_features: int) -> list[str]:
    """The view's ``max_features`` most frequent terms (total count), ties by term."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(ANALYZERS[view](text))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return sorted(term for term, _ in ranked[:max_features])


def term_matrix(texts: Sequence[str], view: str, vocabulary: dict[str, int]):
    """(texts, terms) sparse counts of the vocabulary's terms."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for text in texts:
        counts = Counter(vocabulary[t] for t in ANALYZERS[view](text) if t in vocabulary)
        columns = sorted(counts)
        indices += columns
        data += [counts[column] for column in columns]
        indptr.append(len(indices))
    shape = (len(texts), len(vocabulary))
    return csr_matrix((np.array(data, dtype=np.float64), indices, indptr), shape=shape)


def smooth_idf(counts, documents: int) -> np.ndarray:
    document_frequency = np.bincount(counts.indices, minlength=counts.shape[1])
    return np.log((1.0 + documents) / (1.0 + document_frequency)) + 1.0


def weigh(counts, idf: np.ndarray):
    """Sublinear tf times idf, each row L2-normalised."""
    weighted = counts.copy()
    weighted.data = 1.0 + np.log(weighted.data)
    weighted = weighted.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return weighted.multiply(scale[:, None]).tocsr()


def features(texts: Sequence[str], vocabularies: dict[str, list[str]], idf: dict[str, np.ndarray]):
    """The model's input: each view weighted and normalised, then side by side."""
    from scipy.sparse import hstack

    views = []
    for view in VIEWS:
        index = {term: position for position, term in enumerate(vocabularies[view])}
        views.append(weigh(term_matrix(texts, view, index), idf[view]))
    return hstack(views, format="csr")


def fit_vectorizer(
    texts: Sequence[str], max_features: int
) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """Vocabularies and idf of each view, from the training texts."""
    vocabularies, idf = {}, {}
    for view in VIEWS:
        vocabularies[view] = build_vocabulary(texts, view, max_features)
        index = {term: position for position, term in enumerate(vocabularies[view])}
        idf[view] = smooth_idf(term_matrix(texts, view, index), len(texts))
    return vocabularies, idf


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probabilities(
    texts: Sequence[str], vocabularies: dict[str, list[str]], arrays: dict[str, np.ndarray]
) -> np.ndarray:
    """(texts, labels) probabilities of a fitted model (``idf_<view>``, ``coef``,
    ``intercept``)."""
    if not texts:
        return np.zeros((0, arrays["coef"].shape[0]))
    idf = {view: arrays[f"idf_{view}"] for view in VIEWS}
    matrix = features(texts, vocabularies, idf)
    scores = np.asarray(matrix @ arrays["coef"].T) + arrays["intercept"]
    return softmax(scores)


def max_features(options: dict) -> int:
    value = options.get("max_features", MAX_FEATURES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_features must be a positive integer, not {value!r}")
    return value


class TfidfVoter(LearnedVoter):
    """Abstains until a version is installed; then the stored model's probabilities."""

    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.load_stored(config, labels, runtime.package_root)
        if self.stored is not None:
            self.vocabularies = self.stored.record.get("vocabulary", {})
            if sorted(self.vocabularies) != sorted(VIEWS):
                raise VoterLoadError(f"voter {config.name}: learned version has no vocabulary")

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if self.stored is None:
            return uniform(len(texts), len(self.labels))
        return probabilities(texts, self.vocabularies, self.stored.arrays)
