"""What ``flask mcsync ...`` prints: inert text from outside, times with their zone, counted
nouns, a progress line per step off a terminal, CLI wording, and sentences for settings
that would silently stop auto-sync or a malformed key."""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from typing import Any

from flask import Flask
from forkserver import FORK_SERVER, kill_session
from helpers_export import LIST_ID, choose_audience, insert_customers
from support import add_refused_autosync

from example_app.models import db
from flask_mcsync import settings, state
from flask_mcsync.cli_output import say_csv
from flask_mcsync.models import ExclusionRule
from flask_mcsync.terminal import ProgressLine, count, inert, when

# Clears the screen, retitles the window, and hides what follows behind a reordering mark.
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\u202e\x9b31m"


def _cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["mcsync", *args])


def _hostile_history(app: Flask) -> None:
    """A failed auto-sync whose address, title, detail and message hold escapes, and a
    diagnosable shop customer whose merge field and last error hold them too."""
    add_refused_autosync(
        db.session,
        [f"eve{ESCAPES}@gmail.com", "eve@gmail.com"],
        f"Invalid Resource{ESCAPES}",
        f"detail {ESCAPES}",
        message=f"Mailchimp said {ESCAPES}",
        started_by=f"signup{ESCAPES}",
        list_id=LIST_ID,
    )
    db.session.add(ExclusionRule(kind="pattern", value=f"*{ESCAPES}*"))
    db.session.commit()
    insert_customers(db, [{"email": "eve@gmail.com", "first_name": ESCAPES, "newsletter": True}])


def _assert_inert(output: str) -> None:
    for raw in ("\x1b", "\x07", "\u202e", "\x9b", "\r"):
        assert raw not in output, (raw, output)


def test_shop_and_mailchimp_text_is_shown_inert_by_every_command(db_only_app: Flask) -> None:
    choose_audience(db_only_app)
    _hostile_history(db_only_app)
    outputs = {
        "status": _cli(db_only_app, "status"),
        "errors": _cli(db_only_app, "errors"),
        "diagnose": _cli(db_only_app, "diagnose", "eve@gmail.com"),
        "rules": _cli(db_only_app, "rules", "list"),
    }
    for name, result in outputs.items():
        assert result.exit_code == 0, (name, result.output)
        _assert_inert(result.output)
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\u202e\\x9b31m" in outputs["errors"].output
    assert "Mailchimp said \\x1b[2J" in outputs["status"].output
    assert "\\x1b[2J" in outputs["rules"].output
    assert "Invalid Resource\\x1b[2J" in outputs["diagnose"].output
    # Piped, the CSV is data and stays byte for byte; a terminal gets it inert.
    assert "]0;pwned\x07\u202e" in _cli(db_only_app, "errors", "--csv").output
    assert say_csv(f"a{ESCAPES},b\r\nc,d\r\n") == f"a{inert(ESCAPES)},b\r\nc,d\r\n"
    _assert_inert(_cli(db_only_app, "status", "--json").output)


def test_times_carry_their_zone_and_counts_their_number(db_only_app: Flask) -> None:
    choose_audience(db_only_app)
    _hostile_history(db_only_app)
    status = _cli(db_only_app, "status").output
    assert " UTC  auto " in status and "1 sync;" in status and "2 errors." in status
    errors = _cli(db_only_app, "errors").output
    assert errors.startswith(datetime.now(timezone.utc).strftime("%Y-%m-%d ")), errors
    assert " UTC  run " in errors and errors.rstrip().endswith("2 errors.")
    rules = _cli(db_only_app, "rules", "list").output
    assert "(0 addresses)" in rules
    insert_customers(db, [{"email": "a@gmail.com", "newsletter": True}])
    db.session.add(ExclusionRule(kind="address", value="a@gmail.com"))
    db.session.commit()
    assert "(1 address)" in _cli(db_only_app, "rules", "list").output
    one = _cli(db_only_app, "errors", "--kind", "retried").output
    assert one.rstrip().endswith("0 errors.")


