"""The ``MCSYNC_*`` configuration keys, read once when the extension is registered.

A missing or malformed setting is a :class:`ConfigError` at start-up with a sentence saying
what to set, never a surprise in the middle of a run.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .i18n import available_locales, is_available

#: Every key the extension reads, with its default. Documented in the README.
DEFAULTS: dict[str, Any] = {
    "MCSYNC_API_KEY": None,
    "MCSYNC_API_URL": None,
    "MCSYNC_REDIS_URL": None,
    "MCSYNC_REQUEST_TIMEOUT": 30.0,
    "MCSYNC_CONNECT_TIMEOUT": 5.0,
    "MCSYNC_QUEUE": "mcsync",
    "MCSYNC_URL_PREFIX": "/admin/mailchimp",
    "MCSYNC_MAX_CONNECTIONS": 10,
    "MCSYNC_MAX_BATCH_SIZE": 10_000,
    "MCSYNC_DEFAULT_BATCH_SIZE": 500,
    "MCSYNC_MAX_ATTEMPTS": 8,
    "MCSYNC_LEASE_SECONDS": 120.0,
    "MCSYNC_POLL_INTERVAL": 2.0,
    "MCSYNC_BATCHES_IN_FLIGHT": 20,
    "MCSYNC_SWEEP_INTERVAL": 30,
    "MCSYNC_RETRY_DELAY": 2.0,
    "MCSYNC_FORK_PER_JOB": False,
    "MCSYNC_LOCALE": None,
    "MCSYNC_PUBLIC_URL": None,
    "MCSYNC_WEBHOOK_PATH": "/mcsync/webhook",
    "MCSYNC_RECONCILE_INTERVAL": 0,
}

# Mailchimp keys are 32 hex digits, a dash and the datacenter (``...-us21``); mailchimp3
# refuses any other shape before sending anything.
API_KEY_RE = re.compile(r"^[0-9a-f]{32}-[a-z0-9]+$")

# Mailchimp answers POST /batches with 429 while an account has this many unfinished.
MAX_PENDING_BATCHES = 500

# Mailchimp answers a request in at most 120 s; a longer timeout would only hide a dead peer.
MAX_TIMEOUT = 120.0


@dataclass(frozen=True)
class Config:
    """The extension's settings for one app."""

    api_key: str | None
    api_url: str
    redis_url: str | None
    request_timeout: float
    connect_timeout: float
    queue_name: str
    url_prefix: str
    max_connections: int
    max_batch_size: int
    default_batch_size: int
    max_attempts: int
    lease_seconds: float
    poll_interval: float
    sweep_interval: int
    # An export's batches planned and not yet recorded (sent, or waiting to be sent
    # again): its planning pauses at this many and resumes at three quarters (see
    # planner.plan_chunk and runs.resumable).
    batches_in_flight: int = 20
    # The first wait after a passing failure (doubled at each further try).
    retry_delay: float = 2.0
    fork_per_job: bool = False
    # The admin pages' language: a locale code or a callable returning one (per request);
    # None lets the host's Flask-Babel or the browser decide. See :mod:`.i18n`.
    locale: str | Callable[[], str | None] | None = None
    # Both ways: the shop's public base URL (for Mailchimp's webhook), where the webhook
    # endpoint lives under it, and seconds between periodic reconciles (0: off).
    public_url: str | None = None
    webhook_path: str = "/mcsync/webhook"
    reconcile_interval: int = 0

    @property
    def datacenter(self) -> str | None:
        return datacenter_of(self.api_key) if self.api_key else None

    @property
    def masked_api_key(self) -> str:
        """The key as the admin pages show it: never whole."""
        if not self.api_key:
            return "(not set)"
        return f"…{self.api_key[-8:]}" if len(self.api_key) > 12 else "…"


def datacenter_of(api_key: str) -> str:
    return api_key.rsplit("-", 1)[-1]


