"""What a person may type into a URL, a form or a command: ids, page numbers and text.

The admin pages and the CLI check their input here, before any query: an integer larger
than the database's ``INTEGER`` column (PostgreSQL refuses it with an error, SQLite
overflows) or a NUL byte (PostgreSQL text cannot hold one) would otherwise reach the
database and end in a 500 page or a traceback. A refused input raises
:class:`InvalidInput` with a sentence saying what would be accepted; the pages turn it
into a 400 or 404, the CLI into an error line, and nothing is changed.
"""

from __future__ import annotations

import re
from typing import Any

import click

from .errors import McSyncError
from .i18n import gettext as _
from .terminal import inert

#: The largest id or page number anything accepts: PostgreSQL's ``INTEGER``, which every
#: ``mcsync_*`` id column is.
MAX_ID = 2**31 - 1

# NUL and the other C0/C1 control characters (tab aside): no address, audience id,
# rule or filter holds one, PostgreSQL refuses NUL, and a terminal obeys the others.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


class InvalidInput(McSyncError, ValueError):
    """An id, number or text a person typed cannot be used; the message says what can."""


def row_id(value: Any, what: str = "id") -> int:
    """A whole number from 1 to :data:`MAX_ID` (an id, a page), from an int or a string.

    :raises InvalidInput: naming ``what`` and the accepted range.
    """
    typed = str(value).strip()
    if isinstance(value, bool) or not typed.isdigit() or not typed.isascii():
        raise InvalidInput(
            _("The %(what)s must be a whole number; got %(typed)s.", what=what, typed=_shown(typed))
        )
    if len(typed) > len(str(MAX_ID)) or not 1 <= int(typed) <= MAX_ID:
        raise InvalidInput(
            _(
                "The %(what)s must be a whole number from 1 to %(max)s; got %(typed)s.",
                what=what,
                max=MAX_ID,
                typed=_shown(typed),
            )
        )
    return int(typed)


def text(value: str, what: str = "text") -> str:
    """``value`` unchanged when it holds no control character (NUL, escape, newline...).

    :raises InvalidInput: naming ``what``.
    """
    if _CONTROL.search(value):
        raise InvalidInput(
            _(
                "The %(what)s holds a control character (such as NUL or an escape), which no"
                " address, id or rule contains: type it again without it.",
                what=what,
            )
        )
    return value


def beyond(typed: str, largest: int) -> bool:
    """Whether ``typed`` is a string of digits naming a number above ``largest``, told
    from its length: Python's ``int()`` refuses more than 4,300 digits as not a number."""
    return typed.isdigit() and typed.isascii() and len(typed.lstrip("0")) > len(str(largest))


def brief(value: Any, limit: int = 40) -> str:
    """A refused value as it may be echoed back: its text, short, with no control
    character (a 100,000-character value made a 200 KB error page)."""
    shown = inert(value)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def _shown(value: str, limit: int = 40) -> str:
    return repr(brief(value, limit))


class RowIdParam(click.ParamType):
    """A click type for ids and page numbers, checked by :func:`row_id`."""

    name = "integer"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return row_id(value, self.what)
        except InvalidInput as exc:
            self.fail(str(exc), param, ctx)


class TextParam(click.ParamType):
    """A click type for addresses, audience ids and rule values, checked by :func:`text`."""

    name = "text"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return text(str(value), self.what)
        except InvalidInput as exc:
            self.fail(str(exc), param, ctx)
