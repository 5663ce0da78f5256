"""The shop owner's settings (target audience, double opt-in, batch size, auto-sync).

The API key is not here: it comes from the app config and is never stored in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from . import messages
from .config import Config
from .errors import ConfigError, McSyncError
from .i18n import format_number
from .i18n import gettext as _
from .inputs import beyond, brief
from .models import Settings
from .times import utcnow


class InvalidSetting(McSyncError, ValueError):
    """A setting the shop owner chose cannot be used; the message says what would."""


class NoAudience(ConfigError):
    """No target audience is chosen yet, so there is nowhere to send, connect or reconcile.

    A :class:`~flask_mcsync.ConfigError` (the audience is a setting), raised by
    :meth:`SyncSettings.audience` only.
    """

    def __init__(self) -> None:
        super().__init__(_(messages.NO_AUDIENCE_CHOSEN))


@dataclass(frozen=True)
class SyncSettings:
    list_id: str | None
    list_name: str | None
    double_optin: bool
    batch_size: int
    auto_sync: bool
    first_export_done: bool

    @property
    def status_if_new(self) -> str:
        """What a new contact becomes: 'pending' sends Mailchimp's confirmation e-mail."""
        return "pending" if self.double_optin else "subscribed"

    def audience(self) -> str:
        """The chosen audience's id.

        :raises NoAudience: when none is chosen yet.
        """
        if not self.list_id:
            raise NoAudience()
        return self.list_id

    @property
    def auto_sync_active(self) -> bool:
        """Auto-sync runs once a first export has completed (before that, new customers
        are simply part of the first export) and while the owner leaves it on."""
        return self.auto_sync and self.first_export_done and bool(self.list_id)


def _row(session: Session, config: Config) -> Settings:
    row = session.get(Settings, 1)
    if row is None:
        row = Settings(id=1, batch_size=config.default_batch_size, double_optin=False)
        session.add(row)
        session.flush()
    return row


def load(session: Session, config: Config) -> SyncSettings:
    row = session.get(Settings, 1)
    if row is None:
        return SyncSettings(None, None, False, config.default_batch_size, True, False)
    return SyncSettings(
        list_id=row.list_id,
        list_name=row.list_name,
        double_optin=bool(row.double_optin),
        batch_size=row.batch_size,
        auto_sync=bool(row.auto_sync),
        first_export_done=row.first_export_at is not None,
    )


def check_batch_size(value: Any, config: Config) -> int:
    # Only whole numbers: int(2.5) or int(True) would silently become another size.
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise InvalidSetting(
            _("The batch size must be a whole number; got %(value)r.", value=brief(value))
        )
    largest = config.max_batch_size
    typed = str(value).strip()
    # More digits than the largest size has: too large, told without int(), which
    # refuses more than 4,300 digits as not a number.
    size = None
    if not beyond(typed, largest):
        try:
            size = int(typed) if isinstance(value, str) else int(value)
        except (TypeError, ValueError, OverflowError):
            raise InvalidSetting(
                _("The batch size must be a whole number; got %(value)r.", value=brief(value))
            ) from None
        if size < 1:
            raise InvalidSetting(
                _("The batch size must be at least 1 address; got %(size)s.", size=size)
            )
    if size is None or size > largest:
        raise InvalidSetting(
            _(
                "The batch size may be at most %(max)s addresses (MCSYNC_MAX_BATCH_SIZE); got"
                " %(size)s. Smaller batches are also gentler on Mailchimp.",
                max=format_number(largest),
                size=brief(typed),
            )
        )
    return size


def update(
    session: Session,
    config: Config,
    *,
    list_id: str | None = None,
    list_name: str | None = None,
    double_optin: bool | None = None,
    batch_size: Any = None,
    auto_sync: bool | None = None,
) -> SyncSettings:
    """Change the given settings and commit.

    :raises InvalidSetting: for a batch size out of range.
    """
    row = _row(session, config)
    if batch_size is not None:
        row.batch_size = check_batch_size(batch_size, config)
    if list_id is not None:
        if list_id != row.list_id:
            # A new audience has never had a first export: auto-sync waits for one.
            row.first_export_at = None
        row.list_id = list_id or None
        row.list_name = list_name or list_id or None
    if double_optin is not None:
        row.double_optin = double_optin
    if auto_sync is not None:
        row.auto_sync = auto_sync
    session.commit()
    return load(session, config)


def mark_first_export_done(session: Session, config: Config, list_id: str | None = None) -> None:
    """Record that a first export completed, which starts auto-sync. The caller commits.

    ``list_id`` is the audience the export went to: an export to another audience than
    the chosen one (``export --list``, or the owner switched audience meanwhile) is not
    this audience's first export.
    """
    row = _row(session, config)
    if list_id is not None and list_id != row.list_id:
        return
    if row.first_export_at is None:
        row.first_export_at = utcnow()


def webhook_secret(session: Session) -> str | None:
    """The secret in the webhook's URL, or ``None`` before one was made."""
    row = session.get(Settings, 1)
    return row.webhook_secret if row is not None else None


def ensure_webhook_secret(session: Session, config: Config) -> str:
    """The webhook's secret, made (and committed) on first use: 256 random bits."""
    import secrets

    row = _row(session, config)
    if not row.webhook_secret:
        row.webhook_secret = secrets.token_urlsafe(32)
        session.commit()
    return str(row.webhook_secret)


def set_webhook_id(session: Session, config: Config, webhook_id: str | None) -> None:
    row = _row(session, config)
    row.webhook_id = webhook_id
    session.commit()


def stored_webhook_id(session: Session) -> str | None:
    row = session.get(Settings, 1)
    return row.webhook_id if row is not None else None
