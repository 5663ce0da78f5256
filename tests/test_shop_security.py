"""The example shop is a user's first reading: its login must be safe to copy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient

from example_app.security import ACCOUNT_LIMIT, CLIENT_LIMIT

PREFIX = "/admin/mailchimp"
SETTINGS = f"{PREFIX}/"


@pytest.fixture
def shop(db_only_app: Flask) -> Flask:
    return db_only_app


def _token(client: FlaskClient) -> str:
    page = client.get("/login").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _login(
    client: FlaskClient, password: str = "admin", next_: str | None = None, **kw: Any
) -> Any:
    query = {"next": next_} if next_ is not None else {}
    return client.post(
        "/login",
        query_string=query,
        data={"password": password, "csrf_token": _token(client)},
        **kw,
    )


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "https://evil.example/",
        "\\\\evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "http:evil.example",
        "/\t/evil.example",
        "evil.example",
    ],
)
def test_login_never_redirects_off_site(shop: Flask, target: str) -> None:
    response = _login(shop.test_client(), next_=target)
    assert response.status_code == 302
    assert response.headers["Location"] == SETTINGS


def test_login_follows_a_local_next(shop: Flask) -> None:
    response = _login(shop.test_client(), next_=f"{PREFIX}/status?days=30")
    assert response.headers["Location"] == f"{PREFIX}/status?days=30"


def test_wrong_passwords_are_throttled_per_client(shop: Flask) -> None:
    client = shop.test_client()
    for _ in range(CLIENT_LIMIT):
        assert _login(client, "wrong").status_code == 200
    paused = _login(client, "admin")  # even the right password waits now
    assert paused.status_code == 429
    assert "Too many wrong passwords" in paused.get_data(as_text=True)
    assert _login(client, "admin", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 302


def test_wrong_passwords_are_throttled_for_the_account(shop: Flask) -> None:
    client = shop.test_client()
    for i in range(ACCOUNT_LIMIT):
        who = {"REMOTE_ADDR": f"10.0.{i // 250}.{i % 250 + 1}"}
        assert _login(client, "wrong", environ_base=who).status_code == 200
    paused = _login(client, "admin", environ_base={"REMOTE_ADDR": "10.8.8.8"})
    assert paused.status_code == 429


def test_a_password_or_token_beyond_ascii_is_refused_not_a_server_error(shop: Flask) -> None:
    client = shop.test_client()
    wrong = _login(client, password="pässwörd")
    assert wrong.status_code == 200
    assert "Wrong password." in wrong.get_data(as_text=True)
    forged = client.post("/login", data={"password": "admin", "csrf_token": "é"})
    assert forged.status_code == 400
    assert "reload the page" in forged.get_data(as_text=True)
    assert client.get(SETTINGS).status_code == 403


def test_login_and_logout_need_the_forms_csrf_token(shop: Flask) -> None:
    client = shop.test_client()
    forged = client.post("/login", data={"password": "admin"})
    assert forged.status_code == 400
    assert client.get(SETTINGS).status_code == 403
    assert _login(client).status_code == 302
    assert client.get(SETTINGS).status_code == 200
    assert client.post("/logout").status_code == 400  # a cross-site logout does nothing
    assert client.get(SETTINGS).status_code == 200
    page = client.get("/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page
    assert client.post("/logout", data={"csrf_token": token.group(1)}).status_code == 302
    assert client.get(SETTINGS).status_code == 403


def test_session_cookie_is_samesite_lax_and_pages_cannot_be_framed(shop: Flask) -> None:
    client = shop.test_client()
    response = _login(client)
    cookie = response.headers["Set-Cookie"]
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie
    for path in ("/", "/login", "/newsletter", SETTINGS, f"{PREFIX}/status", f"{PREFIX}/nope"):
        page = client.get(path)
        assert page.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"], path
    stranger = shop.test_client().get(SETTINGS)
    assert stranger.status_code == 403 and stranger.headers["X-Frame-Options"] == "DENY"


@pytest.fixture
def keyless_shop(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Flask]:
    from example_app import create_app
    from example_app.models import db

    monkeypatch.delenv("SECRET_KEY", raising=False)
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        yield app
        db.session.remove()
        db.engine.dispose()


def test_no_default_secret_key_so_no_forged_admin_cookie(keyless_shop: Flask) -> None:
    assert not keyless_shop.secret_key
    client = keyless_shop.test_client()
    # A cookie signed with the key the shop used to ship is not believed.
    old = Flask("forger")
    old.secret_key = "dev-only-change-me"
    forged = SecureCookieSessionInterface().get_signing_serializer(old)
    assert forged is not None
    client.set_cookie("session", forged.dumps({"shop_admin": True}))
    assert client.get(SETTINGS).status_code == 403
    login = client.post("/login", data={"password": "admin"})
    assert login.status_code == 503
    assert "This shop has no SECRET_KEY" in login.get_data(as_text=True)


def test_the_demo_makes_its_own_key_and_prints_the_cli_environment() -> None:
    from example_app.demo import cli_environment, main

    lines = cli_environment(
        {"MCSYNC_API_URL": "http://127.0.0.1:1/3.0/", "MCSYNC_REDIS_URL": "unix:///tmp/r s"}
    )
    assert "export MCSYNC_API_URL=http://127.0.0.1:1/3.0/" in lines
    assert "export MCSYNC_REDIS_URL='unix:///tmp/r s'" in lines
    assert "flask --app example_app mcsync status" in lines
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0


def test_demo_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    from example_app.demo import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option, words in {
        "--customers": "Customers to seed",
        "--workers": "RQ worker processes",
        "--batch-size": "Addresses per Mailchimp batch",
        "--port": "Port the shop",
        "--no-serve": "Stop after the export",
    }.items():
        assert option in text and words in text, (option, text)
    assert "MCSYNC_REDIS_URL" in text and "(default: 10000)" in text


@pytest.mark.parametrize(
    "form",
    [
        {"email": "x" * 400 + "@gmail.com"},
        {"email": "a\x00b@gmail.com"},
        {"email": "ann@gmail.com", "first_name": "x" * 400},
        {"email": "ann@gmail.com", "last_name": "\x00"},
    ],
)
def test_signup_refuses_what_the_shop_cannot_store(shop: Flask, form: dict[str, str]) -> None:
    from example_app.models import Customer, db

    response = shop.test_client().post("/signup", data={**form, "newsletter": "1"})
    assert response.status_code == 302
    assert db.session.query(Customer).count() == 0
    newsletter = shop.test_client().post("/newsletter", data={"email": form["email"]})
    assert newsletter.status_code == 302
