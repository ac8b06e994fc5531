"""A local Tavily: `/search` and `/extract` over a small corpus of pages the test adds,
so tavily-python's real `AsyncTavilyClient(api_base_url=...)` runs end to end.

Search ranks the pages by how many query words they contain (ties keep insertion
order); extract returns each known page's full text and lists unknown URLs as failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.fakes.json_http import JSON, JsonFake


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    content: str  # the search snippet
    raw_content: str  # the whole page, for extract


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


class FakeTavily(JsonFake):
    def __init__(self, api_key: str = "tvly-test") -> None:
        super().__init__(api_key)
        self.pages: list[Page] = []

    def add_page(self, url: str, title: str, content: str, raw_content: str = "") -> None:
        self.pages.append(Page(url, title, content, raw_content or content))

    def handle(self, method: str, path: str, body: JSON) -> tuple[int, JSON]:
        if path == "/search":
            return 200, self._search(body)
        if path == "/extract":
            return 200, self._extract(body)
        return 404, {"detail": {"error": "not found"}}

    def _search(self, body: JSON) -> JSON:
        query = _words(str(body.get("query", "")))
        scored = [
            (len(query & _words(f"{p.title} {p.content}")), index, p)
            for index, p in enumerate(self.pages)
        ]
        ranked = [p for score, _, p in sorted(scored, key=lambda s: (-s[0], s[1])) if score]
        limit = int(body.get("max_results") or 5)
        return {
            "query": body.get("query"),
            "answer": None,
            "images": [],
            "results": [
                {
                    "title": p.title,
                    "url": p.url,
                    "content": p.content,
                    "score": round(1 / (rank + 1), 3),
                    "raw_content": None,
                }
                for rank, p in enumerate(ranked[:limit])
            ],
            "response_time": 0.01,
        }

    def _extract(self, body: JSON) -> JSON:
        urls = body.get("urls") or []
        urls = [urls] if isinstance(urls, str) else urls
        known = {p.url: p for p in self.pages}
        return {
            "results": [
                {"url": url, "raw_content": known[url].raw_content, "images": []}
                for url in urls
                if url in known
            ],
            "failed_results": [{"url": u, "error": "not found"} for u in urls if u not in known],
            "response_time": 0.01,
        }
