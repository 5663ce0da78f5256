"""JSON on the export's hot path: orjson, and the standard library for what it refuses.

A batch of 1,000 member upserts is JSON twice over (each operation's body is a JSON
string inside the request's JSON), and its results come back as a JSON array of JSON
strings. With the standard library that encoding and decoding was about a tenth of a
worker's CPU per exported address (py-spy, benchmarks/README.md, issue 10); orjson does
the same in a fraction of it.

The output means the same, with one exception. It is written without spaces, and
non-ASCII characters as UTF-8 rather than ``\\uXXXX`` escapes (the same text to any
JSON reader, Mailchimp's included). The exception: a float NaN or infinity, which JSON
has no word for, is written ``null`` where the standard library wrote ``NaN``, which
Mailchimp cannot read.

Whatever orjson will not take (an integer beyond 64 bits, a key that is not a string,
invalid UTF-8, an object it does not know), and any document it reads an integer beyond
64 bits from (it makes a float of it), goes to the standard library, which answers
as it always did: the same JSON, or the same error. Datetimes and dataclasses are left
to it too, so that a value the standard library refuses is still refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps_bytes(value: Any) -> bytes:
    """``value`` as UTF-8 JSON."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value).encode()


def dumps(value: Any) -> str:
    """``value`` as JSON text."""
    return dumps_bytes(value).decode()


def host_serializer(dialect: Dialect) -> Callable[[Any], Any] | None:
    """The JSON serializer the host gave its engine (``create_engine(json_serializer=...)``),
    if any: what it chose is used for our JSON columns too."""
    return getattr(dialect, "_json_serializer", None)


def column_value(value: Any, dialect: Dialect) -> Any:
    """``value`` for an ``sa.JSON`` column in an INSERT or UPDATE, encoded here.

    Left to SQLAlchemy, the column's value goes through the engine's serializer, the
    standard library's unless the host chose one: for a batch's 1,000 planned rows that
    was ~3 % of a worker's CPU. A serializer the host gave the engine
    (``create_engine(json_serializer=...)``) is still used; one set in the driver alone
    (psycopg's ``set_json_dumps``) is not, as SQLAlchemy never reaches it. PostgreSQL takes
    the text with a cast to ``json``; SQLite stores JSON as the text itself (a cast there
    would give the text numeric affinity).
    """
    if host_serializer(dialect):
        return value
    text = sa.type_coerce(dumps(value), sa.Text)
    return sa.cast(text, sa.JSON) if dialect.name == "postgresql" else text


# orjson reads an integer beyond 64 bits as a float, losing its last digits, where the
# standard library keeps them all. Such a float is at least 2**63 in size: a document
# orjson reads one from is read again by the standard library. Looked for in what orjson
# returned, not in the text: on a result archive of 1,000 members (3 MB) a regular
# expression for 19 digits took 14 ms, the standard library's decoding 12 ms, orjson's
# 5 ms and this walk over its result 1 ms.
_HUGE = float(2**63)


def loads(data: bytes | str) -> Any:
    """The value of a JSON document; :class:`ValueError` when it is not one."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:  # a ValueError; the standard library may read it
        return json.loads(data)
    return json.loads(data) if _has_huge_float(value) else value


def picked(text: str | bytes, names: tuple[str, ...]) -> dict[str, Any] | None:
    """Only ``names`` of the JSON object ``text``; ``None`` when it is not an object, or
    when what is kept holds an integer orjson reads as a float (:func:`loads` reads it).

    For large documents read for a few fields (a member Mailchimp answered: 1 to 5 KB,
    read for its status and times): decoded by orjson, the rest dropped at once, and only
    what is kept is looked at for huge integers.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    kept = {name: value[name] for name in names if name in value}
    return None if _has_huge_float(kept) else kept


def _has_huge_float(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is float:
            if not -_HUGE < item < _HUGE:
                return True
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item.values())
    return False
