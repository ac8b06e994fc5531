"""Typed requests understood without a model: what the customer asks for (the intent
router's confident local path), in which language, for which day, about which products.

The rule-based menu acts on the result exactly as it acts on a tap, so a customer who
writes "I want a bike on Saturday" reaches the same business action as one who taps
Bookings → Book a slot → Saturday, and no model token is spent either way.

Public API::

    reader = RequestReader.create(router)          # once, at start (or lazily)
    request = reader.read("nataka baiskeli kesho", today=dt.date(...))
    request.action, request.language, request.day, request.words
"""

from nodes.intents.days import DayReader
from nodes.intents.language import LanguageGuesser
from nodes.intents.products import ProductWords, rank_products
from nodes.intents.reader import Action, RequestReader, TypedRequest

__all__ = [
    "Action",
    "DayReader",
    "LanguageGuesser",
    "ProductWords",
    "RequestReader",
    "TypedRequest",
    "rank_products",
]
