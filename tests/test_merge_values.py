"""Merge values as Mailchimp accepts them: one rule per Mailchimp field type."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from flask_mcsync import jsoncodec
from flask_mcsync.merge_values import ALL_TYPES, TEXT_TYPES, convert, convert_all, field_types
from flask_mcsync.sandbox.merge_fields_api import TYPES as SANDBOX_TYPES

# The sandbox mirrors Mailchimp's field types, apart from the package's own list.
MAILCHIMP_TYPES = set(SANDBOX_TYPES)
AWKWARD = [True, False, date(2024, 3, 9), datetime(2024, 3, 9, 8, 5, 1), Decimal("12.50"), 7, 2.5]


def test_every_mailchimp_field_type_has_a_rule() -> None:
    assert ALL_TYPES == MAILCHIMP_TYPES


@pytest.mark.parametrize("field_type", [*sorted(MAILCHIMP_TYPES), None])
@pytest.mark.parametrize("value", AWKWARD, ids=repr)
def test_no_type_ever_gets_a_boolean_or_a_raw_python_object(field_type: Any, value: Any) -> None:
    out = convert(value, field_type)
    # What JSON can carry and Mailchimp accepts: a string or a number, never a bool.
    assert not isinstance(out, bool)
    assert isinstance(out, (str, int, float)), (field_type, value, out)


@pytest.mark.parametrize("field_type", [*sorted(MAILCHIMP_TYPES), None])
def test_none_is_never_sent(field_type: Any) -> None:
    assert convert(None, field_type) is None
    assert convert_all({"X": None, "Y": "y"}, {"X": {"type": field_type or "text"}}) == {"Y": "y"}


@pytest.mark.parametrize("field_type", sorted(TEXT_TYPES))
def test_text_like_fields(field_type: str) -> None:
    assert convert(True, field_type) == "Yes"
    assert convert(False, field_type) == "No"
    assert convert(date(2024, 3, 9), field_type) == "2024-03-09"
    assert convert(Decimal("12.50"), field_type) == "12.50"
    assert convert(Decimal("1E+3"), field_type) == "1000"
    assert convert(42, field_type) == "42"
    assert convert("as is", field_type) == "as is"


def test_text_datetime_is_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert convert(datetime(2024, 3, 9, 8, 5, 1, tzinfo=paris), "text") == "2024-03-09 07:05:01"
    assert convert(datetime(2024, 3, 9, 8, 5, 1), "text") == "2024-03-09 08:05:01"


def test_number_fields() -> None:
    assert convert(True, "number") == 1 and not isinstance(convert(True, "number"), bool)
    assert convert(False, "number") == 0
    assert convert(Decimal("12.50"), "number") == 12.5
    assert convert(Decimal("12.00"), "number") == 12 and isinstance(
        convert(Decimal("12.00"), "number"), int
    )
    assert convert(7, "number") == 7 and convert(2.5, "number") == 2.5
    assert convert(" 31 ", "number") == 31 and convert("3.5", "number") == 3.5
    # Not a number: left as text, for Mailchimp to refuse with its own words.
    assert convert("abc", "number") == "abc"
    # Texts Python's int() and float() read but that are not written as numbers.
    for text in ("nan", "inf", "1_000", "١٢", "1e999"):
        assert convert(text, "number") == text


NOT_FINITE = [
    (float("nan"), "NaN"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
    (Decimal("NaN"), "NaN"),
    (Decimal("sNaN"), "sNaN"),
    (Decimal("Infinity"), "Infinity"),
    (Decimal("-Infinity"), "-Infinity"),
]


@pytest.mark.parametrize("field_type", [*sorted(MAILCHIMP_TYPES - {"address"}), None])
@pytest.mark.parametrize(("value", "text"), NOT_FINITE, ids=repr)
def test_a_number_that_is_not_finite_is_sent_as_its_text(
    field_type: Any, value: Any, text: str
) -> None:
    # JSON has no NaN or infinity: orjson writes null for them (a field emptied, or the
    # whole operation refused), and int(Decimal("Infinity")) raised, stopping the
    # chunk. As text, a number field gets Mailchimp's "Please enter a number" for that
    # address alone.
    out = convert(value, field_type)
    assert out == text
    types = {"N": {"type": field_type}} if field_type else None
    assert orjson.loads(orjson.dumps(convert_all({"N": value}, types))) == {"N": text}


@pytest.mark.parametrize("field_type", ["number", "text", None])
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (10**400, "1" + "0" * 400),
        (10**5000, "1" + "0" * 5000),
        (Decimal("1E+5000"), "1" + "0" * 5000),
        (Decimal("1" * 400 + ".5"), "1" * 400 + ".5"),
        ("1" * 4301, "1" * 4301),
        ("9" * 309, "9" * 309),
    ],
    ids=[
        "int 10**400",
        "int 10**5000",
        "Decimal 1E+5000",
        "Decimal 400 digits.5",
        "text 4301",
        "text 309 nines",
    ],
)
def test_a_number_beyond_a_doubles_range_is_sent_as_its_digits(
    field_type: Any, value: Any, text: str
) -> None:
    # A float() of these is infinite (a JSON null on the way out), int() refuses a text
    # of more than 4,300 digits and str() such an int: each stopped the chunk or went
    # out as null. Sent as its digits, a number field refuses it for that address.
    out = convert(value, field_type)
    assert out == text
    assert orjson.loads(jsoncodec.dumps({"N": out})) == {"N": text}


def test_date_fields() -> None:
    assert convert(date(2024, 3, 9), "date") == "2024-03-09"
    assert convert(datetime(2024, 3, 9, 23, 0), "date") == "2024-03-09"
    assert convert("03/09/2024", "date") == "03/09/2024"
    assert convert(True, "date") == "Yes"


def test_birthday_fields_follow_the_field_format() -> None:
    assert convert(date(1990, 3, 9), "birthday") == "03/09"
    assert convert(date(1990, 3, 9), "birthday", {"date_format": "MM/DD"}) == "03/09"
    assert convert(date(1990, 3, 9), "birthday", {"date_format": "DD/MM"}) == "09/03"
    assert convert("12/25", "birthday") == "12/25"


def test_address_fields() -> None:
    address = {"addr1": "1 Main St", "city": "Lyon", "state": "", "zip": 69001, "addr2": None}
    assert convert(address, "address") == {
        "addr1": "1 Main St",
        "city": "Lyon",
        "state": "",
        "zip": "69001",
    }
    assert convert("1 Main St  Lyon  69001", "address") == "1 Main St  Lyon  69001"


def test_unknown_type_keeps_numbers_and_writes_the_rest_as_text() -> None:
    assert convert(3, None) == 3 and convert(Decimal("2.5"), None) == 2.5
    assert convert(True, None) == "Yes"
    assert convert(date(2024, 1, 2), None) == "2024-01-02"


def test_field_types_and_convert_all_read_mailchimp_merge_fields() -> None:
    fields = [
        {"tag": "VIP", "type": "number", "required": False, "name": "VIP", "options": {}},
        {"tag": "BDAY", "type": "birthday", "options": {"date_format": "DD/MM"}},
        {"tag": "NEWS", "type": "text", "required": True, "name": "News"},
    ]
    types = field_types(fields)
    assert types["NEWS"]["required"] and not types["VIP"]["required"]
    row = {"VIP": True, "BDAY": date(1990, 3, 9), "NEWS": False, "FREE": True, "GONE": None}
    assert convert_all(row, types) == {"VIP": 1, "BDAY": "09/03", "NEWS": "No", "FREE": "Yes"}
    assert convert_all(row, None) == {
        "VIP": "Yes",
        "BDAY": "1990-03-09",
        "NEWS": "No",
        "FREE": "Yes",
    }
