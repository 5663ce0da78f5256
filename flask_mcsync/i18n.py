"""The admin pages in the shop owner's language: catalogs, the current locale, formatting.

English is the source language (the msgids); every other language is a Babel catalog under
``translations/<locale>/LC_MESSAGES/mcsync.po`` compiled to ``mcsync.mo`` beside it, so a
third language is one more catalog and nothing else (see the README).

The locale is a :class:`~contextvars.ContextVar`, set by the admin blueprint for the length
of one request and English everywhere else: the CLI, the workers and the logs stay English
(like Flask's own messages), while the same sentences raised by the domain modules (an
invalid address, a batch size out of range) reach the pages translated. The domain modules
therefore import :func:`gettext` from here and stay free of Flask.

We use Babel itself, not Flask-Babel: an extension must not require the host to install
and configure Flask-Babel, nor fight over its ``app.jinja_env`` callables when it does.
"""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import date, datetime, timezone
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime as _format_datetime
from babel.dates import format_skeleton
from babel.numbers import format_decimal, get_decimal_symbol
from babel.support import Translations

DOMAIN = "mcsync"
DEFAULT_LOCALE = "en"
TRANSLATIONS_DIR = Path(__file__).parent / "translations"

_locale: ContextVar[str] = ContextVar("mcsync_locale", default=DEFAULT_LOCALE)


def N_(message: str) -> str:
    """Mark a constant for extraction; it is translated where it is shown."""
    return message


@lru_cache(maxsize=1)
def available_locales() -> tuple[str, ...]:
    """English plus every language that has a catalog, in a stable order."""
    found = sorted(
        p.parent.parent.name for p in TRANSLATIONS_DIR.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")
    )
    return (DEFAULT_LOCALE, *(code for code in found if code != DEFAULT_LOCALE))


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    if locale == DEFAULT_LOCALE:
        return _gettext.NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [locale], DOMAIN)


def negotiate(wanted: str | None) -> str | None:
    """The available locale for ``wanted`` (``fr_CA`` → ``fr``), or None when none fits."""
    if not wanted:
        return None
    tag = str(wanted).replace("-", "_")
    for candidate in (tag, tag.split("_")[0]):
        for code in available_locales():
            if code.lower() == candidate.lower():
                return code
    return None


def is_available(locale: str) -> bool:
    return negotiate(locale) is not None


def current_locale() -> str:
    return _locale.get()


def activate(locale: str | None) -> Token[str]:
    """Make ``locale`` the current one (English when it has no catalog); undo with the token."""
    return _locale.set(negotiate(locale) or DEFAULT_LOCALE)


def deactivate(token: Token[str]) -> None:
    _locale.reset(token)


@contextmanager
def use_locale(locale: str | None) -> Iterator[str]:
    token = activate(locale)
    try:
        yield current_locale()
    finally:
        deactivate(token)


def gettext(message: str, **values: Any) -> str:
    """``message`` in the current language, with ``%(name)s`` placeholders filled."""
    text = translations(current_locale()).gettext(message)
    return text % values if values else text


_ = gettext


def ngettext(singular: str, plural: str, num: int, **values: Any) -> str:
    """The singular or plural form for ``num`` (French says "1 lot", "0 lot", "2 lots")."""
    text = translations(current_locale()).ngettext(singular, plural, num)
    values.setdefault("num", format_number(num))
    return text % values


def NP_(context: str, message: str) -> str:
    """Mark a constant whose translation depends on ``context`` (see :func:`pgettext`)."""
    return message


def pgettext(context: str, message: str, **values: Any) -> str:
    """``message`` as meant in ``context``: French says "Créée" for one address's
    outcome but "Créées" for a column of counts, both "Created" in English."""
    text = translations(current_locale()).pgettext(context, message)
    return text % values if values else text


def plural_forms(singular: str, plural: str) -> dict[str, str]:
    """Both forms of a plural sentence for a script, keyed like ``Intl.PluralRules``
    answers ("one" / "other"): enough for English and French, placeholders left in."""
    catalog = translations(current_locale())
    return {
        "one": catalog.ngettext(singular, plural, 1),
        "other": catalog.ngettext(singular, plural, 2),
    }


# --- formatting -------------------------------------------------------------------------------


def babel_locale() -> Locale:
    try:
        return Locale.parse(current_locale())
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


def format_number(value: float | int | None, decimals: int | None = None) -> str:
    """3,250 in English, 3 250 in French; ``decimals`` fixes the fraction digits."""
    number = value or 0
    if decimals is None:
        return format_decimal(number, locale=babel_locale())
    pattern = "#,##0." + "0" * decimals if decimals else "#,##0"
    return format_decimal(number, format=pattern, locale=babel_locale())


def format_datetime(moment: datetime | None) -> str:
    """A moment as the shop owner reads it, in UTC and saying so."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _format_datetime(moment, "short", tzinfo=timezone.utc, locale=babel_locale()) + " UTC"


def format_day(day: str | date, short: bool = False) -> str:
    """A calendar day: "Nov 25" / "25 nov." (short, the chart's axis) or with the year."""
    value = date.fromisoformat(day) if isinstance(day, str) else day
    return format_skeleton("MMMd" if short else "yMMMd", value, locale=babel_locale())


def format_duration(seconds: float | None) -> str:
    """12.5 s, 3 min 05 s, 1 h 02 min (with the locale's decimal sign)."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return gettext("%(seconds)s s", seconds=format_number(seconds, 1))
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return gettext("%(minutes)s min %(seconds)s s", minutes=minutes, seconds=f"{secs:02d}")
    hours, minutes = divmod(minutes, 60)
    return gettext("%(hours)s h %(minutes)s min", hours=hours, minutes=f"{minutes:02d}")


def csv_dialect() -> tuple[str, bool]:
    """The separator and whether to start with a BOM, so a spreadsheet in this language
    opens the file in columns: where the decimal sign is a comma (French), Excel expects
    ``;`` and only recognises UTF-8 with a byte-order mark."""
    if get_decimal_symbol(babel_locale()) == ",":
        return ";", True
    return ",", False


def choose(
    host_locale: Callable[[], str | None] | None,
    setting: str | Callable[[], str | None] | None,
    accept_language: Any,
) -> str:
    """The request's locale: the host's Flask-Babel, else ``MCSYNC_LOCALE``, else the
    browser's ``Accept-Language`` (best match among the catalogs), else English."""
    if host_locale is not None:
        found = negotiate(host_locale())
        if found:
            return found
    if setting is not None:
        found = negotiate(setting() if callable(setting) else setting)
        if found:
            return found
    if accept_language is not None:
        # werkzeug matches "fr-FR" to our "fr", and weighs the q= values.
        best = accept_language.best_match(available_locales())
        if best:
            return str(best)
    return DEFAULT_LOCALE
