"""What every ``flask mcsync`` command shares: errors as messages, JSON or text, inert CSV.

Used by :mod:`cli` and :mod:`cli_both_ways`, which add their commands to the one
``mcsync`` group.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .errors import McSyncError
from .gateway import MailchimpError
from .terminal import inert

F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn the errors a user can meet into a message and exit status 1, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except McSyncError as exc:
            sentence = (
                f"Mailchimp said: {exc.title}. {exc.full_detail}"
                if isinstance(exc, MailchimpError)
                else str(exc)
            )
            raise click.ClickException(inert(sentence)) from None

    return wrapper  # type: ignore[return-value]


def emit(data: Any, as_json: bool, text: Callable[[], None]) -> None:
    if as_json:
        echo_json(data, indent=2)
    else:
        text()


def echo_json(data: Any, indent: int | None = None) -> None:
    """``data`` as JSON that any reader takes: a float NaN or infinity (a host's merge
    value, say) is written as text, "nan" or "inf", where ``json.dumps`` would write a
    bare ``NaN`` that jq and every strict parser refuse; other values JSON lacks, as
    their ``str``."""
    click.echo(json.dumps(_jsonable(data), indent=indent, default=str))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def say_csv(chunk: str) -> str:
    """A CSV chunk for a terminal: its row ends kept, every other control character shown."""
    return "\r\n".join(inert(line) for line in chunk.split("\r\n"))
