"""Lexicon and classic-model specialists that ship inside PyPI packages (no download).

Each has fixed native labels; the spec's label map folds them onto the task's
(``neutral`` is ignored for a two-label sentiment task). Sentiment lexicons
give a polarity score s in [-1, 1], turned into probabilities by a softmax
over (negative, neutral, positive) logits ``(-k(s+b), 0, k(s-b))``: a neutral
band of half-width b, and a score of exactly 0 (no sentiment word found)
becomes uniform on a two-label task, so the voter abstains there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import VoterConfig
from .voters import Runtime, label_map_matrix, to_task_probabilities

SENTIMENT = ("negative", "neutral", "positive")


def polarity_probabilities(scores: np.ndarray, band: float, scale: float) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    logits = np.stack(
        [scale * (-scores - band), np.zeros_like(scores), scale * (scores - band)], axis=1
    )
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


class _Specialist:
    native_labels: tuple[str, ...] = SENTIMENT

    def __init__(self, config: VoterConfig, labels: Sequence[str], runtime: Runtime) -> None:
        self.config = config
        self.matrix = label_map_matrix(self.native_labels, config.label_map, labels)
        self.setup()

    def setup(self) -> None:
        """Load the library's model."""

    def native(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities over ``native_labels``."""
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return to_task_probabilities(self.native(texts), self.matrix)


class _Polarity(_Specialist):
    band = 0.05
    scale = 4.0

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def native(self, texts: Sequence[str]) -> np.ndarray:
        band = float(self.config.options.get("band", self.band))
        scale = float(self.config.options.get("scale", self.scale))
        return polarity_probabilities(self.scores(texts), band, scale)


class VaderVoter(_Polarity):
    """VADER's compound score (social-media sentiment lexicon)."""

    def setup(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.analyzer.polarity_scores(text)["compound"] for text in texts])


class TextBlobVoter(_Polarity):
    """TextBlob's pattern-lexicon polarity (needs no NLTK corpora)."""

    scale = 6.0

    def setup(self) -> None:
        from textblob import TextBlob

        self.blob = TextBlob

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self.blob(text).sentiment.polarity for text in texts])


class AfinnVoter(_Polarity):
    """AFINN word valences, summed and squashed with tanh(score / 4)."""

    band = 0.1

    def setup(self) -> None:
        from afinn import Afinn

        self.afinn = Afinn()

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.tanh(np.array([self.afinn.score(text) for text in texts]) / 4.0)


class ProfanityVoter(_Specialist):
    """alt-profanity-check: a linear model of offensive language."""

    native_labels = ("not offensive", "offensive")

    def setup(self) -> None:
        from profanity_check import predict_prob

        self.predict_prob = predict_prob

    def native(self, texts: Sequence[str]) -> np.ndarray:
        offensive = np.asarray(self.predict_prob(list(texts)), dtype=np.float64)
        return np.stack([1.0 - offensive, offensive], axis=1)


class HateSonarVoter(_Specialist):
    """HateSonar (Davidson et al.) as ONNX: hate speech, offensive language or neither."""

    native_labels = ("hate speech", "offensive language", "neither")

    def setup(self) -> None:
        import onnx
        import onnxruntime
        from hatesonar.api import DEFAULT_MODEL_FILE

        model = onnx.load(str(DEFAULT_MODEL_FILE))
        # Its StringNormalizer asks for en_US.UTF-8, which minimal systems lack; C.UTF-8
        # lowercases ASCII text identically.
        for node in model.graph.node:
            if node.op_type == "StringNormalizer":
                kept = [a for a in node.attribute if a.name != "locale"]
                del node.attribute[:]
                node.attribute.extend(kept + [onnx.helper.make_attribute("locale", "C.UTF-8")])
        self.session = onnxruntime.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )

    def native(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 3))
        _, probabilities = self.session.run(None, {"text": np.array(list(texts), dtype=object)})
        return np.array([[row[i] for i in range(3)] for row in probabilities], dtype=np.float64)
