"""A local Perplexity sonar API: OpenAI-style `/chat/completions` answers carrying
`citations` and `search_results`, so langchain-perplexity's real client runs end to end.

The test sets the next answer and its sources; every request is recorded.
"""

from __future__ import annotations

import itertools
import time

from tests.fakes.json_http import JSON, JsonFake


class FakePerplexity(JsonFake):
    def __init__(self, api_key: str = "pplx-test") -> None:
        super().__init__(api_key)
        self.answer = "No answer scripted."
        self.sources: list[tuple[str, str]] = []  # (title, url)
        self._ids = itertools.count(1)

    def set_answer(self, answer: str, sources: list[tuple[str, str]]) -> None:
        with self._lock:
            self.answer, self.sources = answer, list(sources)

    def handle(self, method: str, path: str, body: JSON) -> tuple[int, JSON]:
        if path != "/chat/completions":
            return 404, {"error": {"message": "not found"}}
        with self._lock:
            answer, sources = self.answer, list(self.sources)
        return 200, {
            "id": f"pplx-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "sonar"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": answer},
                }
            ],
            "citations": [url for _, url in sources],
            "search_results": [
                {"title": title, "url": url, "date": None} for title, url in sources
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52},
        }
