"""Helpers shared by the both-ways tests (webhook, reconcile, drift)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from helpers_export import LIST_ID


def db() -> Any:
    from example_app.models import db as shop_db

    return shop_db


def ext(app: Flask) -> Any:
    from flask_mcsync import state

    return state(app)


def activate(app: Flask) -> str:
    """Choose the sandbox's audience, record a first export; returns the webhook secret."""
    from flask_mcsync import settings

    found = ext(app)
    settings.update(found.session, found.config, list_id=LIST_ID)
    settings.mark_first_export_done(found.session, found.config)
    found.session.commit()
    return settings.ensure_webhook_secret(found.session, found.config)


def customers() -> dict[str, bool]:
    """The shop's customers: address → newsletter flag, read in a short transaction."""
    from example_app.models import Customer

    session = db().session
    session.commit()
    session.expire_all()
    found = dict(session.execute(sa.select(Customer.email, Customer.newsletter)).all())
    session.commit()
    return found


def outbox_count() -> int:
    from flask_mcsync.models import OutboxItem

    session = db().session
    session.commit()
    count = session.execute(sa.select(sa.func.count()).select_from(OutboxItem)).scalar_one()
    session.commit()
    return int(count)
