"""Wiring that the module layout promises: nothing happens on import, init_app attaches,
and the per-app state is a leaf.

The import direction itself is checked by ``lint-imports`` (contracts in pyproject.toml);
its layers would still let ``app_state`` import the few modules listed below it.
"""

from __future__ import annotations

import ast
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


class _RunTimeImports(ast.NodeVisitor):
    """The package's modules a module imports when it runs: at any level, but not under
    ``if TYPE_CHECKING:``."""

    def __init__(self) -> None:
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found |= {a.name for a in node.names if a.name.startswith("flask_mcsync")}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and not (node.module or "").startswith("flask_mcsync"):
            return
        if node.module and node.module != "flask_mcsync":
            self.found.add(node.module.removeprefix("flask_mcsync."))
        else:  # from . import errors
            self.found |= {a.name for a in node.names}


def test_the_per_app_state_imports_only_the_error_family_and_the_statuses() -> None:
    """Every layer may import ``app_state``: what is made from the state (the gateway, the
    queue) is made by its own module, which receives the state."""
    imports = _RunTimeImports()
    imports.visit(ast.parse((ROOT / "flask_mcsync" / "app_state.py").read_text()))
    assert imports.found, "the walk saw no import at all"
    assert imports.found <= {"errors", "statuses"}, imports.found
