"""Merge field values as Mailchimp accepts them, one rule per Mailchimp field type.

Mailchimp takes a merge value as a string, a number or (address fields) an object; a
JSON ``true`` is refused ("Data did not match any of the schemas described in anyOf"),
and refused on every operation that carries it. A shop's columns hold Python values:
``bool`` (an ``int`` in Python, so it is tested first), ``date``, ``datetime``,
``Decimal``, ``None``. This module turns each into what the field's type expects.
Types come from the audience's merge fields (:func:`field_types`, read once per run or
job, not per address).

The rules, by Mailchimp type (``None`` is never sent: the key is left out, so a blank
column never wipes what Mailchimp holds):

============  ===========================================================================
type          value sent
============  ===========================================================================
text          ``str``; ``bool`` → ``"Yes"``/``"No"``; ``date`` → ``YYYY-MM-DD``;
              ``datetime`` → ``YYYY-MM-DD HH:MM:SS`` (UTC when aware); ``Decimal`` →
              its plain decimal text (``"12.50"``)
number        ``int`` or ``float``; ``bool`` → ``1``/``0``; ``Decimal`` → ``int`` when
              whole, else ``float``; numeric text → its number; anything else → text,
              which Mailchimp refuses with "Please enter a number" (recorded per address).
              Not-a-number, the infinities and numbers beyond a double's range are
              sent as text too (``"NaN"``, ``"Infinity"``, the digits): JSON has no
              such number (an encoder writes ``null`` for them, not the shop's
              value), so the address gets Mailchimp's error instead (for digits
              beyond a double's range Mailchimp's answer is not documented: the
              sandbox refuses them, ``sandbox.merge_values.within_double_range``)
date          ``YYYY-MM-DD`` from a ``date``/``datetime`` (Mailchimp's API date format,
              whatever the field's display format); text passed through
birthday      ``MM/DD`` (or ``DD/MM`` when the field's ``options.date_format`` says so)
              from a ``date``/``datetime``; text passed through
address       a ``dict`` passed through with its values as text (``addr1``, ``city``,
              ``state``, ``zip``, ``country``...); anything else as text
phone, email, zip, imageurl, url, radio, dropdown
              text (``bool`` → ``"Yes"``/``"No"``, dates and decimals as for text)
unknown tag   (the audience has no such field) as text; Mailchimp drops unknown tags
============  ===========================================================================

Without a known type (Mailchimp could not be asked), finite numbers stay numbers and the
rest goes by the text rule, non-finite numbers included.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from math import isfinite
from typing import Any

# Numeric text as a shop's column may hold it, ASCII digits only.
_INTEGER = re.compile(r"[+-]?[0-9]+")
# Longer than this, int() refuses the text; no double is that long anyway.
_LONGEST_INTEGER = 310
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")

TEXT_TYPES = frozenset({"text", "phone", "email", "zip", "imageurl", "url", "radio", "dropdown"})
ALL_TYPES = TEXT_TYPES | {"number", "date", "birthday", "address"}


def field_types(merge_fields: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Tag → ``{"type", "options", "required", "name"}`` from Mailchimp's merge fields."""
    return {
        str(f["tag"]).upper(): {
            "type": str(f.get("type") or "text"),
            "options": f.get("options") or {},
            "required": bool(f.get("required")),
            "name": str(f.get("name") or f["tag"]),
        }
        for f in merge_fields
        if f.get("tag")
    }


def convert_all(
    values: Mapping[str, Any], types: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """Every value of a row converted for its field; ``None`` values left out."""
    out: dict[str, Any] = {}
    for tag, value in values.items():
        spec = (types or {}).get(tag.upper())
        converted = convert(
            value,
            str(spec["type"]) if spec else None,
            spec.get("options") if spec else None,
        )
        if converted is not None:
            out[tag] = converted
    return out


def convert(value: Any, field_type: str | None, options: Mapping[str, Any] | None = None) -> Any:
    """One value for a field of ``field_type`` (``None``: type unknown, see below).

    Without a known type (Mailchimp could not be asked), numbers stay numbers and
    everything else is text by the text rule: never a boolean, never a raw date.
    """
    if value is None:
        return None
    if field_type == "number":
        return _number(value)
    if field_type == "date":
        return value.strftime("%Y-%m-%d") if isinstance(value, date) else _text(value)
    if field_type == "birthday":
        if isinstance(value, date):
            fmt = str((options or {}).get("date_format") or "MM/DD").upper()
            return value.strftime("%d/%m" if fmt.startswith("DD") else "%m/%d")
        return _text(value)
    if field_type == "address" and isinstance(value, Mapping):
        return {str(k): _text(v) for k, v in value.items() if v is not None}
    if field_type is None and not isinstance(value, bool) and isinstance(value, (int, float)):
        return value if _finite(value) else _text(value)
    if field_type is None and isinstance(value, Decimal):
        return _number(value)
    return _text(value)


# The largest double: what Mailchimp, or any JSON reader, can take as a number.
_LARGEST = sys.float_info.max


def _finite(value: int | float | Decimal) -> bool:
    """Whether ``value`` goes out as a JSON number: finite, and within a double's range
    (a larger one would become ``inf`` on the way to a float, and a JSON ``null``)."""
    if isinstance(value, float):
        return isfinite(value)
    if isinstance(value, Decimal):
        # is_finite() first: comparing a NaN raises (a signalling one too).
        return value.is_finite() and abs(value) <= Decimal(_LARGEST)
    return abs(value) <= _LARGEST


def _text(value: Any) -> str:
    if isinstance(value, bool):  # before int: True is an int in Python
        return "Yes" if value else "No"
    if isinstance(value, int):
        # str() refuses an int of more than 4,300 digits (Python's limit on int to
        # text); a Decimal writes them all.
        return str(Decimal(value))
    if isinstance(value, float) and not isfinite(value):
        # Python writes "nan" and "inf"; Decimal (below) and most databases write these.
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (int, float, Decimal)) and not _finite(value):
        return _text(value)  # Mailchimp says "Please enter a number" for this address
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    text = _text(value).strip()
    number: int | float | None = None
    if _INTEGER.fullmatch(text) and len(text) <= _LONGEST_INTEGER:
        number = int(text)
    elif _DECIMAL.fullmatch(text):
        number = float(text)
    if number is not None and _finite(number):  # the same rule as for a number column
        return number
    # Mailchimp says "Please enter a number" for this address. int() and float() would
    # also read "1_000", "nan", "inf" and digits of other scripts: sent as written.
    return text
