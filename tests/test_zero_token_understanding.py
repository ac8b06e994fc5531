"""The pieces of the menu's typed path, without a database: the day a message names in
seven languages, the products it is about, its language, and the translated texts."""

from __future__ import annotations

import datetime as dt
import re
from typing import cast

import pytest
from langchain_core.messages import HumanMessage

from graph.composition.prompts import load_prompts
from graph.state import ConversationState
from nodes.intents import DayReader, LanguageGuesser, ProductWords, rank_products
from nodes.menu_actions import MenuActions
from nodes.menu_texts import MenuTexts
from nodes.menu_typed import TypedMenu
from nodes.routing.examples import load_router_examples
from tools.demo import CATALOG
from tools.listings import ListRow

SUNDAY = dt.date(2026, 12, 6)  # a fixed "today": the readings do not depend on the clock
MONDAY, SATURDAY = dt.date(2026, 12, 7), dt.date(2026, 12, 12)


@pytest.fixture(scope="module")
def days() -> DayReader:
    return DayReader()


@pytest.mark.parametrize(
    ("text", "language", "day"),
    [
        ("I want to book a bike for Saturday", "en", SATURDAY),
        ("can I reserve an e-bike tmrw morning", "en", MONDAY),
        ("je voudrais un vélo demain", "fr", MONDAY),
        ("un VTT samedi prochain ?", "fr", SATURDAY),
        ("quiero una bici para el sábado", "es", SATURDAY),
        ("tem vaga amanhã de manhã?", "pt", MONDAY),
        ("nataka kukodi baiskeli kesho", "sw", MONDAY),
        ("Jumamosi asubuhi", "sw", SATURDAY),
        ("keshokutwa", "sw", dt.date(2026, 12, 8)),
        ("ndashaka igare ejo", "rw", MONDAY),  # Kinyarwanda: the day-word table
        ("ejobundi mu gitondo se?", "rw", dt.date(2026, 12, 8)),
        ("mumbikire igare ku wa gatandatu", "rw", SATURDAY),
        ("هل يوجد مكان غدا صباحا؟", "ar", MONDAY),
        ("kesho", None, MONDAY),  # language unknown: every language is tried
    ],
)
def test_the_day_a_message_names(
    days: DayReader, text: str, language: str | None, day: dt.date
) -> None:
    assert days.read(text, language, SUNDAY) == day


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("je peux réserver un vélo électrique ?", "fr"),  # "je" is not jeudi
        ("at 2pm", "en"),  # a time alone names no day
        ("hi, may I book 2 bikes", "en"),  # "may" is not May (and May is far away)
        ("how much is a city bike", "en"),
        ("ok", None),
    ],
)
def test_no_day_is_read_where_none_is_named(
    days: DayReader, text: str, language: str | None
) -> None:
    assert days.read(text, language, SUNDAY) is None


CATALOG_ROWS = [ListRow(f"product:{sku}", name, "") for sku, _, name, *_ in CATALOG]


@pytest.mark.parametrize(
    ("text", "skus"),
    [
        ("how much is a city bike?", {"RENT-CITY", "BIKE-CITY-REFURB"}),
        ("combien coûte un casque ?", {"ACC-HELMET", "ACC-HELMET-KID"}),
        ("kofia ya baiskeli ni bei gani", {"ACC-HELMET", "ACC-HELMET-KID"}),
        ("ingofero ni angahe", {"ACC-HELMET", "ACC-HELMET-KID"}),
        ("كم سعر الخوذة؟", {"ACC-HELMET", "ACC-HELMET-KID"}),
        ("helmets for kids", {"ACC-HELMET-KID"}),
        ("e-bike rental price", {"RENT-EBIKE"}),
        ("do you have a 26 inch tube", {"PART-TUBE-26"}),
        ("what do you sell", set()),  # nothing named: the caller shows the whole list
    ],
)
def test_the_products_a_question_is_about(text: str, skus: set[str]) -> None:
    ranked = rank_products(CATALOG_ROWS, text, ProductWords.load())
    assert {row.id.removeprefix("product:") for row in ranked} == skus


@pytest.fixture(scope="module")
def guesser() -> LanguageGuesser:
    return LanguageGuesser(load_router_examples().by_language)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("I would like to rent a bike please", "en"),
        ("bonjour, je voudrais louer un vélo", "fr"),
        ("hola, quiero alquilar una bicicleta", "es"),
        ("olá, quero alugar uma bicicleta", "pt"),
        ("habari, nataka kukodi baiskeli", "sw"),
        ("muraho, ndashaka gukodesha igare", "rw"),
        ("مرحبا، أريد استئجار دراجة", "ar"),
        ("123", None),
    ],
)
def test_the_language_of_a_message(
    guesser: LanguageGuesser, text: str, language: str | None
) -> None:
    assert guesser.guess(text) == language


def test_translations_name_known_texts_with_the_same_placeholders() -> None:
    default = load_prompts("Inzira Bikes").fallback
    texts = MenuTexts.load(default)
    assert {"fr", "es", "pt", "sw", "rw", "ar"} <= set(texts.translations)
    for language, translated in texts.translations.items():
        for key, text in translated.items():
            assert key in default.actions, (language, key)
            fields = set(re.findall(r"{(\w+)}", text))
            assert fields == set(re.findall(r"{(\w+)}", default.actions[key])), (language, key)
    assert texts.say("pick_slot", "fr", day="sam. 12") == (
        "Créneaux libres le sam. 12. Touchez-en un pour le réserver."
    )
    assert texts.say("products", "de") == default.actions["products"]  # no German texts


def test_every_title_fits_whatsapp_in_every_language() -> None:
    """Button titles (WhatsApp: 20 characters) and list rows (24) as nodes/menu_actions.py
    uses them fit in every language, so no customer reads a title cut mid-word."""
    default = load_prompts("Inzira Bikes").fallback
    texts = MenuTexts.load(default)
    buttons = {"choose", "main_menu", "talk_to_person", "buy_one", "book_a_slot"}
    buttons |= {"my_bookings", "pay", "pay_now", "cancel_booking"}
    rows = {"options", "payment_status"}
    for language in [None, *texts.translations]:
        for key in buttons:
            assert len(texts.say(key, language)) <= 20, (language, key)
        for key in rows:
            assert len(texts.say(key, language)) <= 24, (language, key)
        menu = default.in_language(language).menu  # the topic menu
        assert len(menu["button"]) <= 20 and len(menu["body"]) <= 1024, language
        for section in menu["sections"]:
            assert len(section["title"]) <= 24, language
            for row in section["rows"]:
                assert len(row["title"]) <= 24 and len(row.get("description", "")) <= 72
    assert {"fr", "es", "pt", "sw", "rw", "ar"} <= set(default.translations)


async def test_while_the_reader_is_fitted_typed_words_get_the_topic_menu() -> None:
    """A process's first seconds: nobody waits for the classifier (None: the topic menu)."""
    typed = TypedMenu(lambda: None)
    state: ConversationState = {"messages": [HumanMessage("I want a bike on Saturday")]}
    assert typed.language(state) is None
    assert await typed.answer(cast(MenuActions, None), state, "I want a bike", "250788") is None
