"""Living beside a host's Flask-Migrate.

- Always, once the app has Flask-Migrate (whichever of ``Migrate`` and ``MailchimpSync``
  was set up first): its autogenerate leaves the ``mcsync_*`` tables alone. Without
  this, ``flask db migrate`` sees them as tables the host dropped and writes
  ``op.drop_table`` for each. The filters are added to ``Migrate``'s ``configure_args``,
  around any ``include_name`` / ``include_object`` the host passed.
- When the host asks, with :func:`add_revisions`: its ``flask db upgrade heads`` runs our
  revisions too, recorded in its own version table, so one command migrates everything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.script import Script
from flask import Flask, appcontext_pushed, current_app

from .migrations import VERSIONS_LOCATION, include_name, include_object

MIGRATE_KEY = "migrate"  # where Flask-Migrate keeps its per-app configuration


class _Both:
    """A filter of ours and, when the host gave one, the host's: both must agree."""

    def __init__(self, ours: Callable[..., bool], host: Callable[..., bool] | None) -> None:
        self.ours = ours
        self.host = host

    def __call__(self, *args: Any) -> bool:
        return self.ours(*args) and (self.host is None or self.host(*args))


def _install_filters(app: Flask) -> None:
    args = getattr(app.extensions.get(MIGRATE_KEY), "configure_args", None)
    if not isinstance(args, dict):
        return  # no Flask-Migrate (or something else under its name)
    for key, ours in (("include_name", include_name), ("include_object", include_object)):
        if not isinstance(args.get(key), _Both):
            args[key] = _Both(ours, args.get(key))


def leave_our_tables_alone(app: Flask) -> None:
    """Keep the host's Flask-Migrate autogenerate off the ``mcsync_*`` tables, now if it is
    set up already, else at the first app context after it is (``flask db`` commands run
    in one)."""
    _install_filters(app)

    def on_push(sender: Flask, **extra: Any) -> None:
        _install_filters(sender)

    # Strong: the receiver lives as long as the app does (blinker drops it with the app).
    appcontext_pushed.connect(on_push, app, weak=False)


def _separator(config: Config) -> str:
    names = {"space": " ", "newline": "\n", "os": os.pathsep, ":": ":", ";": ";"}
    chosen = config.get_main_option("path_separator")
    if chosen is None:
        # Alembic's recommended setting; without one, it splits on spaces and warns.
        config.set_main_option("path_separator", "os")
        chosen = "os"
    return names[chosen]


def _with_our_versions(config: Config) -> Config:
    locations = config.get_version_locations_list() or [
        os.path.join(config.get_main_option("script_location") or "migrations", "versions")
    ]
    if str(VERSIONS_LOCATION) not in locations:
        locations.append(str(VERSIONS_LOCATION))
    separator = _separator(config)
    config.set_main_option("version_locations", separator.join(locations).replace("%", "%%"))
    args = current_app.extensions[MIGRATE_KEY].configure_args
    if not isinstance(args.get("process_revision_directives"), _OnHostHead):
        args["process_revision_directives"] = _OnHostHead(args.get("process_revision_directives"))
    return config


def _ours(revision: Script | None) -> bool:
    return revision is not None and Path(revision.path).parent.resolve() == (
        VERSIONS_LOCATION.resolve()
    )


class _OnHostHead:
    """``flask db migrate`` bases the host's new revision on the host's own head, in the
    host's folder, not on ours: with our branch beside the host's there are two heads, and
    Alembic would otherwise refuse ("Multiple heads are present")."""

    def __init__(self, host: Callable[..., None] | None) -> None:
        self.host = host

    def __call__(self, context: MigrationContext, revision: Any, directives: list[Any]) -> None:
        script = context.script
        config = context.environment_context.config if context.environment_context else None
        for directive in directives:
            if script is None or not isinstance(directive, MigrationScript):
                continue
            if directive.head != "head":
                continue  # the host chose one (flask db migrate --head ...)
            theirs = [head for head in script.get_heads() if not _ours(script.get_revision(head))]
            if len(theirs) == 1:
                directive.head = theirs[0]
            elif not theirs:
                # The host's first revision: a new base, in the host's own folder.
                directive.head = "base"
                directive.version_path = next(
                    path
                    for path in (config.get_version_locations_list() if config else None) or []
                    if Path(path).resolve() != VERSIONS_LOCATION.resolve()
                )
        if self.host is not None:
            self.host(context, revision, directives)
            return
        # Flask-Migrate's env.py does this itself only when given no hook: an autogenerate
        # that found nothing writes no empty revision.
        autogenerate = getattr(getattr(config, "cmd_opts", None), "autogenerate", False)
        if autogenerate and directives and directives[0].upgrade_ops.is_empty():
            directives[:] = []


def add_revisions(migrate: Any) -> None:
    """Let the host's Flask-Migrate (``migrate``, its ``Migrate`` object) run our revisions:
    ``flask db upgrade heads`` then migrates the host's tables and ours, recorded in the
    host's version table, and ``flask db migrate`` keeps basing the host's revisions on
    the host's head. ``flask mcsync init-db`` is then not needed (and refuses to run on
    tables created this way).
    """
    migrate.configure(_with_our_versions)
