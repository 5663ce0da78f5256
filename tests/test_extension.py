"""The extension object itself: registration, per-app state, the application factory.

In the spirit of Flask-RQ's tests/test_extension.py: what a host meets when it wires
``MailchimpSync`` in, before any sync runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, url_for
from flask_sqlalchemy import SQLAlchemy

from flask_mcsync import ConfigError, MailchimpSync, SubscriberSource, state
from flask_mcsync import settings as sync_settings
from flask_mcsync.app_state import McSync
from flask_mcsync.migrations import upgrade
from flask_mcsync.sandbox import SandboxServer


@pytest.fixture
def shop_db() -> tuple[SQLAlchemy, type]:
    from example_app.models import Customer, db

    return db, Customer


def make_host(name: str, database_url: str, db: SQLAlchemy, **config: Any) -> Flask:
    """A host app with its database ready, before the extension is registered."""
    app = Flask(name)
    app.config.update(SECRET_KEY="test", SQLALCHEMY_DATABASE_URI=database_url, **config)
    db.init_app(app)
    return app


def create_tables(app: Flask, db: SQLAlchemy) -> None:
    with app.app_context():
        db.create_all()
        upgrade(db.engine)


def registered_host(
    database_url: str, db: SQLAlchemy, customer: type, hosts: list[Any]
) -> tuple[Flask, MailchimpSync]:
    """The plain case: one app, registered through the constructor."""
    app = make_host("host", database_url, db)
    hosts.append((app, db))
    return app, MailchimpSync(app, db=db, source=SubscriberSource(model=customer))


@pytest.fixture
def hosts() -> Iterator[list[tuple[Flask, SQLAlchemy]]]:
    """Apps made by a test, their engines disposed of at the end."""
    made: list[tuple[Flask, SQLAlchemy]] = []
    yield made
    for app, db in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_constructor_with_app_registers_it(
    database_url: str, shop_db: tuple[SQLAlchemy, type], hosts: list[Any]
) -> None:
    db, customer = shop_db
    app, mcsync = registered_host(database_url, db, customer, hosts)

    assert isinstance(app.extensions["mcsync"], McSync)
    with app.app_context():
        assert state() is app.extensions["mcsync"]
        assert mcsync.state() is state()
        assert state().db is db
    assert "mcsync" in app.blueprints
    assert "mcsync" in app.cli.commands


def test_init_app_twice_on_one_app_is_refused(
    database_url: str, shop_db: tuple[SQLAlchemy, type], hosts: list[Any]
) -> None:
    db, customer = shop_db
    app, mcsync = registered_host(database_url, db, customer, hosts)
    first = app.extensions["mcsync"]

    with pytest.raises(RuntimeError, match="already registered on this app"):
        mcsync.init_app(app)
    # Another MailchimpSync object on the same app is refused just the same.
    with pytest.raises(RuntimeError, match="call init_app once per app"):
        MailchimpSync(db=db).init_app(app)
    # The first registration is untouched.
    assert app.extensions["mcsync"] is first


def test_refused_config_leaves_the_app_unregistered(
    database_url: str, shop_db: tuple[SQLAlchemy, type], hosts: list[Any]
) -> None:
    db, _ = shop_db
    app = make_host("host", database_url, db, MCSYNC_MAX_CONNECTIONS=50)
    hosts.append((app, db))
    mcsync = MailchimpSync(db=db)

    with pytest.raises(ConfigError, match="MCSYNC_MAX_CONNECTIONS must be between 1 and 10"):
        mcsync.init_app(app)
    assert "mcsync" not in app.extensions
    assert "mcsync" not in app.blueprints

    # Once the setting is fixed, the same app registers (no "already registered").
    app.config["MCSYNC_MAX_CONNECTIONS"] = 4
    mcsync.init_app(app)
    assert app.extensions["mcsync"].config.max_connections == 4


def test_state_outside_an_app_context_says_what_to_do() -> None:
    with pytest.raises(RuntimeError) as caught:
        state()
    message = str(caught.value)
    assert "needs an application context" in message
    assert "with app.app_context():" in message


def test_state_of_an_app_without_the_extension_says_what_to_do() -> None:
    app = Flask("other")
    with (
        app.app_context(),
        pytest.raises(
            RuntimeError, match=r"not registered on this app: call mcsync.init_app\(app\)"
        ),
    ):
        state()
    with pytest.raises(RuntimeError, match="not registered on this app"):
        state(app)


def test_init_app_without_a_database_says_what_to_pass() -> None:
    with pytest.raises(ConfigError, match="needs the app's Flask-SQLAlchemy object: pass db="):
        MailchimpSync().init_app(Flask("no_db"))


def test_one_extension_object_serves_two_apps_with_their_own_state(
    database_url: str,
    tmp_path: Path,
    shop_db: tuple[SQLAlchemy, type],
    sandbox: SandboxServer,
    hosts: list[Any],
) -> None:
    db, customer = shop_db
    mcsync = MailchimpSync(db=db, source=SubscriberSource(model=customer))
    shop = make_host(
        "shop",
        database_url,
        db,
        MCSYNC_API_KEY=sandbox.api_key,
        MCSYNC_API_URL=sandbox.api_url,
        MCSYNC_URL_PREFIX="/admin/mailchimp",
        MCSYNC_DEFAULT_BATCH_SIZE=300,
    )
    outlet = make_host(
        "outlet",
        f"sqlite:///{tmp_path / 'outlet.db'}",
        db,
        MCSYNC_URL_PREFIX="/back-office/mailchimp",
        MCSYNC_DEFAULT_BATCH_SIZE=700,
    )
    hosts.extend([(shop, db), (outlet, db)])
    mcsync.init_app(shop, authorize=lambda: True)
    mcsync.init_app(outlet)
    create_tables(shop, db)
    create_tables(outlet, db)

    # Each app has its own state, config and database; the object itself keeps none.
    assert state(shop) is not state(outlet)
    assert state(shop).app is shop and state(outlet).app is outlet
    assert state(shop).config.api_key == sandbox.api_key
    assert state(outlet).config.api_key is None
    with shop.test_request_context():
        assert url_for("mcsync.settings_page") == "/admin/mailchimp/"
    with outlet.test_request_context():
        assert url_for("mcsync.settings_page") == "/back-office/mailchimp/"

    with shop.app_context():
        assert state().app is shop
        sync_settings.update(state().session, state().config, list_id="shop-list")
    with outlet.app_context():
        assert state().app is outlet
        outlet_settings = sync_settings.load(state().session, state().config)
        assert outlet_settings.list_id is None
        assert outlet_settings.batch_size == 700
    with shop.app_context():
        shop_settings = sync_settings.load(state().session, state().config)
        assert shop_settings.list_id == "shop-list"
        assert shop_settings.batch_size == 300

    # authorize passed to init_app is for that app only: the outlet stays closed.
    assert shop.test_client().get("/admin/mailchimp/").status_code == 200
    assert outlet.test_client().get("/back-office/mailchimp/").status_code == 403


def test_application_factory(
    database_url: str, shop_db: tuple[SQLAlchemy, type], hosts: list[Any]
) -> None:
    db, customer = shop_db
    # At import time: no app yet, only what every app shares.
    mcsync = MailchimpSync(db=db, source=SubscriberSource(model=customer))

    def create_app(**config: Any) -> Flask:
        app = make_host("factory_host", database_url, db, **config)
        mcsync.init_app(app)
        return app

    first = create_app(MCSYNC_QUEUE="first")
    second = create_app(MCSYNC_QUEUE="second")
    hosts.extend([(first, db), (second, db)])

    assert state(first).config.queue_name == "first"
    assert state(second).config.queue_name == "second"
    assert state(first).source is state(second).source is mcsync.source
    # Without authorize (constructor or init_app) the admin pages are closed.
    assert first.test_client().get("/admin/mailchimp/").status_code == 403
    # Each app gets its own `flask mcsync` group.
    result = first.test_cli_runner().invoke(args=["mcsync", "--help"])
    assert result.exit_code == 0, result.output
    assert "init-db" in result.output


def test_init_app_arguments_win_over_the_constructor_ones(
    database_url: str, shop_db: tuple[SQLAlchemy, type], hosts: list[Any]
) -> None:
    db, customer = shop_db
    everyone_source = SubscriberSource(model=customer)
    subscribers_only = SubscriberSource(
        model=customer,
        filter=lambda: customer.newsletter.is_(True),  # type: ignore[attr-defined]
    )
    mcsync = MailchimpSync(db=db, source=everyone_source)
    app = make_host("host", database_url, db)
    hosts.append((app, db))
    mcsync.init_app(app, source=subscribers_only)

    assert state(app).source is subscribers_only
    # The shared object is not changed by one app's arguments.
    assert mcsync.source is everyone_source


def test_state_without_a_source_says_what_to_pass(
    database_url: str, shop_db: tuple[SQLAlchemy, type], hosts: list[Any]
) -> None:
    db, _ = shop_db
    app = make_host("host", database_url, db)
    hosts.append((app, db))
    MailchimpSync(app, db=db)

    with pytest.raises(ConfigError, match=r"pass source=SubscriberSource\(model=\.\.\."):
        state(app).require_source()
