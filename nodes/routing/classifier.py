"""The local intent classifier: two cheap signals over the example messages, averaged.

- lexical: character n-gram TF-IDF + logistic regression. Robust to typos and works in
  any language that has examples, since it needs no model of the language;
- semantic: k-nearest examples by MiniLM embedding (cosine), turned into a distribution
  with a softmax. It generalises to paraphrases, but all-MiniLM-L6-v2 is an English
  model, so outside English it mostly adds agreement rather than reach.

Measured on the example set (10-fold cross-validation), the average of both beat
either alone at every coverage level; STACK.md saw the same on another data set. The
probabilities are not calibrated: the router's thresholds are tuned on cross-validated
predictions (`tune_threshold`), never assumed.

The lexical half costs a fraction of the semantic one (no model run), and where it is
very sure the average agrees with it: `tune_lexical_threshold` finds, on cross-validated
predictions, the confidence above which the router may skip the embedding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from nodes.routing.tfidf_rows import (
    Scores,
    TfidfRows,
    linear_scores,
    logistic_probabilities,
    softmax,
)

Matrix = NDArray[np.float32]
Probabilities = NDArray[np.float64]


@dataclass(frozen=True)
class ClassifierParameters:
    """Compared by cross-validation on the examples (n-gram range, C, k, temperature,
    weight, word n-grams added): these were best or tied best on top-1 accuracy."""

    ngram_range: tuple[int, int] = (2, 5)
    regularisation: float = 30.0  # LogisticRegression's C: the examples are few and clean
    neighbours: int = 3  # mean similarity of the k most similar examples per label
    temperature: float = 0.05  # softmax temperature over those similarities
    lexical_weight: float = 0.5


class LocalIntentClassifier:
    """Fitted once on the examples, then read-only: safe to share between threads."""

    def __init__(self, parameters: ClassifierParameters | None = None) -> None:
        self.parameters = parameters or ClassifierParameters()
        self.labels: tuple[str, ...] = ()
        # The fitted n-gram features and regression, as lexical_proba computes them.
        self._rows: TfidfRows | None = None
        self._weights: Scores = np.zeros((0, 0))
        self._bias: Scores = np.zeros(0)
        self._neighbours = LabelledNeighbours.of(
            np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64), 0
        )

    def fit(
        self, texts: Sequence[str], labels: Sequence[str], vectors: Matrix
    ) -> LocalIntentClassifier:
        if not (len(texts) == len(labels) == len(vectors)):
            raise ValueError("texts, labels and vectors must have the same length")
        self.labels = tuple(sorted(set(labels)))
        vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=self.parameters.ngram_range,
            sublinear_tf=True,
            strip_accents="unicode",
            lowercase=True,
        )
        features = vectorizer.fit_transform(list(texts))
        regression = LogisticRegression(
            C=self.parameters.regularisation,
            class_weight="balanced",
            solver="saga",
            max_iter=5000,
            random_state=0,
        )
        regression.fit(features, list(labels))
        if tuple(regression.classes_) != self.labels:
            raise RuntimeError("label order of the regression differs from ours")
        self._rows = TfidfRows(vectorizer)
        self._weights = np.asarray(regression.coef_, dtype=np.float64).T
        self._bias = np.asarray(regression.intercept_, dtype=np.float64)
        label_index = np.array([self.labels.index(label) for label in labels], dtype=np.int64)
        self._neighbours = LabelledNeighbours.of(_unit_rows(vectors), label_index, len(self.labels))
        return self

    def lexical_proba(self, texts: Sequence[str]) -> Probabilities:
        """The n-gram half alone: no embedding needed."""
        if self._rows is None:
            raise RuntimeError("the classifier is not fitted")
        rows = [self._rows.row(text) for text in texts]
        return logistic_probabilities(linear_scores(rows, self._weights, self._bias))

    def predict_proba(
        self, texts: Sequence[str], vectors: Matrix, *, lexical: Probabilities | None = None
    ) -> Probabilities:
        """(len(texts), len(labels)) probabilities, each row summing to 1. `lexical`:
        `lexical_proba(texts)` when the caller computed it already."""
        if lexical is None:
            lexical = self.lexical_proba(texts)
        semantic = self._neighbour_proba(_unit_rows(vectors))
        weight = self.parameters.lexical_weight
        combined: Probabilities = weight * lexical + (1.0 - weight) * semantic
        return combined

    def _neighbour_proba(self, queries: Matrix) -> Probabilities:
        per_label = self._neighbours.mean_of_nearest(queries, self.parameters.neighbours)
        return softmax(per_label / self.parameters.temperature)


@dataclass(frozen=True)
class LabelledNeighbours:
    """The examples' vectors grouped by label, each group padded to the longest: one
    matrix product and one partial sort score every label at once. A per-label loop of
    masks and sorts cost more than the product itself, on every message routed."""

    vectors: Matrix  # (labels × width, dimensions), padding rows zero
    padding: Matrix  # (labels × width,): 0 for an example, -inf for padding
    counts: NDArray[np.int64]  # examples per label
    width: int

    @classmethod
    def of(cls, vectors: Matrix, label_index: NDArray[np.int64], labels: int) -> LabelledNeighbours:
        counts = np.bincount(label_index, minlength=labels).astype(np.int64)
        width = int(counts.max()) if labels else 0
        dimensions = vectors.shape[1] if vectors.ndim == 2 else 0
        grouped = np.zeros((labels, width, dimensions), dtype=np.float32)
        padding = np.full((labels, width), -np.inf, dtype=np.float32)
        for label in range(labels):
            rows = vectors[label_index == label]
            grouped[label, : len(rows)] = rows
            padding[label, : len(rows)] = 0.0
        return cls(grouped.reshape(labels * width, dimensions), padding.reshape(-1), counts, width)

    def mean_of_nearest(self, queries: Matrix, k: int) -> Probabilities:
        """(queries, labels): each label's mean cosine over its `k` most similar examples
        (over all of them when it has fewer)."""
        labels = len(self.counts)
        similarities = (queries @ self.vectors.T + self.padding).reshape(
            len(queries), labels, self.width
        )
        k = max(1, min(k, self.width))
        nearest = -np.partition(-similarities, k - 1, axis=2)[:, :, :k]
        summed = np.where(np.isfinite(nearest), nearest, 0.0).sum(axis=2, dtype=np.float64)
        means: Probabilities = summed / np.minimum(k, self.counts)
        return means


def _unit_rows(vectors: Matrix) -> Matrix:
    """Cosine similarity as a dot product, whatever embeddings produced the vectors."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    unit: Matrix = array / np.clip(norms, 1e-12, None)
    return unit


