"""The extension object: wiring between the host app and the rest of the package.

Per-app state lives in ``app.extensions["mcsync"]`` (a :class:`McSync`); the
:class:`MailchimpSync` object itself holds only what the host passed to its constructor,
so one instance serves several apps (application factory pattern).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app, has_app_context
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from sqlalchemy.orm import Session

from .config import Config, ConfigError, read_config
from .gateway import Gateway
from .host_migrations import leave_our_tables_alone
from .source import SubscriberSource
from .throttle import ConnectionSlots, account_id

if TYPE_CHECKING:
    from rq import Queue

EXTENSION_KEY = "mcsync"

Authorize = Callable[[], bool]


class McSync:
    """What the extension knows about one app. Get it with :func:`state`."""

    def __init__(
        self,
        app: Flask,
        config: Config,
        db: SQLAlchemy,
        source: SubscriberSource | None,
        authorize: Authorize | None,
    ) -> None:
        self._app = weakref.ref(app)
        self.config = config
        self.db = db
        self.source = source
        self.authorize = authorize
        self._redis: Redis | None = None
        #: Set by a command that found Redis not answering (``flask mcsync flush``): it
        #: then sends without the shared connection slots and queues no job.
        self.redis_offline = False

    @property
    def app(self) -> Flask:
        app = self._app()
        if app is None:  # pragma: no cover - the app owns this object
            raise RuntimeError("The Flask app of this mcsync state is gone.")
        return app

    @property
    def session(self) -> Session:
        """The host's Flask-SQLAlchemy session (a scoped session, typed as what it proxies)."""
        return cast(Session, self.db.session)

    def require_source(self) -> SubscriberSource:
        if self.source is None:
            raise ConfigError(
                "No subscriber source: pass source=SubscriberSource(model=..., email=...) to"
                " MailchimpSync(...) or init_app(...) so the extension knows where the"
                " shop's addresses live."
            )
        return self.source

    @property
    def redis(self) -> Redis:
        """The Redis connection for jobs and connection slots (made on first use)."""
        if self._redis is None:
            if not self.config.redis_url:
                raise ConfigError(
                    "MCSYNC_REDIS_URL is not set: exports and auto-sync run as RQ jobs and"
                    " need Redis. Set it to 'redis://host:6379/0'."
                )
            # Short timeouts: a signup must not hang on a dead Redis, it falls back instead.
            self._redis = Redis.from_url(
                self.config.redis_url, socket_connect_timeout=2, socket_timeout=10
            )
        return self._redis

    def queue(self) -> Queue:
        from .worker import make_queue

        return make_queue(self)

    def gateway(self) -> Gateway:
        """A gateway to the configured Mailchimp account.

        :raises ConfigError: when ``MCSYNC_API_KEY`` is not set.
        """
        if not self.config.api_key:
            raise ConfigError(
                "MCSYNC_API_KEY is not set: add your Mailchimp API key to the app config"
                " (or run the sandbox and point MCSYNC_API_URL at it)."
            )
        slots = None
        if self.config.redis_url and not self.redis_offline:
            slots = ConnectionSlots(
                self.redis,
                account=account_id(self.config.api_key),
                limit=self.config.max_connections,
                # A lease outlives the slowest possible request, then frees itself.
                lease_seconds=self.config.connect_timeout + self.config.request_timeout + 30,
                # Give up waiting well before the job's own lease runs out, so a job
                # stuck behind busy slots retries instead of being taken over mid-wait.
                wait_seconds=self.config.lease_seconds / 2,
            )
        return Gateway(
            self.config.api_key,
            self.config.api_url,
            self.config.request_timeout,
            slots,
            connect_timeout=self.config.connect_timeout,
        )


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
        from . import outbox  # noqa: F401 - connects the signup signals' receivers
        from .admin import make_blueprint
        from .cli import mcsync_cli

        app.register_blueprint(make_blueprint(), url_prefix=config.url_prefix)
        # Mailchimp's callbacks: outside the admin pages (no login, no CSRF token), and
        # guarded by the secret in their URL instead.
        from .webhooks import make_webhook_blueprint

        app.register_blueprint(make_webhook_blueprint(), url_prefix=config.webhook_path)
        app.cli.add_command(mcsync_cli)
        leave_our_tables_alone(app)

    def connect_signal(
        self, signal: Any, subscriber: Callable[..., Any], action: str = "signup"
    ) -> Callable[..., None]:
        """Feed an existing host signal into auto-sync, in one line::

            mcsync.connect_signal(user_registered, lambda sender, **kw: kw["user"])

        ``subscriber`` picks the subscriber (an instance of the source model) out of the
        signal's arguments; ``action="change"`` for signals about profile changes.
        """
        from .outbox import connect

        return connect(signal, subscriber, action)

    def state(self, app: Flask | None = None) -> McSync:
        return state(app)


def state(app: Flask | None = None) -> McSync:
    """The mcsync state of ``app`` (default: the current app).

    :raises RuntimeError: outside an app context, or when the extension is not registered.
    """
    if app is None:
        if not has_app_context():
            raise RuntimeError(
                "flask-mcsync needs an application context: run this inside"
                " 'with app.app_context():' or a request."
            )
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        found: McSync = app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "MailchimpSync is not registered on this app: call mcsync.init_app(app)."
        ) from None
    return found
