""" "Connect Mailchimp's changes": register, check and remove the audience's webhook.

The General settings card and ``flask mcsync webhook register|status|remove`` call these
functions. The webhook listens to changes made by the person (``user``) and by the
Mailchimp account's admins (``admin``), never to API calls (``api``): those are our own
syncs, and hearing them back would echo. Whether it is in place is asked of Mailchimp
each time, because the usual failure is a webhook deleted there without anyone noticing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from redis.exceptions import RedisError

from . import messages
from . import settings as settings_mod
from .app_state import McSync
from .errors import ConfigError
from .gateway import MailchimpError, gateway_for
from .throttle import SlotTimeout
from .webhook_events import event_counts, last_event

EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": False,
}
SOURCES = {"user": True, "admin": True, "api": False}

NO_PUBLIC_URL = (
    "The shop has no public URL (MCSYNC_PUBLIC_URL is not set), so Mailchimp cannot call"
    " it. Set MCSYNC_PUBLIC_URL to the address Mailchimp can reach, or let the workers"
    " reconcile periodically (MCSYNC_RECONCILE_INTERVAL) or run 'flask mcsync reconcile'."
)


@dataclass
class WebhookStatus:
    """What the card and ``flask mcsync webhook status`` show."""

    public_url: str | None
    list_id: str | None
    url: str | None = None  # with the secret masked: never shown whole
    in_place: bool | None = None  # None: could not ask Mailchimp
    webhook_id: str | None = None
    sources: dict[str, bool] = field(default_factory=dict)
    events: dict[str, bool] = field(default_factory=dict)
    error: str | None = None
    last_event_at: str | None = None
    last_event_type: str | None = None
    events_by_status: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def webhook_url(ext: McSync, secret: str) -> str:
    if not ext.config.public_url:
        raise ConfigError(NO_PUBLIC_URL)
    return f"{ext.config.public_url}{ext.config.webhook_path}/{secret}"


def masked(url: str, secret: str) -> str:
    return url.replace(secret, secret[:4] + "…")


def _ours(hooks: list[dict[str, Any]], url: str) -> dict[str, Any] | None:
    return next((h for h in hooks if str(h.get("url", "")).rstrip("/") == url), None)


def register(ext: McSync) -> WebhookStatus:
    """Register the webhook on the chosen audience (once: an existing one is kept).

    :raises ConfigError: no public URL, or :class:`~.settings.NoAudience`.
    :raises MailchimpError: Mailchimp refused (e.g. it could not reach the URL).
    """
    session = ext.session
    current = settings_mod.load(session, ext.config)
    if not ext.config.public_url:
        raise ConfigError(NO_PUBLIC_URL)
    list_id = current.audience()
    secret = settings_mod.ensure_webhook_secret(session, ext.config)
    url = webhook_url(ext, secret)
    gateway = gateway_for(ext)
    existing = _ours(gateway.webhooks(list_id), url)
    hook = existing or gateway.create_webhook(list_id, url, EVENTS, SOURCES)
    settings_mod.set_webhook_id(session, ext.config, str(hook.get("id") or "") or None)
    return status(ext)


def remove(ext: McSync) -> int:
    """Remove our webhook from the audience; returns how many were removed.

    :raises NoAudience: when no audience is chosen.
    """
    session = ext.session
    list_id = settings_mod.load(session, ext.config).audience()
    secret = settings_mod.webhook_secret(session)
    stored_id = settings_mod.stored_webhook_id(session)
    gateway = gateway_for(ext)
    removed = 0
    for hook in gateway.webhooks(list_id):
        url = str(hook.get("url", ""))
        if hook.get("id") == stored_id or (secret and secret in url):
            removed += int(gateway.delete_webhook(list_id, str(hook["id"])))
    settings_mod.set_webhook_id(session, ext.config, None)
    return removed


def status(ext: McSync, live: bool = True) -> WebhookStatus:
    """Whether the webhook is in place (asked of Mailchimp) and when an event last came."""
    session = ext.session
    current = settings_mod.load(session, ext.config)
    secret = settings_mod.webhook_secret(session)
    answer = WebhookStatus(public_url=ext.config.public_url, list_id=current.list_id)
    latest = last_event(session)
    if latest is not None:
        answer.last_event_at = latest.received_at.isoformat()
        answer.last_event_type = latest.type or None
    answer.events_by_status = event_counts(session)
    session.commit()  # end the read transaction before asking Mailchimp
    if not ext.config.public_url:
        answer.error = NO_PUBLIC_URL
        return answer
    if not current.list_id:
        answer.error = str(settings_mod.NoAudience())
        return answer
    if not secret:
        answer.in_place = False
        return answer
    url = webhook_url(ext, secret)
    answer.url = masked(url, secret)
    if not live:
        return answer
    try:
        hook = _ours(gateway_for(ext).webhooks(current.list_id), url)
    except (MailchimpError, ConfigError, SlotTimeout, RedisError) as exc:
        answer.error = messages.WEBHOOK_UNKNOWN(error=str(exc))
        return answer
    answer.in_place = hook is not None
    if hook is not None:
        answer.webhook_id = str(hook.get("id") or "")
        answer.sources = dict(hook.get("sources") or {})
        answer.events = dict(hook.get("events") or {})
    return answer
