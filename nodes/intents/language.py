"""Which language a customer writes in, learnt from the router's example messages.

The menu answers in that language where its texts have a translation, and the day
reader asks dateparser for that language only (asking for every language makes short
words such as French "je" read as a weekday). A character n-gram model needs no model
of any language: the examples in prompts/router/ are already keyed by language, so a
language the operator adds examples for is recognised too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB

from nodes.routing.tfidf_rows import TfidfRows, linear_scores, softmax

# Below this probability the guess is not trusted: the caller uses its default language.
MIN_PROBABILITY = 0.8
# Fewer letters than this say nothing reliable ("hi", "ok" and "menu" are written alike
# in many languages; naive Bayes is sure of them anyway).
MIN_LETTERS = 6


class LanguageGuesser:
    """Fitted once on example messages by language, then read-only (thread-safe)."""

    def __init__(self, by_language: Mapping[str, Sequence[str]]) -> None:
        texts = [text for texts in by_language.values() for text in texts]
        labels = [language for language, ts in by_language.items() for _ in ts]
        self.languages: tuple[str, ...] = tuple(sorted(set(labels)))
        # Naive Bayes: fitted in a tenth of a second (a logistic regression took seconds
        # at start for the same 97 % in 5-fold cross-validation on the examples). Its
        # joint log-likelihood is linear in the features, which is how `guess` reads it.
        self._rows: TfidfRows | None = None
        self._classes: tuple[str, ...] = ()
        self._log_likelihoods: NDArray[np.float64] = np.zeros((0, 0))
        self._log_priors: NDArray[np.float64] = np.zeros(0)
        if len(self.languages) >= 2:
            vectorizer = TfidfVectorizer(
                analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, lowercase=True
            )
            model = MultinomialNB(alpha=0.1).fit(vectorizer.fit_transform(texts), labels)
            self._rows = TfidfRows(vectorizer)
            self._classes = tuple(str(label) for label in model.classes_)
            self._log_likelihoods = np.asarray(model.feature_log_prob_, dtype=np.float64).T
            self._log_priors = np.asarray(model.class_log_prior_, dtype=np.float64)

    def guess(self, text: str, *, min_probability: float = MIN_PROBABILITY) -> str | None:
        """The language code, or None when less sure than `min_probability` or the text
        has too few letters."""
        if sum(char.isalpha() for char in text) < MIN_LETTERS or self._rows is None:
            return self.languages[0] if len(self.languages) == 1 else None
        scores = linear_scores([self._rows.row(text)], self._log_likelihoods, self._log_priors)
        row = softmax(scores)[0]
        best = int(np.argmax(row))
        if float(row[best]) < min_probability:
            return None
        return self._classes[best]
