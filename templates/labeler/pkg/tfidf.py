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


def sparse_counts(rows: Sequence[dict[int, int]], width: int):
    """A (rows, width) float64 CSR matrix from each row's {column: count}."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for row in rows:
        columns = sorted(row)
        indices += columns
        data += [row[column] for column in columns]
        indptr.append(len(indices))
    shape = (len(rows), width)
    return csr_matrix((np.array(data, dtype=np.float64), indices, indptr), shape=shape)


class TermCounts:
    """One view's term counts of some texts: ``matrix`` (texts, terms), its columns the
    texts' distinct ``terms`` in sorted order (``column``: each term's). A learner that fits
    many folds of the same texts splits each text into terms once and takes each fold's rows
    of it."""

    def __init__(self, terms: list[str], matrix, column: dict[str, int]) -> None:
        self.terms = terms
        self.matrix = matrix
        self.column = column

    @classmethod
    def of(cls, texts: Sequence[str], view: str) -> TermCounts:
        counts = [Counter(ANALYZERS[view](text)) for text in texts]
        terms = sorted(set().union(*counts))
        column = {term: position for position, term in enumerate(terms)}
        rows = [{column[term]: n for term, n in text_counts.items()} for text_counts in counts]
        return cls(terms, sparse_counts(rows, len(terms)), column)

    def rows(self, rows: np.ndarray) -> TermCounts:
        return TermCounts(self.terms, self.matrix[rows], self.column)

    def columns(self, vocabulary: Sequence[str]) -> np.ndarray:
        """Each vocabulary term's column, -1 where these texts never use it."""
        return np.array([self.column.get(term, -1) for term in vocabulary], dtype=np.int64)


Terms = dict[str, TermCounts]
"""Each view's term counts of the same texts (:func:`analyze`)."""


def analyze(texts: Sequence[str]) -> Terms:
    return {view: TermCounts.of(texts, view) for view in VIEWS}


def build_vocabulary(counts: TermCounts, max_features: int) -> list[str]:
    """The ``max_features`` most frequent terms of a view (total count over the texts),
    ties by term."""
    totals = np.asarray(counts.matrix.sum(axis=0)).ravel()
    used = np.flatnonzero(totals > 0)  # in term order: ties go to the earlier term
    ranked = used[np.argsort(-totals[used], kind="stable")][:max_features]
    return [counts.terms[position] for position in np.sort(ranked)]


def term_matrix(counts: TermCounts, vocabulary: Sequence[str]):
    """(texts, vocabulary) sparse counts of the vocabulary's terms."""
    from scipy.sparse import csr_matrix

    columns = counts.columns(vocabulary)
    known = np.flatnonzero(columns >= 0)
    selection = csr_matrix(
        (np.ones(len(known)), (columns[known], known)),
        shape=(len(counts.terms), len(vocabulary)),
    )
    matrix = (counts.matrix @ selection).tocsr()
    matrix.sort_indices()
    return matrix


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


def features(counts: dict[str, object], idf: dict[str, np.ndarray]):
    """The model's input from each view's (texts, vocabulary) ``counts``: each view weighted
    and normalised, then side by side."""
    from scipy.sparse import hstack

    return hstack([weigh(counts[view], idf[view]) for view in VIEWS], format="csr")


def vocabulary_counts(texts: Sequence[str], view: str, vocabulary: Sequence[str]):
    """(texts, vocabulary) sparse counts, each text's terms looked up in the vocabulary
    (labeling: no matrix of every term the texts use)."""
    column = {term: position for position, term in enumerate(vocabulary)}
    rows = [Counter(column[t] for t in ANALYZERS[view](text) if t in column) for text in texts]
    return sparse_counts(rows, len(vocabulary))


def fit_vectorizer(
    terms: Terms, max_features: int
) -> tuple[dict[str, list[str]], dict[str, np.ndarray], dict[str, object]]:
    """Vocabularies and idf of each view, from the training texts' ``terms``; and the
    training texts' (texts, vocabulary) counts they were computed from."""
    vocabularies, idf, counts = {}, {}, {}
    for view in VIEWS:
        vocabularies[view] = build_vocabulary(terms[view], max_features)
        counts[view] = term_matrix(terms[view], vocabularies[view])
        idf[view] = smooth_idf(counts[view], counts[view].shape[0])
    return vocabularies, idf, counts


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def probabilities(
    texts: Sequence[str], vocabularies: dict[str, list[str]], arrays: dict[str, np.ndarray]
) -> np.ndarray:
    """(texts, labels) probabilities of a fitted model (``idf_<view>``, ``coef``,
    ``intercept``)."""
    counts = {view: vocabulary_counts(texts, view, vocabularies[view]) for view in VIEWS}
    return scored(counts, arrays)


def term_probabilities(
    terms: Terms, vocabularies: dict[str, list[str]], arrays: dict[str, np.ndarray]
) -> np.ndarray:
    """:func:`probabilities` of texts already split into ``terms``."""
    counts = {view: term_matrix(terms[view], vocabularies[view]) for view in VIEWS}
    return scored(counts, arrays)


def scored(counts: dict[str, object], arrays: dict[str, np.ndarray]) -> np.ndarray:
    if counts[VIEWS[0]].shape[0] == 0:
        return np.zeros((0, arrays["coef"].shape[0]))
    matrix = features(counts, {view: arrays[f"idf_{view}"] for view in VIEWS})
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