def test_terminal_helpers() -> None:
    assert inert("a\x1b[31mb\nc\u202e") == "a\\x1b[31mb\\x0ac\\u202e"
    assert when("2026-01-02T03:04:05+01:00") == "2026-01-02 02:04:05 UTC"
    assert when(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05 UTC"
    assert count(1, "address", "addresses") == "1 address"
    assert count(0, "batch", "batches") == "0 batches" and count(2, "error") == "2 errors"


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_one_plain_line_per_step_when_not_a_terminal() -> None:
    steps = [("[..] 0/10", 0), ("[..] 0/10 4/s", 0), ("[#.] 5/10", 5), ("[##] 10/10", 10)]
    piped = _Stream(tty=False)
    line = ProgressLine(piped)
    for text, step in steps:
        line.show(text, step)
    line.end()
    assert piped.getvalue() == "[..] 0/10\n[#.] 5/10\n[##] 10/10\n"
    terminal = _Stream(tty=True)
    line = ProgressLine(terminal)
    for text, step in steps:
        line.show(text, step)
    line.end()
    assert terminal.getvalue().count("\r") == 4 and terminal.getvalue().endswith("\n")


def test_an_empty_list_is_refused_and_changes_nothing(db_only_app: Flask) -> None:
    choose_audience(db_only_app)
    ext = state(db_only_app)
    settings.mark_first_export_done(ext.session, ext.config)
    db.session.commit()
    result = _cli(db_only_app, "settings", "--list", "")
    assert result.exit_code == 1
    assert "an empty one would clear the target audience" in result.output
    db.session.expire_all()
    current = settings.load(ext.session, ext.config)
    assert current.list_id == LIST_ID and current.first_export_done


def test_export_to_a_list_with_no_audience_chosen_makes_it_the_target(
    app: Flask, sandbox: Any
) -> None:
    ext = state(app)
    assert settings.load(ext.session, ext.config).list_id is None
    result = _cli(app, "export", "--list", LIST_ID)
    assert result.exit_code == 0, result.output
    assert f"No audience was chosen, so {LIST_ID} is now the target audience" in result.output
    db.session.expire_all()
    current = settings.load(ext.session, ext.config)
    assert current.list_id == LIST_ID and current.list_name


def test_an_export_to_another_audience_does_not_start_auto_sync(db_only_app: Flask) -> None:
    choose_audience(db_only_app, "other1234")
    ext = state(db_only_app)
    settings.mark_first_export_done(ext.session, ext.config, LIST_ID)
    db.session.commit()
    assert not settings.load(ext.session, ext.config).first_export_done
    settings.mark_first_export_done(ext.session, ext.config, "other1234")
    db.session.commit()
    assert settings.load(ext.session, ext.config).first_export_done


def test_cli_sentences_use_cli_wording(db_only_app: Flask) -> None:
    # No Redis: the export cannot be queued; the sentence says what to do from here.
    choose_audience(db_only_app)
    db_only_app.extensions["mcsync"]._redis = None
    result = _cli(db_only_app, "export")
    assert result.exit_code == 1
    assert "press" not in result.output and "Synchronize" not in result.output
    assert "MCSYNC_REDIS_URL" in result.output


def test_a_malformed_api_key_is_a_sentence_in_every_command(tmp_path: Any) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MCSYNC_")},
        "MCSYNC_API_KEY": "not-a-key",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}",
        "SECRET_KEY": "test",
    }
    commands = (["status"], ["worker", "--burst"], ["export"], ["settings"], ["flush"])
    # Real commands, from the fork server (tests/forkserver.py): the same flask.cli.main
    # in a process of its own, without a second of imports each. Side by side: the
    # commands share nothing.
    logs = [tmp_path / f"{command[0]}.err" for command in commands]
    running = [
        FORK_SERVER.spawn(["--app", "example_app", "mcsync", *command], env, stderr=log)
        for command, log in zip(commands, logs, strict=True)
    ]
    try:
        for command, proc, log in zip(commands, running, logs, strict=True):
            returncode = proc.wait(timeout=60)
            stderr = log.read_text()
            assert returncode == 1, (command, stderr)
            assert "Traceback" not in stderr, (command, stderr)
            assert stderr.startswith("Error: MCSYNC_API_KEY does not look like"), stderr
    finally:
        for proc in running:
            if proc.poll() is None:  # a reaped pid may already belong to another process
                kill_session(proc)


def test_json_output_is_json_that_strict_readers_take(capsys: Any) -> None:
    """A host's merge value may be a float NaN or infinity: ``--json`` writes it as text,
    never the bare ``NaN`` that jq and strict parsers refuse."""
    import json
    import math
    from decimal import Decimal

    from flask_mcsync.cli_output import emit

    data = {
        "merge_fields": {"SCORE": math.nan, "LIMIT": math.inf, "FLOOR": -math.inf, "N": 1.5},
        "history": [({"sent": {"AGE": math.nan}},), Decimal("NaN")],
    }

    def refuse(word: str) -> None:
        raise AssertionError(f"bare {word} in the output")

    emit(data, True, lambda: None)
    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert printed == {
        "merge_fields": {"SCORE": "nan", "LIMIT": "inf", "FLOOR": "-inf", "N": 1.5},
        "history": [[{"sent": {"AGE": "nan"}}], "NaN"],
    }
