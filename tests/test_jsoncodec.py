"""The export's JSON codec: orjson's speed, the standard library's answers."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flask_mcsync import jsoncodec

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_what_it_writes_the_standard_library_reads_back_equal(value: Any) -> None:
    assert json.loads(jsoncodec.dumps(value)) == value
    assert json.loads(jsoncodec.dumps_bytes(value)) == value


@given(JSON_VALUES)
def test_what_the_standard_library_writes_it_reads_back_equal(value: Any) -> None:
    assert jsoncodec.loads(json.dumps(value)) == value
    assert jsoncodec.loads(json.dumps(value, ensure_ascii=False).encode()) == value


def test_values_orjson_refuses_are_written_as_the_standard_library_writes_them() -> None:
    huge = {"NUMBER": 10**30, 1: "a key that is not a string"}
    assert jsoncodec.dumps(huge) == json.dumps(huge)


@pytest.mark.parametrize(
    "value", [Decimal("1.5"), datetime(2026, 11, 26, tzinfo=timezone.utc), {1, 2}, b"bytes"]
)
def test_values_the_standard_library_refuses_are_still_refused(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        jsoncodec.dumps({"merge_fields": {"FIELD": value}})


@pytest.mark.parametrize("number", [-(2**63) - 1, 2**64, 10**30, -(10**40)])
def test_integers_beyond_64_bits_are_read_whole(number: int) -> None:
    # orjson alone reads them as floats, losing their last digits.
    assert jsoncodec.loads(f'{{"n": {number}}}') == {"n": number}
    assert jsoncodec.loads(f"[{number}]".encode()) == [number]


def test_documents_only_the_standard_library_reads_are_still_read() -> None:
    assert jsoncodec.loads('{"n": NaN, "big": 1' + "0" * 30 + "}")["big"] == 10**30


def test_what_is_not_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(b"<html>502 Bad Gateway</html>")


def test_non_ascii_text_is_written_as_utf8_without_spaces() -> None:
    value = {"FNAME": "Zoë 日本 🎉", "quote": '"\\\n'}
    assert jsoncodec.dumps_bytes(value).decode("utf-8") == json.dumps(
        value, ensure_ascii=False, separators=(",", ":")
    )