@dataclass(frozen=True)
class OutOfFold:
    """Cross-validated probabilities of every example, both the classifier's and its
    lexical half's, over `labels`."""

    labels: tuple[str, ...]
    combined: Probabilities
    lexical: Probabilities


def cross_validated_proba(
    texts: Sequence[str],
    labels: Sequence[str],
    vectors: Matrix,
    *,
    folds: int = 10,
    parameters: ClassifierParameters | None = None,
) -> OutOfFold:
    """Out-of-fold probabilities for every example: each one predicted by a classifier
    that never saw it. This is what thresholds are tuned on."""
    label_names = tuple(sorted(set(labels)))
    result = np.zeros((len(texts), len(label_names)), dtype=np.float64)
    lexical = np.zeros_like(result)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    label_array = np.array(labels)
    for train, test in splitter.split(np.zeros(len(texts)), label_array):
        classifier = LocalIntentClassifier(parameters).fit(
            [texts[i] for i in train], label_array[train].tolist(), vectors[train]
        )
        if classifier.labels != label_names:
            raise ValueError("every label needs at least `folds` examples")
        held_out = [texts[i] for i in test]
        lexical[test] = classifier.lexical_proba(held_out)
        result[test] = classifier.predict_proba(held_out, vectors[test], lexical=lexical[test])
    return OutOfFold(label_names, result, lexical)


def tune_threshold(
    confidences: Sequence[float],
    correct: Sequence[bool],
    *,
    target_precision: float,
    minimum_routed: int = 20,
) -> float:
    """The lowest threshold (on a 0.01 grid) whose routed share still reaches the
    target precision: the most traffic kept away from the LLM at that accuracy. 1.0
    (route almost nothing locally) when no threshold reaches it."""
    confidence = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(correct, dtype=bool)
    for step in range(101):
        threshold = step / 100
        routed = confidence >= threshold
        if routed.sum() >= minimum_routed and right[routed].mean() >= target_precision:
            return threshold
    return 1.0


def tune_lexical_threshold(
    out_of_fold: OutOfFold, *, route_threshold: float, agreement: float, minimum_covered: int = 20
) -> float:
    """The lowest lexical confidence (0.01 grid, never under 0.5) above which the
    classifier, had it embedded the message, would have decided the same — the same top
    label, confident enough to route (`route_threshold`) — on at least `agreement` of
    the examples covered. There the router may skip the embedding. 1.0 (always embed)
    when no threshold reaches it."""
    same = (out_of_fold.lexical.argmax(axis=1) == out_of_fold.combined.argmax(axis=1)) & (
        out_of_fold.combined.max(axis=1) >= route_threshold
    )
    confidence = out_of_fold.lexical.max(axis=1)
    for step in range(50, 101):
        threshold = step / 100
        covered = confidence >= threshold
        if covered.sum() >= minimum_covered and same[covered].mean() >= agreement:
            return threshold
    return 1.0
