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
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

# Below this probability the guess is not trusted (one word such as "ok" or "menu" is
# written alike in many languages): the caller uses its default language.
MIN_PROBABILITY = 0.5


class LanguageGuesser:
    """Fitted once on example messages by language, then read-only (thread-safe)."""

    def __init__(self, by_language: Mapping[str, Sequence[str]]) -> None:
        texts = [text for texts in by_language.values() for text in texts]
        labels = [language for language, ts in by_language.items() for _ in ts]
        self.languages: tuple[str, ...] = tuple(sorted(set(labels)))
        self._vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True, lowercase=True
        )
        self._model: LogisticRegression | None = None
        if len(self.languages) >= 2:
            features = self._vectorizer.fit_transform(texts)
            self._model = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced")
            self._model.fit(features, labels)

    def guess(self, text: str) -> str | None:
        """The language code, or None when unsure or the text has no letters."""
        if self._model is None or not any(char.isalpha() for char in text):
            return self.languages[0] if len(self.languages) == 1 else None
        row = self._model.predict_proba(self._vectorizer.transform([text]))[0]
        best = int(np.argmax(row))
        if float(row[best]) < MIN_PROBABILITY:
            return None
        return str(self._model.classes_[best])