def read_config(app_config: dict[str, Any] | Any) -> Config:
    """Validate the ``MCSYNC_*`` keys of a Flask config and return them typed.

    :raises ConfigError: with a sentence naming the key and what to set it to.
    """

    def get(key: str) -> Any:
        value = app_config.get(key, DEFAULTS[key])
        return DEFAULTS[key] if value in (None, "") else value

    api_key = get("MCSYNC_API_KEY")
    if api_key is not None:
        api_key = str(api_key).strip()
        if not API_KEY_RE.match(api_key):
            raise ConfigError(
                "MCSYNC_API_KEY does not look like a Mailchimp API key: it should be 32 hex"
                " digits, a dash and the datacenter (like '0123…cdef-us21'). Copy it again"
                " from Mailchimp's Profile > Extras > API keys."
            )

    api_url = get("MCSYNC_API_URL")
    if api_url is None:
        api_url = f"https://{datacenter_of(api_key)}.api.mailchimp.com/3.0/" if api_key else ""
    else:
        api_url = str(api_url).strip()
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"MCSYNC_API_URL={api_url!r} is not an http(s) URL. Set it to the API root,"
                " like 'http://127.0.0.1:8025/3.0/', or leave it unset to use Mailchimp."
            )
        # mailchimp3 joins paths with urljoin, which drops '/3.0' without a trailing slash.
        if not api_url.endswith("/"):
            api_url += "/"

    redis_url = get("MCSYNC_REDIS_URL")
    if redis_url is not None:
        redis_url = str(redis_url)
        if urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"MCSYNC_REDIS_URL={redis_url!r} is not a Redis URL. Use"
                " 'redis://host:6379/0' (or 'unix:///path/to/redis.sock')."
            )

    # The read timeout: how long Mailchimp may take to answer.
    timeout = _timeout(get("MCSYNC_REQUEST_TIMEOUT"), "MCSYNC_REQUEST_TIMEOUT")
    # Opening a connection takes well under a second when Mailchimp is reachable.
    connect_timeout = _timeout(get("MCSYNC_CONNECT_TIMEOUT"), "MCSYNC_CONNECT_TIMEOUT")
    max_connections = _number(get("MCSYNC_MAX_CONNECTIONS"), "MCSYNC_MAX_CONNECTIONS", int)
    if not 1 <= max_connections <= 10:
        raise ConfigError(
            "MCSYNC_MAX_CONNECTIONS must be between 1 and 10: Mailchimp refuses more than"
            f" 10 simultaneous connections per account; it is {max_connections}."
        )
    max_batch = _number(get("MCSYNC_MAX_BATCH_SIZE"), "MCSYNC_MAX_BATCH_SIZE", int)
    default_batch = _number(get("MCSYNC_DEFAULT_BATCH_SIZE"), "MCSYNC_DEFAULT_BATCH_SIZE", int)
    if not 1 <= default_batch <= max_batch:
        raise ConfigError(
            f"MCSYNC_DEFAULT_BATCH_SIZE must be between 1 and MCSYNC_MAX_BATCH_SIZE"
            f" ({max_batch}); it is {default_batch}."
        )
    max_attempts = _number(get("MCSYNC_MAX_ATTEMPTS"), "MCSYNC_MAX_ATTEMPTS", int)
    if max_attempts < 1:
        raise ConfigError("MCSYNC_MAX_ATTEMPTS must be at least 1.")
    in_flight = _number(get("MCSYNC_BATCHES_IN_FLIGHT"), "MCSYNC_BATCHES_IN_FLIGHT", int)
    if not 2 <= in_flight <= MAX_PENDING_BATCHES:
        raise ConfigError(
            f"MCSYNC_BATCHES_IN_FLIGHT must be between 2 and {MAX_PENDING_BATCHES} (Mailchimp"
            f" refuses more pending batches per account); it is {in_flight}."
        )
    prefix = str(get("MCSYNC_URL_PREFIX"))
    if not prefix.startswith("/"):
        raise ConfigError(f"MCSYNC_URL_PREFIX must start with '/'; it is {prefix!r}.")

    locale = get("MCSYNC_LOCALE")
    if locale is not None and not callable(locale):
        locale = str(locale).strip()
        if not is_available(locale):
            raise ConfigError(
                f"MCSYNC_LOCALE={locale!r} has no catalog: use one of"
                f" {', '.join(available_locales())}, a callable returning one, or leave it"
                " unset to follow the browser (see the README to add a language)."
            )
    public_url = get("MCSYNC_PUBLIC_URL")
    if public_url is not None:
        public_url = str(public_url).strip().rstrip("/")
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ConfigError(
                f"MCSYNC_PUBLIC_URL={public_url!r} is not the shop's public base URL. Set it"
                " to the address Mailchimp can reach, like 'https://shop.example.com', or"
                " leave it unset and use 'flask mcsync reconcile' instead of the webhook."
            )
    webhook_path = str(get("MCSYNC_WEBHOOK_PATH")).rstrip("/")
    if not webhook_path.startswith("/"):
        raise ConfigError(f"MCSYNC_WEBHOOK_PATH must start with '/'; it is {webhook_path!r}.")
    reconcile_interval = _number(get("MCSYNC_RECONCILE_INTERVAL"), "MCSYNC_RECONCILE_INTERVAL", int)
    if reconcile_interval < 0:
        raise ConfigError(
            "MCSYNC_RECONCILE_INTERVAL is the number of seconds between two reconciles"
            f" (0 switches them off); it is {reconcile_interval}."
        )

    return Config(
        api_key=api_key,
        api_url=api_url,
        redis_url=redis_url,
        request_timeout=timeout,
        connect_timeout=connect_timeout,
        queue_name=str(get("MCSYNC_QUEUE")),
        url_prefix=prefix.rstrip("/") or "/",
        max_connections=max_connections,
        max_batch_size=max_batch,
        default_batch_size=default_batch,
        max_attempts=max_attempts,
        lease_seconds=_positive(get("MCSYNC_LEASE_SECONDS"), "MCSYNC_LEASE_SECONDS", float),
        poll_interval=_positive(get("MCSYNC_POLL_INTERVAL"), "MCSYNC_POLL_INTERVAL", float),
        sweep_interval=_positive(get("MCSYNC_SWEEP_INTERVAL"), "MCSYNC_SWEEP_INTERVAL", int),
        batches_in_flight=in_flight,
        retry_delay=_positive(get("MCSYNC_RETRY_DELAY"), "MCSYNC_RETRY_DELAY", float),
        fork_per_job=_flag(get("MCSYNC_FORK_PER_JOB"), "MCSYNC_FORK_PER_JOB"),
        locale=locale,
        public_url=public_url,
        webhook_path=webhook_path,
        reconcile_interval=reconcile_interval,
    )


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false (1 or 0); it is {value!r}.")


def _number(value: Any, key: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number; it is {value!r}.") from None


def _timeout(value: Any, key: str) -> float:
    seconds: float = _number(value, key, float)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigError(
            f"{key} must be between 0 and {MAX_TIMEOUT:g} seconds"
            f" (Mailchimp's own limit); it is {seconds:g}."
        )
    return seconds


def _positive(value: Any, key: str, kind: type[int] | type[float]) -> Any:
    number = _number(value, key, kind)
    if number <= 0:
        raise ConfigError(f"{key} must be greater than 0; it is {value!r}.")
    return number
