"""The export's JSON codec: orjson's speed, the standard library's answers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
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


def test_picked_keeps_only_the_names_asked_and_leaves_huge_integers_to_loads() -> None:
    text = '{"status": "subscribed", "web_id": 10000000000000000000000, "big": 1e400}'
    # A huge integer in what is dropped does not matter; orjson refuses 1e400 itself.
    assert jsoncodec.picked(text.replace(', "big": 1e400', ""), ("status", "x")) == {
        "status": "subscribed"
    }
    assert jsoncodec.picked(text, ("status",)) is None  # not orjson's: read whole
    # In what is kept, orjson's float would lose digits: None, so the caller reads it whole.
    assert jsoncodec.picked('{"n": 10000000000000000000001}', ("n",)) is None
    assert jsoncodec.picked("[1, 2]", ("n",)) is None
    assert jsoncodec.picked("<html>", ("n",)) is None


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


PLANNED = [
    ["zoë@example.com", {"FNAME": "Zoë", "N": 1, "L": [1.5, None]}, None],
    ["a@b.c", {}, "fr"],
]


@contextlib.contextmanager
def _json_table(engine: sa.Engine) -> Iterator[sa.Table]:
    """A table with one JSON column on ``engine``, dropped (and the engine closed) after."""
    metadata = sa.MetaData()
    table = sa.Table(
        "jsoncodec_check",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("payload", sa.JSON),
    )
    metadata.create_all(engine)
    try:
        yield table
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_a_json_column_takes_the_encoded_text_and_reads_back_equal(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    with _json_table(engine) as table, engine.begin() as connection:
        value = jsoncodec.column_value(PLANNED, engine.dialect)
        connection.execute(sa.insert(table).values(id=1, payload=value))
        connection.execute(sa.update(table).values(payload=value))
        assert connection.execute(sa.select(table.c.payload)).scalar_one() == PLANNED
        # Stored as a JSON array, not as a JSON string holding the text.
        type_of = "json_typeof" if engine.dialect.name == "postgresql" else "json_type"
        stored = connection.execute(sa.text(f"SELECT {type_of}(payload) FROM jsoncodec_check"))
        assert stored.scalar() == "array"


def test_a_hosts_own_json_serializer_is_still_used(database_url: str) -> None:
    seen: list[Any] = []

    def serializer(value: Any) -> str:
        seen.append(value)
        return json.dumps(value)

    engine = sa.create_engine(database_url, json_serializer=serializer)
    with _json_table(engine) as table, engine.begin() as connection:
        value = jsoncodec.column_value(PLANNED, engine.dialect)
        connection.execute(sa.insert(table).values(id=1, payload=value))
        assert connection.execute(sa.select(table.c.payload)).scalar_one() == PLANNED
    assert seen == [PLANNED]
