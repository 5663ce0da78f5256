"""The admin pages in the shop owner's language: catalogs complete, every text marked,
the locale chosen per request (host's Flask-Babel, MCSYNC_LOCALE, Accept-Language),
numbers, dates and the CSV in the locale's ways. The CLI stays English.
"""

from __future__ import annotations

import ast
import csv
import io
import re
from datetime import datetime, timezone
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from i18n_support import PACKAGE, extract_catalog
from support import add_error_outcome, add_waiting_signup

from flask_mcsync import i18n
from flask_mcsync.config import ConfigError, read_config

PREFIX = "/admin/mailchimp"
TEMPLATES = PACKAGE / "templates" / "mcsync"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sr]")


def catalogs() -> list[str]:
    return [code for code in i18n.available_locales() if code != i18n.DEFAULT_LOCALE]


def po_path(locale: str) -> Path:
    return i18n.TRANSLATIONS_DIR / locale / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"


# --- catalogs ---------------------------------------------------------------------------------


def test_french_is_an_available_catalog() -> None:
    assert i18n.available_locales() == ("en", "fr")


@pytest.mark.parametrize("locale", catalogs())
def test_every_marked_string_is_translated_in_the_catalog(locale: str) -> None:
    """Extract with Babel, as the README says, and compare: a new _() fails here."""
    with po_path(locale).open("rb") as handle:
        catalog = read_po(handle)
    missing, untranslated, placeholders = [], [], []
    for message in extract_catalog():
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        if found is None:
            missing.append(message.id)
            continue
        strings = found.string if isinstance(found.string, tuple) else (found.string,)
        if not all(strings) or found.fuzzy:
            untranslated.append(message.id)
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set(PLACEHOLDER.findall(ids[-1]))
        for text in strings:
            # French may say "the last day" for 1 without the number; nothing else is lost.
            if set(PLACEHOLDER.findall(text)) - wanted or (
                wanted - set(PLACEHOLDER.findall(text)) - {"num"}
            ):
                placeholders.append((message.id, text))
    assert missing == [], f"not in {po_path(locale)}: run pybabel update (see README)"
    assert untranslated == [], "translate these"
    assert placeholders == [], "a translation lost or invented a %(name)s placeholder"


@pytest.mark.parametrize("locale", catalogs())
def test_the_shipped_mo_is_compiled_from_the_po(locale: str) -> None:
    with po_path(locale).open("rb") as handle:
        source = {_key(m.id): _key(m.string) for m in read_po(handle) if m.id}
    with po_path(locale).with_suffix(".mo").open("rb") as handle:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(handle) if m.id}
    assert compiled == source, "run: pybabel compile -d flask_mcsync/translations -D mcsync"


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


# --- every text is marked -----------------------------------------------------------------------


class _Texts(HTMLParser):
    """Text nodes and readable attributes left in a template once Jinja is stripped."""

    ATTRIBUTES = ("title", "aria-label", "placeholder", "alt", "data-confirm")

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "code"):
            self._skip += 1
        for name, value in attrs:
            if name in self.ATTRIBUTES and value and re.search(r"[A-Za-z]{2}", value):
                self.found.append(f"{name}={value!r}")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "code"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip and re.search(r"[A-Za-z]{2}", data):
            self.found.append(data.strip())


def unmarked_texts(source: str) -> list[str]:
    stripped = re.sub(r"\{#.*?#\}|\{\{.*?\}\}|\{%.*?%\}", " ", source, flags=re.S)
    parser = _Texts()
    parser.feed(stripped)
    return parser.found


def test_the_scanner_finds_an_unmarked_text() -> None:
    assert unmarked_texts('<p class="x">{{ _("Fine") }} Oops</p>') == ["Oops"]
    assert unmarked_texts('<a title="Plain">{{ n }}</a>') == ["title='Plain'"]


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_no_template_text_escapes_translation(template: str) -> None:
    assert unmarked_texts((TEMPLATES / template).read_text()) == []


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
    return None


