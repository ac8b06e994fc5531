"""The semantic answer cache: guard.py decides what may be cached and served, trust.py
which answers may be shared with other customers, store.py keeps the entries, cache.py
looks up and remembers, node.py wraps a specialist."""

from nodes.answer_cache.cache import AnswerCache, CacheConfig
from nodes.answer_cache.node import with_answer_cache
from nodes.answer_cache.store import AnswerCacheStore

__all__ = ["AnswerCache", "AnswerCacheStore", "CacheConfig", "with_answer_cache"]
