"""The one family of errors a user of flask-mcsync can meet.

Every error the package raises on purpose is a :class:`McSyncError`, so the CLI's
translator and the admin views catch one class, and a host can too. ``str(error)`` is
the sentence shown to the person: what went wrong and what to do next. Subclasses keep
their builtin base where callers rely on it (an :class:`~flask_mcsync.rules.InvalidRule`
is still a :class:`ValueError`).

Infrastructure: this module imports nothing of ours, so every layer may raise from it.
"""

from __future__ import annotations

import click


class McSyncError(Exception):
    """Something the shop owner or the host can act on; ``str()`` says what and how."""


class SchemaError(McSyncError, click.ClickException, RuntimeError):
    """The mcsync tables are in a state ``init-db`` must not touch; the message says why.

    Also a :class:`click.ClickException`: raised under ``flask db upgrade`` (a host on
    Flask-Migrate), it is shown as a message too, not a traceback.
    """


class ConfigError(click.ClickException, McSyncError, RuntimeError):
    """A ``MCSYNC_*`` setting is missing or malformed.

    Also a :class:`click.ClickException`: when the app fails to start under ``flask ...``
    (a malformed key is refused in ``init_app``, before any command runs), click prints
    the sentence and exits with status 1 instead of a traceback, whatever the command.
    """
