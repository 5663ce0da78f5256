"""The per-app state of the extension, and how to find it: the one module everyone may import.

Per-app state lives in ``app.extensions["mcsync"]`` (a :class:`McSync`), made by
:meth:`MailchimpSync.init_app <flask_mcsync.MailchimpSync.init_app>`. Services receive it
as an argument; entry points (commands, views, jobs) look it up with :func:`state`.
Lower modules that only name the type import it under ``TYPE_CHECKING``.

A leaf: at run time it imports nothing of ours but the error family, so any module may
import it. What is made from the state is made by its own module, which receives it:
the gateway by :func:`flask_mcsync.gateway.gateway_for`, the queue by
:func:`flask_mcsync.enqueue.make_queue`.

Not called ``state.py``: that submodule would shadow the public ``flask_mcsync.state``
function on the package.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app, has_app_context
from redis import Redis
from sqlalchemy.orm import Session

from .errors import ConfigError

if TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

    from .config import Config
    from .source import SubscriberSource

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
        #: The audiences' merge field types as last read, by list id: (monotonic time
        #: read, types). See :func:`flask_mcsync.preflight.recent_types`.
        self.field_types: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        #: Per thread, as ``.value``: the :class:`~flask_mcsync.gateway.KeptSession` of a
        #: :func:`~flask_mcsync.gateway.kept_connections` block, if one runs.
        self.kept_sessions = threading.local()

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
