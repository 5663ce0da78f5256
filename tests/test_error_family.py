"""The one family of errors: every exception class the package defines is a McSyncError."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import flask_mcsync
from flask_mcsync import legacy_schema
from flask_mcsync.errors import McSyncError, SchemaError


def _our_exception_classes() -> list[type[BaseException]]:
    found = []
    for module in pkgutil.walk_packages(flask_mcsync.__path__, "flask_mcsync."):
        # The sandbox stands in for Mailchimp: its errors are Mailchimp's, not ours.
        if module.name.startswith(("flask_mcsync.sandbox", "flask_mcsync.alembic")):
            continue
        loaded = importlib.import_module(module.name)
        found += [
            cls
            for _, cls in inspect.getmembers(loaded, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == module.name
        ]
    return found


def test_every_exception_class_of_the_package_is_a_mcsync_error() -> None:
    classes = _our_exception_classes()
    assert len(classes) >= 15, classes  # the walk found the package's modules
    assert [c.__qualname__ for c in classes if not issubclass(c, McSyncError)] == []


def test_a_schema_error_is_shown_as_a_message_under_click_too() -> None:
    @click.command()
    def upgrade() -> None:  # as under a host's `flask db upgrade`
        raise SchemaError("Restore the table from a backup.")

    result = CliRunner().invoke(upgrade)

    assert result.exit_code == 1
    assert result.output == "Error: Restore the table from a backup.\n"  # no traceback


def test_a_legacy_schema_table_without_a_version_says_what_to_do() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(SchemaError, match="records no version"):
        legacy_schema.bring_to_last_version(conn, 0, lambda: None)
