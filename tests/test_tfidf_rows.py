"""The router's and the language guess's inference computed from scikit-learn's fitted
parameters (nodes/routing/tfidf_rows.py) gives scikit-learn's own answers, on the real
example messages and on messages unlike any of them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB

from nodes.routing.examples import load_router_examples
from nodes.routing.tfidf_rows import TfidfRows, linear_scores, logistic_probabilities, softmax

UNSEEN = [
    "",
    "   ",
    "🙂🙂",
    "Zxqv wvvk?",
    "Où est ma commande n° 4512 ?",
    "Ndashaka kwishyura ubu",
    "THE APP CRASHES!!! when i open it",
    "book book book book book a table",
]


@pytest.fixture(scope="module")
def training() -> tuple[list[str], list[str]]:
    return load_router_examples().training_set()


def _dense(rows: TfidfRows, text: str, width: int) -> np.ndarray:
    row = rows.row(text)
    dense = np.zeros(width)
    dense[row.columns] = row.values
    return dense


def test_features_are_scikit_learns(training: tuple[list[str], list[str]]) -> None:
    texts, _ = training
    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, strip_accents="unicode"
    )
    vectorizer.fit(texts)
    rows = TfidfRows(vectorizer)
    width = len(vectorizer.vocabulary_)
    for text in [*texts[::7], *UNSEEN]:
        expected = vectorizer.transform([text]).toarray()[0]
        assert np.allclose(_dense(rows, text, width), expected, atol=1e-12), text


@pytest.mark.parametrize("two_labels", [False, True])
def test_logistic_probabilities_are_scikit_learns(
    training: tuple[list[str], list[str]], two_labels: bool
) -> None:
    texts, labels = training
    if two_labels:  # one decision column instead of one per label
        first = labels[0]
        labels = [label if label == first else "other" for label in labels]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    regression = LogisticRegression(C=30.0, max_iter=2000).fit(
        vectorizer.fit_transform(texts), labels
    )
    rows = TfidfRows(vectorizer)
    probe = [*texts[::11], *UNSEEN]
    scores = linear_scores([rows.row(t) for t in probe], regression.coef_.T, regression.intercept_)
    expected = regression.predict_proba(vectorizer.transform(probe))
    assert np.allclose(logistic_probabilities(scores), expected, atol=1e-9)


def test_naive_bayes_probabilities_are_scikit_learns() -> None:
    by_language = load_router_examples().by_language
    texts = [text for texts in by_language.values() for text in texts]
    labels = [language for language, ts in by_language.items() for _ in ts]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True)
    model = MultinomialNB(alpha=0.1).fit(vectorizer.fit_transform(texts), labels)
    rows = TfidfRows(vectorizer)
    probe = [*texts[::13], *UNSEEN]
    ours = softmax(
        linear_scores(
            [rows.row(t) for t in probe], model.feature_log_prob_.T, model.class_log_prior_
        )
    )
    assert np.allclose(ours, model.predict_proba(vectorizer.transform(probe)), atol=1e-9)


def test_features_it_cannot_compute_are_refused() -> None:
    vectorizer = TfidfVectorizer(norm="l1").fit(["a text", "another text"])
    with pytest.raises(ValueError, match="l2"):
        TfidfRows(vectorizer)
