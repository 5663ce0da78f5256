"""The example shop's own data: its customers."""

from __future__ import annotations

from datetime import datetime, timezone

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Customer(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "shop_customers"
    # flask-mcsync looks a customer up by lower(email) (auto-sync, diagnostic tool).
    __table_args__ = (db.Index("ix_shop_customers_email_lower", db.text("lower(email)")),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(db.String(320), index=True)
    first_name: Mapped[str] = mapped_column(db.String(100), default="")
    last_name: Mapped[str] = mapped_column(db.String(100), default="")
    newsletter: Mapped[bool] = mapped_column(default=False)
    # A boolean merge field (VIP): flask-mcsync writes it as Mailchimp's field type wants.
    vip: Mapped[bool | None] = mapped_column(default=None)
    # The customer's language: Mailchimp writes to them in it (SubscriberSource.language).
    language: Mapped[str | None] = mapped_column(db.String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(timezone.utc))


class LoginFailure(db.Model):  # type: ignore[name-defined,misc]
    """A wrong admin password: the login throttle counts these (see ``security.py``)."""

    __tablename__ = "shop_login_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    client: Mapped[str] = mapped_column(db.String(64), index=True)
    at: Mapped[datetime] = mapped_column(db.DateTime(timezone=True), index=True)
