"""The per-app state of the extension, and how to find it: the one module everyone may import.

Per-app state lives in ``app.extensions["mcsync"]`` (a :class:`McSync`), made by
:meth:`MailchimpSync.init_app <flask_mcsync.MailchimpSync.init_app>`. Services receive it
as an argument; entry points (commands, views, jobs) look it up with :func:`state`.
Lower modules that only name the type import it under ``TYPE_CHECKING``.

Not called ``state.py``: that submodule would shadow the public ``flask_mcsync.state``
function on the package.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app, has_app_context
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from requests import Session as HttpSession
from sqlalchemy.orm import Session

from .config import Config, ConfigError
from .enqueue import make_queue
from .gateway import Gateway
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
        #: The audiences' merge field types as last read, by list id: (monotonic time
        #: read, types). See :func:`flask_mcsync.preflight.recent_types`.
        self.field_types: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        # Per thread: the KeptSession of a kept_connections() block, if one runs.
        self._kept = threading.local()

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
            session=self._kept_session(),
        )

    @contextlib.contextmanager
    def kept_connections(self) -> Iterator[None]:
        """Within this block, every gateway made in this thread shares one HTTP session.

        A worker runs its jobs in it: each auto-sync send and each poll is a job of its
        own, and with a gateway of their own each opened a new connection to Mailchimp
        (a TLS handshake, on the real service) for one request. Shared, the connection
        stays open from one job to the next.

        A connection idle for longer than :data:`KEPT_IDLE_SECONDS` is closed before the
        next job uses it. urllib3 notices a connection the server closed only once the
        close has arrived; one a NAT or load balancer dropped silently would hold the
        next request for the whole read timeout. A connection that fails mid-request
        fails like any dropped connection, and the job's retry covers it.

        Only the thread and process that opened the block share it: a work horse forked
        per job (``MCSYNC_FORK_PER_JOB``) makes its own, never writing on its parent's
        sockets, and other threads (the admin pages') keep a session per gateway.
        """
        kept = KeptSession()
        previous = getattr(self._kept, "value", None)
        self._kept.value = kept
        try:
            yield
        finally:
            self._kept.value = previous
            kept.session.close()

    def _kept_session(self) -> HttpSession | None:
        kept: KeptSession | None = getattr(self._kept, "value", None)
        if kept is None or kept.pid != os.getpid():  # a forked child: not its sockets
            return None
        kept.freshen()
        return kept.session


#: Seconds a worker's kept connection may sit unused before it is closed rather than
#: reused: well under the idle limits of NAT gateways and load balancers (4-6 minutes
#: for the common clouds' NATs; 60 s for many load balancers).
KEPT_IDLE_SECONDS = 30.0


class KeptSession:
    """A worker thread's shared HTTP session and when it last answered a request."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child inherits the thread's locals, not this
        self.session = HttpSession()
        self.used = time.monotonic()
        self.session.hooks["response"].append(self._answered)

    def _answered(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.used = time.monotonic()

    def freshen(self) -> None:
        """Close the pooled connections if they sat idle too long (the session stays
        usable: the next request opens a new one)."""
        if time.monotonic() - self.used > KEPT_IDLE_SECONDS:
            self.session.close()
            self.used = time.monotonic()


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
