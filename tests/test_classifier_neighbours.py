"""The router's nearest-example scores: each label's mean cosine over its k most similar
examples, all labels at once (nodes/routing/classifier.py `LabelledNeighbours`), equal to
scoring each label on its own, including a label with fewer than k examples."""

from __future__ import annotations

import numpy as np

from nodes.routing.classifier import LabelledNeighbours


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_every_label_scores_as_if_scored_alone_even_with_fewer_examples_than_k() -> None:
    rng = np.random.default_rng(7)
    label_index = np.array([0] * 9 + [1] * 2 + [2] * 5 + [0, 2, 1], dtype=np.int64)
    vectors = unit(rng.normal(size=(len(label_index), 16)))
    queries = unit(rng.normal(size=(6, 16)))
    k = 4

    scores = LabelledNeighbours.of(vectors, label_index, 3).mean_of_nearest(queries, k)

    for label in range(3):
        similarities = queries @ vectors[label_index == label].T
        nearest = -np.sort(-similarities, axis=1)[:, :k]  # label 1 has only 3 examples
        np.testing.assert_allclose(scores[:, label], nearest.mean(axis=1), atol=1e-6)
