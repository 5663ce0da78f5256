"""Wiring that the module layout promises: nothing happens on import, init_app attaches.

The import direction itself is checked by ``lint-imports`` (contracts in pyproject.toml).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from support import ROOT

HOST = textwrap.dedent(
    """
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    import flask_mcsync
    from flask_mcsync import MailchimpSync, hook, jobs, outbox, sweep, worker
    from flask_mcsync.signals import subscriber_changed, subscriber_signed_up

    def attached():
        return (
            len(subscriber_signed_up.receivers),
            len(subscriber_changed.receivers),
            event.contains(Session, "before_commit", hook._write_rows),
            event.contains(Session, "after_commit", hook._enqueue_committed),
        )

    print(attached())
    mcsync = MailchimpSync()
    for name in ("one", "two"):
        app = Flask(name)
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
        db = SQLAlchemy(app)
        mcsync.init_app(app, db=db)
    print(attached())
    """
)


def test_importing_the_package_attaches_nothing_and_init_app_attaches_once() -> None:
    # A fresh interpreter: in this one, the test apps registered the receivers long ago.
    done = subprocess.run(
        [sys.executable, "-c", HOST], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.strip().splitlines()
    assert before == "(0, 0, False, False)"
    # Two apps, one receiver each and one set of session events: a signup is noted once.
    assert after == "(1, 1, True, True)"
