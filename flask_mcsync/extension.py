"""The extension object: wiring between the host app and the rest of the package.

Per-app state lives in ``app.extensions["mcsync"]`` (a :class:`~.app_state.McSync`, in
:mod:`.app_state`, which every other module may import; nothing but the package's
``__init__`` imports this one). The :class:`MailchimpSync` object itself holds only what
the host passed to its constructor, so one instance serves several apps (application
factory pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from . import hook
from .admin import make_blueprint
from .app_state import EXTENSION_KEY, Authorize, McSync, state
from .cli import mcsync_cli
from .config import read_config
from .errors import ConfigError
from .host_migrations import leave_our_tables_alone
from .source import SubscriberSource
from .statuses import OutboxAction
from .webhooks import make_webhook_blueprint


class MailchimpSync:
    """Flask extension that keeps the shop's addresses in a Mailchimp audience.

    :param app: register right away (or call :meth:`init_app` later).
    :param db: the host's Flask-SQLAlchemy object; the ``mcsync_*`` tables live there.
    :param source: where the subscribers are (:class:`SubscriberSource`).
    :param authorize: a callable answering whether the current request may use the
        admin pages. Without one, every admin page answers 403.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy | None = None,
        source: SubscriberSource | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.db = db
        self.source = source
        self.authorize = authorize
        if app is not None:
            self.init_app(app)

    def init_app(
        self,
        app: Flask,
        *,
        db: SQLAlchemy | None = None,
        source: SubscriberSource | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        """Register on ``app``: config check, admin blueprint, ``flask mcsync`` commands.

        :raises RuntimeError: when already registered on this app.
        :raises ConfigError: when an ``MCSYNC_*`` setting is missing or malformed.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "MailchimpSync is already registered on this app; call init_app once per app."
            )
        db = db or self.db or app.extensions.get("sqlalchemy")
        if db is None:
            raise ConfigError(
                "MailchimpSync needs the app's Flask-SQLAlchemy object: pass db=... (its"
                " tables live in the host's database), after db.init_app(app)."
            )
        config = read_config(app.config)
        app.extensions[EXTENSION_KEY] = McSync(
            app,
            config,
            db,
            source or self.source,
            authorize or self.authorize,
        )
        # Explicitly, not as a side effect of an import: the signup signals' receivers
        # and the session events that write the outbox rows.
        hook.listen()
        app.register_blueprint(make_blueprint(), url_prefix=config.url_prefix)
        # Mailchimp's callbacks: outside the admin pages (no login, no CSRF token), and
        # guarded by the secret in their URL instead.
        app.register_blueprint(make_webhook_blueprint(), url_prefix=config.webhook_path)
        app.cli.add_command(mcsync_cli)
        leave_our_tables_alone(app)

    def connect_signal(
        self,
        signal: Any,
        subscriber: Callable[..., Any],
        action: str = OutboxAction.SIGNUP,
    ) -> Callable[..., None]:
        """Feed an existing host signal into auto-sync, in one line::

            mcsync.connect_signal(user_registered, lambda sender, **kw: kw["user"])

        ``subscriber`` picks the subscriber (an instance of the source model) out of the
        signal's arguments; ``action="change"`` for signals about profile changes.
        """
        return hook.connect(signal, subscriber, action)

    def state(self, app: Flask | None = None) -> McSync:
        return state(app)
