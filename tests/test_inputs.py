"""Bad input (ids beyond the database's INTEGER, NUL and control characters) gets a clear
400/404 page or a CLI error sentence, on SQLite and PostgreSQL, and changes nothing.

``pytest tests/test_inputs.py -s`` prints the table of what each bad input now gets.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers_export import LIST_ID, choose_audience
from support import ADMIN_CSRF_TOKEN as TOKEN

from example_app.models import db
from flask_mcsync import exclusions
from flask_mcsync.inputs import MAX_ID, InvalidInput, row_id, text
from flask_mcsync.models import Run, Settings

PREFIX = "/admin/mailchimp"
HUGE = "999999999999999999999999999999"
JUST_OVER = str(MAX_ID + 1)
NUL = "a\x00b@gmail.com"
LONG = "x" * 400  # longer than any mcsync text column


def _web_cases() -> list[tuple[str, str, dict[str, Any] | None, int, str]]:
    """(method, path, form or JSON body, expected status, words the answer must hold)."""
    form = {"csrf_token": TOKEN}
    cases: list[tuple[str, str, dict[str, Any] | None, int, str]] = []
    for big in (HUGE, JUST_OVER):
        cases += [
            ("GET", f"/status?page={big}", None, 400, "The page must be a whole number"),
            ("GET", f"/status/runs/{big}", None, 404, "The run number must be a whole number"),
            ("GET", f"/status/runs/{big}.json", None, 404, "The run number must be"),
            ("GET", f"/sync/runs/{big}.json", None, 404, "The run number must be"),
            ("GET", f"/status/errors.csv?run={big}", None, 400, "The run number must be"),
            ("POST", f"/rules/{big}/delete", form, 404, "The rule number must be"),
            ("GET", f"/status/diagnostic?run={big}", None, 400, "The run number must be"),
            ("GET", f"/status?days={big}", None, 422, "between 1 and 365 days"),
            ("GET", f"/status/errors.csv?days={big}", None, 400, "between 1 and 365 days"),
            ("POST", "/settings", {**form, "batch_size": big}, 422, "at most"),
            ("JSON", "/sync/export.json", {"batch_size": int(big)}, 422, "at most"),
        ]
    cases += [
        ("GET", "/status?page=0", None, 400, "from 1 to"),
        ("GET", "/status?page=-3", None, 400, "whole number"),
        ("GET", "/status/diagnostic?email=a%00b%40gmail.com", None, 400, "control character"),
        ("GET", "/status?title=x%00y", None, 400, "control character"),
        ("GET", "/status/runs/1?title=x%00y", None, 400, "control character"),
        ("GET", "/status/errors.csv?title=x%00y", None, 400, "control character"),
        ("GET", "/status/diagnostic?email=a%1b%5B2Jb%40gmail.com", None, 400, "control"),
        ("POST", "/status/diagnostic/resync", {**form, "email": NUL}, 400, "control character"),
        ("POST", "/rules", {**form, "kind": "address", "value": NUL}, 400, "control character"),
        ("POST", "/rules", {**form, "kind": "domain", "value": "x\x00.com"}, 400, "control"),
        ("POST", "/settings", {**form, "list_id": "ab\x00c", "batch_size": "500"}, 400, "control"),
        ("POST", "/settings", {**form, "batch_size": "5\x000"}, 400, "control character"),
        ("JSON", "/sync/export.json", {"batch_size": "5\x000"}, 422, "whole number"),
        ("POST", "/rules", {**form, "kind": "address", "value": LONG + "@gmail.com"}, 422, ""),
        ("POST", "/rules", {**form, "kind": "pattern", "value": "*" + LONG}, 422, "at most"),
        ("POST", "/settings", {**form, "list_id": LONG, "batch_size": "500"}, 422, "no audience"),
        ("GET", f"/status?title={LONG * 10}", None, 200, "No error"),
        ("GET", f"/status/diagnostic?email={LONG}@gmail.com", None, 200, "longer than 254"),
    ]
    return cases


def _request(client: FlaskClient, method: str, path: str, body: dict[str, Any] | None) -> Any:
    if method == "GET":
        return client.get(PREFIX + path)
    if method == "JSON":
        return client.post(PREFIX + path, json=body, headers={"X-CSRF-Token": TOKEN})
    return client.post(PREFIX + path, data=body)


def _snapshot() -> tuple[Any, ...]:
    db.session.expire_all()
    rules = [(r.kind.value, r.value) for r in exclusions.load_ruleset(db.session).rules]
    row = db.session.get(Settings, 1)
    runs = db.session.query(Run).count()
    db.session.commit()
    return tuple(rules), (row.list_id, row.batch_size, row.first_export_at), runs


def test_bad_web_input_gets_400_or_404_and_changes_nothing(
    app: Flask, client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    choose_audience(app)
    exclusions.add_rule(db.session, "domain", "mailinator.com")
    db.session.add(Run(kind="export", list_id=LIST_ID, status="finished"))  # run 1
    db.session.commit()
    before = _snapshot()
    table = []
    for method, path, body, status, words in _web_cases():
        response = _request(client, method, path, body)
        page = response.get_data(as_text=True)
        if response.is_json:
            page = json.dumps(response.get_json())
        table.append(f"| {method} {path[:60]!r} | {response.status_code} |")
        assert response.status_code == status, (method, path, page[:600])
        assert words in page, (method, path, page[:600])
        assert "Traceback" not in page
    assert _snapshot() == before
    with capsys.disabled():
        print("\n" + "\n".join(table))


def _cli_cases() -> list[tuple[list[str], int, str]]:
    cases: list[tuple[list[str], int, str]] = []
    for big in (HUGE, JUST_OVER):
        cases += [
            (["status", "--page", big], 2, "The page must be a whole number from 1 to"),
            (["errors", "--run", big], 2, "The run number must be a whole number from 1 to"),
            (["rules", "remove", big], 2, "The rule number must be a whole number from 1 to"),
            (["status", "--days", big], 1, "between 1 and 365 days"),
            (["errors", "--days", big], 1, "between 1 and 365 days"),
            (["settings", "--batch-size", big], 1, "at most"),
            (["export", "--batch-size", big], 1, "at most"),
        ]
    cases += [
        (["status", "--page", "0"], 2, "from 1 to"),
        (["rules", "add", "address", NUL], 2, "control character"),
        (["rules", "add", "pattern", "*\x1b[2J*"], 2, "control character"),
        (["diagnose", NUL], 2, "control character"),
        (["settings", "--list", "ab\x00c"], 2, "control character"),
        (["export", "--list", "ab\x00c"], 2, "control character"),
        (["export", "--list", LONG], 1, "has no audience"),
        (["settings", "--list", LONG], 1, "has no audience"),
        (["rules", "add", "domain", LONG + ".com"], 1, "is not a valid domain"),
        (["diagnose", LONG + "@gmail.com"], 0, "longer than 254 characters"),
    ]
    return cases


def test_bad_cli_input_gets_a_sentence_and_changes_nothing(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    choose_audience(app)
    exclusions.add_rule(db.session, "domain", "mailinator.com")
    before = _snapshot()
    runner = app.test_cli_runner()
    table = []
    for args, code, words in _cli_cases():
        result = runner.invoke(args=["mcsync", *args])
        table.append(f"| flask mcsync {' '.join(args)[:60]!r} | exit {result.exit_code} |")
        assert result.exit_code == code, (args, result.output, result.exception)
        assert words in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert "\x00" not in result.output and "\x1b" not in result.output
    assert _snapshot() == before
    with capsys.disabled():
        print("\n" + "\n".join(table))


@pytest.mark.parametrize(
    "value", ["0", "-1", "1.5", "²", " ", "", "1e3", "0x10", JUST_OVER, HUGE, "9" * 5000]
)
def test_row_id_refuses_what_no_row_can_have(value: str) -> None:
    with pytest.raises(InvalidInput, match="must be a whole number"):
        row_id(value, "run number")


def test_row_id_accepts_the_column_range() -> None:
    assert row_id("1") == 1 and row_id(f" {MAX_ID} ") == MAX_ID and row_id(42) == 42


@pytest.mark.parametrize("value", ["a\x00b", "a\x1b[31mb", "a\nb", "a\x7fb", "a\x9bb"])
def test_text_refuses_control_characters(value: str) -> None:
    with pytest.raises(InvalidInput, match="control character"):
        text(value, "address")
