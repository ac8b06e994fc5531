"""Durations and days written the way the customer's language writes them ("10 minutes",
"dakika 10", "sam. 12 déc."), from the Unicode CLDR data Babel carries; English for a
language CLDR does not know."""

from __future__ import annotations

import datetime as dt

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_timedelta

REFERENCE_LANGUAGE = "en"


def duration_in(delta: dt.timedelta, language: str | None) -> str:
    """A wait as a person says it, in its largest unit, rounded: "10 minutes", and "1
    hour" from 51 minutes on (Babel's threshold: rather a little long than too short,
    so a refused customer does not write again too early)."""
    return format_timedelta(delta, locale=_locale(language))


def day_in(day: dt.date, language: str | None) -> str:
    """A short day label for a menu: weekday, day and month ("Sat 05 Dec", as the
    tools' English lists write it; "sam. 05 déc" in French). An abbreviation's final
    point is dropped: the label often ends a sentence ("… le sam. 05 déc.")."""
    return format_date(day, "EEE dd MMM", locale=_locale(language)).rstrip(".")


def _locale(language: str | None) -> Locale:
    try:
        return Locale.parse(language or REFERENCE_LANGUAGE)
    except (UnknownLocaleError, ValueError):
        return Locale.parse(REFERENCE_LANGUAGE)
