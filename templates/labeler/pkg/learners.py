"""Fitting the learned voters' models on verified rows (used by :mod:`.learn` only).

Each kind has a learner built over all the examples' features once; it fits on any
subset of rows (all of them, or the training folds of a cross-validation) and predicts
with the same functions the voter runs at labeling time:

- ``embedding-head``: softmax regression (L2, L-BFGS in float64, deterministic) on the
  encoder's features (its upper-layer view by default), each feature standardised by the
  training rows' mean and deviation (folded into the stored weights), with sample weights
  (torch): the weighted mean cross-entropy plus ``l2 * ||W||^2``;
- ``tfidf``: the :mod:`.tfidf` features and scikit-learn's multinomial
  ``LogisticRegression`` (lbfgs, deterministic), with sample weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import tfidf
from .config import VoterConfig
from .embedding_head import head_probabilities, head_view
from .encoders import view

HEAD_L2 = 0.3
"""The head's L2 penalty on standardised features, against the mean cross-entropy. Measured
in an offline replay of the rounds (Pang & Lee sentences, 5 seeds, both benchmark settings):
0.3 beat 0.1 and 1.0 by 0.4-0.9 points, and beat a penalty that shrinks as rows grow
(scikit-learn's C of 0.002-0.01) by 0.2-0.9 points (BENCHMARKS.md, issue 17)."""
HEAD_MAX_ITERATIONS = 200
TFIDF_C = 10.0
TFIDF_MAX_ITERATIONS = 1000
ABSENT_LOGIT = -1e4
"""Intercept of a label no training row has: it gets no probability."""


@dataclass(frozen=True)
class Fitted:
    """A fitted model: what goes into ``model.json`` and ``weights.safetensors``."""

    record: dict
    arrays: dict[str, np.ndarray]


def fit_softmax_regression(
    features: np.ndarray,
    targets: np.ndarray,
    labels: int,
    weights: np.ndarray,
    l2: float,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (labels, dim) and bias (labels,) minimising weighted cross-entropy + L2."""
    import torch

    torch.manual_seed(seed)
    x = torch.tensor(features, dtype=torch.float64)
    y = torch.tensor(targets, dtype=torch.long)
    w = torch.tensor(weights / max(weights.sum(), 1e-12), dtype=torch.float64)
    weight = torch.zeros((labels, x.shape[1]), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(labels, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=HEAD_MAX_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        losses = torch.nn.functional.cross_entropy(x @ weight.T + bias, y, reduction="none")
        loss = (losses * w).sum() + l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().numpy(), bias.detach().numpy()


class HeadLearner:
    """A softmax-regression head over an encoder's precomputed features (rows, views * dim),
    reading the view its options name."""

    def __init__(self, config: VoterConfig, features: np.ndarray, labels: int, seed: int):
        self.view = head_view(config.options)
        self.features = np.asarray(view(np.asarray(features), self.view), dtype=np.float64)
        self.labels = labels
        self.seed = seed
        self.l2 = float(config.options.get("l2", HEAD_L2))
        self.encoder = {
            "source": config.source,
            "revision": config.revision,
            "max_length": config.options.get("max_length"),
        }

    def fit(self, rows: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> Fitted:
        """Standardise on the training rows, fit, and fold the standardisation into the
        weights, so the stored head reads the raw features."""
        features = self.features[rows]
        mean = np.average(features, axis=0, weights=weights)
        scale = np.sqrt(np.average((features - mean) ** 2, axis=0, weights=weights)) + 1e-6
        weight, bias = fit_softmax_regression(
            (features - mean) / scale, targets, self.labels, weights, self.l2, self.seed
        )
        weight = weight / scale
        bias = bias - weight @ mean
        hyper = {
            "view": self.view,
            "l2": self.l2,
            "standardized": True,
            "max_iterations": HEAD_MAX_ITERATIONS,
        }
        record = {"hyper": hyper, "encoder": self.encoder}
        return Fitted(record, {"weights": weight, "bias": bias})

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray:
        return head_probabilities(fitted.arrays, self.features[rows])


class TfidfLearner:
    """Word and character n-gram tf-idf features and a multinomial logistic regression."""

    def __init__(self, config: VoterConfig, texts: Sequence[str], labels: int, seed: int):
        self.terms = tfidf.analyze(texts)
        """Each text's term counts per view, split once for every fold's fit."""
        self.labels = labels
        self.seed = seed
        self.max_features = tfidf.max_features(config.options)
        self.c = float(config.options.get("C", TFIDF_C))
        self.max_iterations = int(config.options.get("max_iter", TFIDF_MAX_ITERATIONS))

    def fit(self, rows: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> Fitted:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        terms = self.rows_terms(rows)
        vocabularies, idf, counts = tfidf.fit_vectorizer(terms, self.max_features)
        matrix = tfidf.features(counts, idf)
        blank = matrix.shape[1] == 0  # no training text has a term: learn the label rates
        inputs = np.zeros((matrix.shape[0], 1)) if blank else matrix
        model = LogisticRegression(
            C=self.c, max_iter=self.max_iterations, solver="lbfgs", random_state=self.seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(inputs, targets, sample_weight=weights)
        coef, intercept = self.full_coefficients(model, inputs.shape[1])
        coef = coef[:, : matrix.shape[1]]
        hyper = {
            "C": self.c,
            "max_iter": self.max_iterations,
            "max_features": self.max_features,
            "word_ngrams": list(tfidf.WORD_NGRAMS),
            "char_ngrams": list(tfidf.CHAR_NGRAMS),
            "sublinear_tf": True,
            "smooth_idf": True,
        }
        arrays = {f"idf_{view}": idf[view] for view in tfidf.VIEWS}
        arrays.update(coef=coef, intercept=intercept)
        record = {"hyper": hyper, "vocabulary": vocabularies, "iterations": int(model.n_iter_[0])}
        return Fitted(record, arrays)

    def full_coefficients(self, model, features: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, features) coefficients and (labels,) intercepts for every task label;
        a binary model's one row becomes two opposite halves (the same probabilities)."""
        classes = model.classes_.tolist()
        coef = np.zeros((self.labels, features))
        intercept = np.full(self.labels, ABSENT_LOGIT)
        if len(classes) == 2:
            half, half_intercept = model.coef_[0] / 2, model.intercept_[0] / 2
            coef[classes[0]], coef[classes[1]] = -half, half
            intercept[classes[0]], intercept[classes[1]] = -half_intercept, half_intercept
        else:
            coef[classes], intercept[classes] = model.coef_, model.intercept_
        return coef, intercept

    def rows_terms(self, rows: np.ndarray) -> tfidf.Terms:
        return {view: counts.rows(rows) for view, counts in self.terms.items()}

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray:
        terms = self.rows_terms(rows)
        return tfidf.term_probabilities(terms, fitted.record["vocabulary"], fitted.arrays)