def test_flash_messages_and_error_sentences_of_the_admin_are_marked() -> None:
    """flash(), abort() and jsonify(error=) in the admin views take _() or a marked constant."""
    bad = []
    for path in sorted((PACKAGE / "admin").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            name = _call_name(node)
            assert not isinstance(node, ast.Call) or name != "flash" or node.args
            if not isinstance(node, ast.Call):
                continue
            texts: list[ast.AST] = []
            if name == "flash":
                texts = [node.args[0]]
            elif name == "abort" and len(node.args) > 1:
                texts = [node.args[1]]
            elif name == "jsonify":
                texts = [k.value for k in node.keywords if k.arg == "error"]
            # A conditional message is marked when both of its branches are.
            texts = [
                part
                for t in texts
                for part in ((t.body, t.orelse) if isinstance(t, ast.IfExp) else (t,))
            ]
            for text in texts:
                # A Name is a constant marked with N_() (upper case), the error page's
                # translated sentence, or a domain sentence (InvalidPeriod uses _()).
                # messages.translate() reads a stored sentence of ours in the page's language.
                marked = _call_name(text) in ("_", "gettext", "ngettext", "str", "translate") or (
                    isinstance(text, ast.Name)
                    and (text.id.isupper() or text.id in ("sentence", "period_error"))
                )
                if not marked:
                    bad.append(f"{path.name}:{node.lineno}")
    assert bad == []


# --- choosing the locale ------------------------------------------------------------------------


def test_accept_language_picks_the_best_catalog(client: FlaskClient) -> None:
    fr = client.get(PREFIX + "/", headers={"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"})
    html = fr.get_data(as_text=True)
    assert '<html lang="fr">' in html and "Paramètres généraux" in html
    en = client.get(PREFIX + "/", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in en.get_data(as_text=True)
    assert "General settings" in en.get_data(as_text=True)
    # A language without a catalog falls back to the next one the browser accepts...
    de = client.get(PREFIX + "/", headers={"Accept-Language": "de-DE,fr;q=0.5"})
    assert '<html lang="fr">' in de.get_data(as_text=True)
    # ... and to English when none fits.
    it = client.get(PREFIX + "/", headers={"Accept-Language": "it-IT"})
    assert '<html lang="en">' in it.get_data(as_text=True)


def test_mcsync_locale_setting_wins_over_the_browser(app: Flask, client: FlaskClient) -> None:
    app.extensions["mcsync"].config = read_config({**app.config, "MCSYNC_LOCALE": "fr"})
    html = client.get(PREFIX + "/sync", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert '<html lang="fr">' in html and "Synchronisation manuelle" in html


def test_mcsync_locale_may_be_a_callable_and_none_defers_to_the_browser(
    app: Flask, client: FlaskClient
) -> None:
    choice: dict[str, str | None] = {"value": "fr"}
    app.extensions["mcsync"].config = read_config(
        {**app.config, "MCSYNC_LOCALE": lambda: choice["value"]}
    )
    assert '<html lang="fr">' in client.get(PREFIX + "/").get_data(as_text=True)
    choice["value"] = None
    page = client.get(PREFIX + "/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="en">' in page


def test_an_unknown_mcsync_locale_is_an_error_at_start_up() -> None:
    with pytest.raises(ConfigError, match="MCSYNC_LOCALE='de' has no catalog"):
        read_config({"MCSYNC_LOCALE": "de"})
    assert read_config({"MCSYNC_LOCALE": "fr_FR"}).locale == "fr_FR"


def test_the_hosts_flask_babel_decides_when_the_host_uses_it(
    app: Flask, client: FlaskClient
) -> None:
    from flask_babel import Babel

    app.extensions["mcsync"].config = read_config({**app.config, "MCSYNC_LOCALE": "en"})
    Babel(app, locale_selector=lambda: "fr")
    html = client.get(PREFIX + "/status", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<html lang="fr">' in html and "État des synchronisations" in html


def test_without_flask_babel_the_setting_applies(app: Flask, client: FlaskClient) -> None:
    assert "babel" not in app.extensions
    app.extensions["mcsync"].config = read_config({**app.config, "MCSYNC_LOCALE": "en"})
    html = client.get(PREFIX + "/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert '<html lang="en">' in html


def test_outside_a_request_everything_stays_english(app: Flask, client: FlaskClient) -> None:
    from flask_mcsync.addresses import invalid_reason

    client.get(PREFIX + "/", headers={"Accept-Language": "fr"})
    assert i18n.current_locale() == "en"
    assert invalid_reason("a@b") == (
        "The domain has no dot: a full domain such as 'mailinator.com' is needed."
    )
    result = app.test_cli_runner().invoke(args=["mcsync", "rules", "add", "pattern", "nowild"])
    assert "has no wildcard" in result.output


# --- numbers, dates, the CSV --------------------------------------------------------------------


def test_numbers_and_flash_messages_follow_the_locale(client: FlaskClient) -> None:
    from support import ADMIN_CSRF_TOKEN

    fr = client.get(PREFIX + "/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "Entre 1 et 10\u202f000" in fr
    en = client.get(PREFIX + "/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "Between 1 and 10,000" in en
    answer = client.post(
        PREFIX + "/settings",
        data={"csrf_token": ADMIN_CSRF_TOKEN, "batch_size": "0"},
        headers={"Accept-Language": "fr"},
    )
    assert answer.status_code == 422
    assert "La taille des lots doit être d&#39;au moins 1 adresse" in answer.get_data(as_text=True)


def test_dates_and_durations_follow_the_locale() -> None:
    from datetime import datetime, timezone

    moment = datetime(2026, 11, 25, 14, 5, tzinfo=timezone.utc)
    with i18n.use_locale("fr"):
        assert i18n.format_datetime(moment) == "25/11/2026 14:05 UTC"
        assert i18n.format_duration(12.5) == "12,5 s"
        assert i18n.format_day("2026-11-25", short=True) == "25 nov."
    with i18n.use_locale("en"):
        assert i18n.format_datetime(moment).startswith("11/25/26")
        assert i18n.format_duration(12.5) == "12.5 s"
        assert i18n.format_day("2026-11-25", short=True) == "Nov 25"


def _error_rows(app: Flask) -> None:
    from example_app.models import db
    from flask_mcsync.models import Run

    run = Run(kind="export", list_id="a1b2c3d4e5", status="finished", total=1, errors=1)
    db.session.add(run)
    db.session.flush()
    add_error_outcome(
        db.session,
        run.id,
        "zoé;x@gmail.com",
        "Invalid Resource",
        "Déjà vu, 1,5 fois",
        permanent=True,
    )
    db.session.commit()


def test_the_csv_opens_in_a_french_spreadsheet(app: Flask, client: FlaskClient) -> None:
    _error_rows(app)
    answer = client.get(PREFIX + "/status/errors.csv?days=7", headers={"Accept-Language": "fr"})
    body = answer.get_data()
    assert body.startswith("\ufeff".encode())
    text = body.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))
    assert rows[0] == [
        "synchronisation",
        "date (UTC)",
        "adresse e-mail",
        "résultat",
        "erreur Mailchimp",
        "détail",
        "définitive",
    ]
    assert rows[1][2] == "zoé;x@gmail.com" and rows[1][5] == "Déjà vu, 1,5 fois"


def test_the_csv_stays_plain_in_english(app: Flask, client: FlaskClient) -> None:
    _error_rows(app)
    answer = client.get(PREFIX + "/status/errors.csv?days=7", headers={"Accept-Language": "en"})
    text = answer.get_data(as_text=True)
    assert not text.startswith("\ufeff")
    rows: list[Any] = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["email"] == "zoé;x@gmail.com"
    assert rows[0]["detail"] == "Déjà vu, 1,5 fois"


def test_bad_input_is_refused_in_the_pages_language_and_the_cli_stays_english(
    app: Flask, client: FlaskClient
) -> None:
    too_big = "9" * 30
    fr = client.get(f"{PREFIX}/status/runs/{too_big}", headers={"Accept-Language": "fr"})
    assert fr.status_code == 404
    assert "Le champ « numéro de synchronisation » doit être un nombre entier" in fr.get_data(
        as_text=True
    )
    en = client.get(f"{PREFIX}/status/runs/{too_big}", headers={"Accept-Language": "en"})
    assert "The run number must be a whole number from 1 to" in en.get_data(as_text=True)
    result = app.test_cli_runner().invoke(args=["mcsync", "rules", "remove", too_big])
    assert "must be a whole number" in result.output


def test_the_webhook_card_says_mailchimps_words_in_french(app: Flask) -> None:
    """Mailchimp's source names, event states and types were shown raw on a French page
    ("admin activé, api désactivé, user activé", "1 applied")."""
    from types import SimpleNamespace

    from flask import render_template

    webhook = SimpleNamespace(
        in_place=True,
        public_url="https://shop.example",
        error=None,
        url="https://shop.example/mcsync/webhook/ab…",
        sources={"user": True, "admin": True, "api": False},
        last_event_at=datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc),
        last_event_type="upemail",
        events_by_status={"applied": 1, "ignored": 2},
        list_id=None,
    )
    with app.test_request_context(PREFIX + "/"), i18n.use_locale("fr"):
        html = render_template("mcsync/_mailchimp_changes.html", webhook=webhook)
    text = unescape(html)
    for french in (
        "les administrateurs du compte : oui",
        "l'API : non",
        "la personne : oui",
        "changement d'adresse",
        "appliqués : 1",
        "ignorés : 2",
    ):
        assert french in text, french


# --- sentences the workers store ------------------------------------------------------------


def _sample(template: Any) -> dict[str, Any]:
    """Values for every field of a stored template: numbers, our words and sentences,
    and Mailchimp's words."""
    from flask_mcsync import messages
    from flask_mcsync.gateway import TransientError

    words = {
        "kind": "unsubscribe",
        "status": "cleaned",
        "outcome": "created",
        "since": "2026-11-26T10:00:00+00:00",
        "changed_at": "2026-11-26 10:00:00",
        "opted_in": "2026-11-26 11:00:00",
        "rule": "whole domain 'mailinator.com'",
    }
    values: dict[str, Any] = {}
    for name in PLACEHOLDER.findall(template.msgid):
        if name in template.numbers:
            values[name] = 12345
        elif name in template.ids:
            values[name] = 678
        elif name == "error":  # an error, as str() of ours gives it: "title: detail"
            values[name] = TransientError(messages.TIMEOUT, messages.TIMEOUT_DETAIL)
        elif name in template.sentences:
            values[name] = messages.RUN_STOPPED
        else:
            values[name] = words.get(name, "Too Many Requests: slow down")
    return values


def test_every_stored_sentence_with_values_reads_in_french_and_stays_english_in_english() -> None:
    from flask_mcsync import messages

    assert len(messages._TEMPLATES) >= 25
    for template in messages._TEMPLATES:
        english = template(**_sample(template))
        assert messages.translate(english) == english, template.msgid
        with i18n.use_locale("fr"):
            french = messages.translate(english)
        assert french != english, f"not found again, or not translated: {template.msgid}"
        if template.numbers:
            assert "12\u202f345" in french or "12\xa0345" in french, (template.msgid, french)
        # Mailchimp's words stay Mailchimp's.
        if "Too Many Requests: slow down" in english:
            assert "Too Many Requests: slow down" in french, (template.msgid, french)


def test_a_stored_time_reads_as_one_moment_in_utc_whatever_its_iso_form() -> None:
    """Ours are written with +00:00 (or naive, in UTC), Mailchimp's with Z: all read as
    the same moment, shown in UTC. A value that is no time is one of our words."""
    from flask_mcsync import messages

    with i18n.use_locale("fr"):
        shown = messages._moment("2026-11-26T10:00:00+00:00")
        assert shown == "26/11/2026 10:00 UTC"
        for same in ("2026-11-26T10:00:00Z", "2026-11-26 10:00:00", "2026-11-26T11:00:00+01:00"):
            assert messages._moment(same) == shown, same
        assert messages._moment(messages.SINCE_THE_START) == "le début"


def test_stored_sentences_nest_and_rows_of_older_versions_read_the_same() -> None:
    from flask_mcsync import messages
    from flask_mcsync.gateway import TransientError, gave_up

    error = TransientError("Internal Server Error", "Mailchimp is busy.")
    nested = messages.NONE_FAILED(message=messages.POLL(tries=5, error=error))
    # Written by the version before the templates (reconcile.py, batch_sync.py).
    older = (
        "Read 1500 member(s) (the whole audience) since the start; 3 change(s) applied to the shop."
    )
    with i18n.use_locale("fr"):
        assert messages.translate(nested) == (
            "Interrogation 5 : Internal Server Error: Mailchimp is busy. Mailchimp détient"
            " chacune de ses adresses : aucune n'a échoué."
        )
        assert messages.translate(older) == (
            "Lecture de 1\u202f500 membre(s) (toute l'audience) depuis le début ; 3"
            " changement(s) appliqué(s) à la boutique."
        )
        assert messages.translate(gave_up(3, error, "attempts").title, "outcome") == (
            "Abandon après 3 tentatives"
        )
        assert messages.translate("Member Exists", "outcome") == "Member Exists"
        assert messages.translate("Created", "outcome") == "Créée"


def test_mailchimps_words_stay_as_written_even_where_they_read_like_ours() -> None:
    """Mailchimp's title "Not Found" is not our error page's "Not Found" ("Page
    introuvable"); only our own titles and sentences are translated inside a stored one."""
    from flask_mcsync import messages
    from flask_mcsync.gateway import TransientError

    with i18n.use_locale("fr"):
        assert messages.translate("Attempt 3: Not Found") == "Tentative 3 : Not Found"
        assert messages.translate(
            messages.ACCOUNT_REFUSED(title="Forbidden", detail="None.")
        ).startswith("Mailchimp a refusé le compte ou l'audience : Forbidden. None. Vérifiez")
        # A run's message is "title: detail" of the error it ended on.
        timeout = TransientError(messages.TIMEOUT, messages.TIMEOUT_DETAIL)
        ours = f"Gave up after 5 attempts: {timeout}"
        assert messages.translate(ours) == (
            "Abandon après 5 tentatives : Délai dépassé : Mailchimp n'a pas répondu dans le"
            " délai de la requête."
        )
        assert messages.translate("Gave up after 5 attempts: Internal Server Error: busy") == (
            "Abandon après 5 tentatives : Internal Server Error: busy"
        )
        # A corrupt or hostile text nests no deeper than a few sentences.
        assert messages.translate("Poll 1: " * 500).startswith("Interrogation 1 : ")
        # Our sentence alone as the cause, and our detail under Mailchimp's title.
        busy = messages.SLOTS_BUSY(limit=4, seconds="30")
        assert messages.translate(messages.ATTEMPT(tries=2, error=busy)) == (
            "Tentative 2 : Les 4 connexions à Mailchimp sont restées occupées pendant 30 s ;"
            " la tâche sera réessayée."
        )
        assert messages.translate(f"Attempt 2: HTTP 503: {messages.BUSY_DETAIL}") == (
            "Tentative 2 : HTTP 503 : Mailchimp est occupé ou indisponible pour le moment."
        )
        assert messages.translate(messages.NO_AUDIENCE_CHOSEN, "outcome").startswith(
            "Aucune audience n'est choisie"
        )
        # A run is named by its number as written, not as a count.
        assert "(synchronisation 1234)" in messages.translate(messages.WAITING_FOR_EXPORT(run=1234))
        hostile = "Attempt " + "1" * 4400 + ": x"  # int() refuses over 4,300 digits
        assert messages.translate(hostile) == hostile


def test_a_french_status_page_says_the_runs_messages_and_errors_in_french(
    app: Flask, client: FlaskClient
) -> None:
    from example_app.models import db
    from flask_mcsync import messages
    from flask_mcsync.gateway import TransientError, gave_up
    from flask_mcsync.models import Batch, Run

    reconcile = Run(
        kind="reconcile",
        list_id="a1b2c3d4e5",
        status="finished",
        total=2500,
        message=messages.RECONCILE_WHOLE(read=2500, applied=4),
    )
    export = Run(kind="export", list_id="a1b2c3d4e5", status="failed", total=1, errors=1)
    db.session.add_all([reconcile, export])
    db.session.flush()
    export.message = messages.ACCOUNT_REFUSED(title="API Key Invalid", detail="Bad key.")
    db.session.add(
        Batch(
            run_id=export.id,
            seq=1,
            status="done",
            size=1000,
            payload=[],
            last_error=messages.RETRY_BATCH(count=1000),
        )
    )
    given_up = gave_up(5, TransientError("Internal Server Error", "busy"))
    add_error_outcome(
        db.session, export.id, "ann@gmail.com", given_up.title, given_up.detail, permanent=False
    )
    add_waiting_signup(db.session, "zoe@gmail.com", messages.WAITING_FOR_EXPORT(run=export.id))
    db.session.commit()
    french = {"Accept-Language": "fr"}
    status = unescape(client.get(PREFIX + "/status", headers=french).get_data(as_text=True))
    assert "Lecture de 2\u202f500 membre(s) (toute l'audience)" in status
    assert "Mailchimp a refusé le compte ou l'audience : API Key Invalid. Bad key." in status
    assert "Abandon après 5 essais" in status  # the errors table's title
    assert (
        f"En attente de la fin du premier export vers cette audience (synchronisation {export.id})"
        in status
    )
    run_page = unescape(
        client.get(f"{PREFIX}/status/runs/{export.id}", headers=french).get_data(as_text=True)
    )
    assert "1\u202f000 adresse(s) en échec pour une raison passagère" in run_page
    # On a line of its own under its batch, in the info colour: the batch ended well.
    assert re.search(
        r'<tr class="mc-run-message" data-message-of-batch="1">.*?mc-batch-error mc-batch-note',
        run_page,
    )
    assert "Abandon après 5 essais" in run_page
    # The export window's progress says a batch's note in the page's language too.
    progress = client.get(f"{PREFIX}/sync/runs/{export.id}.json", headers=french).json
    assert progress is not None
    [batch] = progress["batches"]
    assert batch["last_error"].startswith("1000 address(es) failed")
    assert batch["last_error_text"].startswith("1\u202f000 adresse(s) en échec")
    english = unescape(client.get(PREFIX + "/status").get_data(as_text=True))
    assert "Read 2500 member(s) (the whole audience)" in english
    # A summary is told in the info colour, a failure in the error colour.
    assert re.search(rf'class="[^"]*mc-message-info[^"]*" id="run-{reconcile.id}-message"', english)
    assert re.search(rf'class="mc-value mc-message" id="run-{export.id}-message"', english)
