"""Pure functions, no services: the gateway's error sorting and result parsing, config
checks, address identity and validity, and exclusion rules (partly property-based).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mailchimp3.helpers import check_email

from flask_mcsync.addresses import invalid_reason, normalize, subscriber_hash
from flask_mcsync.config import ConfigError, read_config
from flask_mcsync.gateway import (
    AccountError,
    AddressError,
    TransientError,
    error_from_response,
    read_results_archive,
    was_created,
)
from flask_mcsync.rules import InvalidRule, RuleSet, clean_rule

KEY = "0123456789abcdef0123456789abcdef-us21"
SINCE = datetime(2026, 3, 1, 12, 0, 0, 500_000, tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat()


# --- gateway.was_created ------------------------------------------------------------


def test_was_created_for_a_member_subscribed_by_this_request() -> None:
    member = {"status": "subscribed", "timestamp_opt": iso(SINCE + timedelta(seconds=3))}
    assert was_created(member, "subscribed", SINCE)


def test_was_created_counts_the_same_second_as_the_request() -> None:
    # Mailchimp stamps whole seconds: 12:00:00 is not "before" a request sent at 12:00:00.5.
    member = {"status": "subscribed", "timestamp_opt": "2026-03-01T12:00:00+00:00"}
    assert was_created(member, "subscribed", SINCE)


def test_was_created_is_false_for_a_subscriber_changed_after_its_recent_opt_in() -> None:
    # Opted in a second before the send (inside the clock skew), then changed by our
    # write: a create stamps both times at once, so Mailchimp held it before.
    member = {
        "status": "subscribed",
        "timestamp_opt": iso(SINCE + timedelta(seconds=1)),
        "last_changed": iso(SINCE + timedelta(seconds=2)),
    }
    assert not was_created(member, "subscribed", SINCE)


def test_was_created_for_a_new_subscriber_stamped_once() -> None:
    stamp = iso(SINCE + timedelta(seconds=1))
    member = {"status": "subscribed", "timestamp_opt": stamp, "last_changed": stamp}
    assert was_created(member, "subscribed", SINCE)


def test_was_created_reads_zulu_times() -> None:
    member = {"status": "subscribed", "timestamp_opt": "2026-03-01T12:00:05Z"}
    assert was_created(member, "subscribed", SINCE)


def test_was_created_is_false_for_an_older_subscriber() -> None:
    member = {"status": "subscribed", "timestamp_opt": iso(SINCE - timedelta(days=30))}
    assert not was_created(member, "subscribed", SINCE)


@pytest.mark.parametrize("status", ["unsubscribed", "cleaned", "pending", "transactional"])
def test_was_created_is_false_when_the_member_kept_another_status(status: str) -> None:
    member = {
        "status": status,
        "timestamp_opt": iso(SINCE + timedelta(seconds=1)),
        "last_changed": iso(SINCE + timedelta(seconds=1)),
    }
    assert not was_created(member, "subscribed", SINCE)


def test_was_created_for_pending_uses_last_changed() -> None:
    fresh = {"status": "pending", "timestamp_opt": "", "last_changed": iso(SINCE)}
    old = {
        "status": "pending",
        "timestamp_opt": "",
        "last_changed": iso(SINCE - timedelta(hours=1)),
    }
    assert was_created(fresh, "pending", SINCE)
    assert not was_created(old, "pending", SINCE)


def test_was_created_without_any_time_is_an_update() -> None:
    assert not was_created({"status": "subscribed"}, "subscribed", SINCE)
    assert not was_created(
        {"status": "subscribed", "timestamp_opt": "not a date"}, "subscribed", SINCE
    )


# --- gateway.error_from_response ----------------------------------------------------


def problem(status: int, title: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "x",
        **extra,
    }


@pytest.mark.parametrize(
    "title, detail",
    [
        (
            "Member In Compliance State",
            "a@b.co is in a compliance state due to unsubscribe, bounce, or compliance review"
            " and cannot be subscribed.",
        ),
        (
            "Forgotten Email Not Subscribed",
            "a@b.co was permanently deleted and cannot be re-imported.",
        ),
        ("Invalid Resource", "a@b.co looks fake or invalid, please enter a real email address."),
        ("Invalid Resource", "Please provide a valid email address."),
    ],
)
def test_errors_about_one_address_are_permanent_address_errors(title: str, detail: str) -> None:
    error = error_from_response(400, problem(400, title, detail))
    assert isinstance(error, AddressError)
    assert error.permanent
    assert (error.title, error.detail, error.status) == (title, detail, 400)


def test_invalid_merge_fields_name_the_field() -> None:
    body = problem(
        400,
        "Invalid Resource",
        "Your merge fields were invalid.",
        errors=[{"field": "FNAME", "message": "Please enter a value"}],
    )
    error = error_from_response(400, body)
    assert isinstance(error, AddressError) and error.permanent
    assert "FNAME: Please enter a value" in error.full_detail
    assert error.full_detail.startswith("Your merge fields were invalid.")


def test_too_many_requests_is_transient_with_retry_after() -> None:
    body = problem(
        429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections."
    )
    error = error_from_response(429, body, "7")
    assert isinstance(error, TransientError)
    assert not error.permanent
    assert error.retry_after == 7.0
    assert error.title == "Too Many Requests"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    error = error_from_response(status, problem(status, "Internal Server Error", "oops"), "2.5")
    assert isinstance(error, TransientError) and not error.permanent
    assert error.retry_after == 2.5


@pytest.mark.parametrize("body", [None, {}])
def test_403_without_a_body_is_transient(body: dict[str, Any] | None) -> None:
    error = error_from_response(403, body, "3")
    assert isinstance(error, TransientError)
    assert error.retry_after == 3.0
    assert error.detail  # a sentence, even though Mailchimp sent none
    assert "retried with backoff" in error.detail and "API key" in error.detail


def test_signed_up_to_a_lot_of_lists_is_transient_like_a_429() -> None:
    body = problem(
        400,
        "Invalid Resource",
        "a.b@gmail.com has signed up to a lot of lists very recently; we're not allowing"
        " more signups for now",
    )
    error = error_from_response(400, body, "30")
    assert isinstance(error, TransientError) and not error.permanent
    assert error.retry_after == 30.0 and "signed up to a lot of lists" in error.detail
    # Other "Invalid Resource" answers stay about the address.
    assert isinstance(error_from_response(400, problem(400, "Invalid Resource", "x")), AddressError)


def test_empty_403_from_mailchimp3_is_classified_without_a_crash() -> None:
    import requests
    from mailchimp3.mailchimpclient import MailChimpError

    from flask_mcsync.gateway import _from_mailchimp3

    response = requests.Response()
    response.status_code = 403
    response._content = b""
    error = _from_mailchimp3(MailChimpError({"response": response}))
    assert isinstance(error, TransientError) and error.status == 403


def test_5xx_without_a_body_still_says_something() -> None:
    error = error_from_response(502, None)
    assert isinstance(error, TransientError)
    assert error.title == "HTTP 502"
    assert error.retry_after is None
    assert error.detail  # a sentence, even though Mailchimp sent none


@pytest.mark.parametrize("value, seconds", [("abc", None), ("-4", 0.0), (None, None)])
def test_unreadable_retry_after_is_ignored(value: str | None, seconds: float | None) -> None:
    assert error_from_response(429, None, value).retry_after == seconds


@pytest.mark.parametrize(
    "status, title",
    [
        (401, "API Key Invalid"),
        (401, "API Key Missing"),
        (403, "Forbidden"),
        (404, "Resource Not Found"),
    ],
)
def test_account_errors(status: int, title: str) -> None:
    error = error_from_response(status, problem(status, title, "Check your key."))
    assert isinstance(error, AccountError)
    assert error.title == title


def test_401_without_body_is_an_account_error() -> None:
    assert isinstance(error_from_response(401, None), AccountError)


# --- gateway.read_results_archive ---------------------------------------------------


def archive(files: dict[str, Any], directory: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if directory:
            info = tarfile.TarInfo(".")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, content in files.items():
            data = content if isinstance(content, bytes) else json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_results_archive_is_read_across_files() -> None:
    member = {"id": "h", "email_address": "a@b.co", "status": "subscribed"}
    content = archive(
        {
            "./b1-0.json": [
                {"status_code": 200, "operation_id": "0", "response": json.dumps(member)},
                {
                    "status_code": 400,
                    "operation_id": "1",
                    "response": json.dumps(problem(400, "Member In Compliance State", "no")),
                },
            ],
            "./b1-1.json": [{"status_code": 204, "operation_id": "2", "response": ""}],
            "./README.txt": b"not results",
        }
    )
    results = sorted(read_results_archive(content), key=lambda r: r["operation_id"])
    assert [r["operation_id"] for r in results] == ["0", "1", "2"]
    assert results[0] == {"status_code": 200, "operation_id": "0", "response": member}
    assert results[1]["status_code"] == 400
    assert results[1]["response"]["title"] == "Member In Compliance State"
    assert results[2]["response"] == {}


def test_results_archive_tolerates_odd_responses() -> None:
    content = archive(
        {
            "./x.json": [
                {"status_code": "200", "operation_id": "0", "response": "<html>oops</html>"},
                {"status_code": 200, "operation_id": "1", "response": "[1, 2]"},
                {"status_code": 500, "operation_id": "2"},
            ],
        },
        directory=False,
    )
    results = read_results_archive(content)
    assert [(r["status_code"], r["operation_id"], r["response"]) for r in results] == [
        (200, "0", {}),
        (200, "1", {}),
        (500, "2", {}),
    ]


def test_empty_results_archive() -> None:
    assert read_results_archive(archive({})) == []


def test_results_archive_matches_the_sandbox_format() -> None:
    from flask_mcsync.sandbox.batches import build_archive

    entries = [
        {"status_code": 200, "operation_id": str(i), "response": json.dumps({"n": i})}
        for i in range(1203)
    ]
    results = read_results_archive(build_archive("abc", entries))
    assert len(results) == 1203
    assert {r["operation_id"] for r in results} == {str(i) for i in range(1203)}
    assert all(r["response"] == {"n": int(r["operation_id"])} for r in results)


@pytest.mark.parametrize(
    "member",
    [
        {
            "status": "subscribed",
            "timestamp_opt": "2026-01-01T00:00:00+00:00",
            "last_changed": "2026-01-01T00:00:00+00:00",
            "timestamp_signup": "",
            "merge_fields": {"FNAME": 'say "status": "archived"', "X": "\\"},
        },
        # decoded whole: a field missing, null, with an escape, or also in a nested object
        {"status": "subscribed", "timestamp_opt": "2026-01-01T00:00:00+00:00"},
        {
            "status": "subscribed",
            "timestamp_opt": None,
            "last_changed": "x",
            "timestamp_signup": "",
        },
        {
            "status": 'sub"scribed',
            "timestamp_opt": "t",
            "last_changed": "x",
            "timestamp_signup": "",
        },
        {
            "status": "subscribed",
            "timestamp_opt": "t",
            "last_changed": "x",
            "timestamp_signup": "",
            "tags": [{"status": "archived"}],
        },
    ],
)
def test_results_archive_reads_only_the_fields_asked_as_json_would(member: Any) -> None:
    from flask_mcsync.gateway import MEMBER_FIELDS

    for text in (json.dumps(member), json.dumps(member, separators=(",", ":"), indent=2)):
        content = archive(
            {
                "./r.json": [
                    {"status_code": 200, "operation_id": "0", "response": text},
                    {
                        "status_code": 400,
                        "operation_id": "1",
                        "response": json.dumps(problem(400, "Invalid Resource", "no")),
                    },
                ]
            }
        )
        ok, error = read_results_archive(content, MEMBER_FIELDS)
        assert {k: ok["response"][k] for k in MEMBER_FIELDS if k in ok["response"]} == {
            k: member[k] for k in MEMBER_FIELDS if k in member
        }
        assert error["response"]["title"] == "Invalid Resource"  # errors decoded whole


def test_results_archive_keeps_every_digit_of_a_huge_integer_in_a_field_asked() -> None:
    from flask_mcsync.gateway import MEMBER_FIELDS

    huge = 10**22 + 1  # orjson alone reads it as a float and loses the last digit
    member = {"status": huge, "timestamp_opt": "t", "web_id": 10**30}
    content = archive(
        {"./r.json": [{"status_code": 200, "operation_id": "0", "response": json.dumps(member)}]}
    )
    (read,) = read_results_archive(content, MEMBER_FIELDS)
    assert read["response"]["status"] == huge and isinstance(read["response"]["status"], int)


# --- config.read_config ---------------------------------------------------------------


def test_config_defaults_to_mailchimp_for_the_key_datacenter() -> None:
    config = read_config({"MCSYNC_API_KEY": f"  {KEY} "})
    assert config.api_key == KEY
    assert config.api_url == "https://us21.api.mailchimp.com/3.0/"
    assert config.request_timeout == 30.0
    assert "0123456789abcdef" not in config.masked_api_key


@pytest.mark.parametrize(
    "key",
    [
        "not-a-key",
        "0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcde-us1",
        "0123456789ABCDEF0123456789ABCDEF-us1",
        "g123456789abcdef0123456789abcdef-us1",
    ],
)
def test_config_refuses_a_badly_shaped_key(key: str) -> None:
    with pytest.raises(ConfigError, match="MCSYNC_API_KEY"):
        read_config({"MCSYNC_API_KEY": key})


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8025/3.0/", "ftp://host/3.0/", "http://", "/3.0/", "localhost"]
)
def test_config_refuses_a_bad_url(url: str) -> None:
    with pytest.raises(ConfigError, match="MCSYNC_API_URL"):
        read_config({"MCSYNC_API_KEY": KEY, "MCSYNC_API_URL": url})


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://127.0.0.1:8025/3.0", "http://127.0.0.1:8025/3.0/"),
        ("http://127.0.0.1:8025/3.0/", "http://127.0.0.1:8025/3.0/"),
        (" https://sandbox.local/3.0 ", "https://sandbox.local/3.0/"),
    ],
)
def test_config_adds_the_trailing_slash_mailchimp3_needs(url: str, expected: str) -> None:
    assert read_config({"MCSYNC_API_KEY": KEY, "MCSYNC_API_URL": url}).api_url == expected


TIMEOUT_KEYS = {
    "MCSYNC_REQUEST_TIMEOUT": "request_timeout",
    "MCSYNC_CONNECT_TIMEOUT": "connect_timeout",
}


@pytest.mark.parametrize("key", TIMEOUT_KEYS)
@pytest.mark.parametrize("timeout", [0, -1, 120.5, 1000, "0"])
def test_config_refuses_a_timeout_out_of_range(key: str, timeout: Any) -> None:
    with pytest.raises(ConfigError, match=f"{key} must be between 0 and 120 seconds"):
        read_config({key: timeout})


@pytest.mark.parametrize("key", TIMEOUT_KEYS)
def test_config_refuses_a_timeout_that_is_not_a_number(key: str) -> None:
    with pytest.raises(ConfigError, match=f"{key} must be a number"):
        read_config({key: "soon"})


@pytest.mark.parametrize("key", TIMEOUT_KEYS)
@pytest.mark.parametrize("timeout, expected", [("3", 3.0), (120, 120.0), (0.5, 0.5)])
def test_config_accepts_timeouts_in_range(key: str, timeout: Any, expected: float) -> None:
    assert getattr(read_config({key: timeout}), TIMEOUT_KEYS[key]) == expected


def test_config_timeouts_default_to_30_s_read_and_5_s_connect() -> None:
    config = read_config({})
    assert (config.connect_timeout, config.request_timeout) == (5.0, 30.0)


def test_config_refuses_a_non_redis_url() -> None:
    with pytest.raises(ConfigError, match="MCSYNC_REDIS_URL"):
        read_config({"MCSYNC_REDIS_URL": "http://localhost:6379"})


@pytest.mark.parametrize("connections", [0, 11])
def test_config_keeps_connections_within_mailchimps_limit(connections: int) -> None:
    with pytest.raises(ConfigError, match="MCSYNC_MAX_CONNECTIONS"):
        read_config({"MCSYNC_MAX_CONNECTIONS": connections})


_RANGE = "must be between 2 and 500 (Mailchimp refuses more pending batches per account)"


@pytest.mark.parametrize(
    "value, says",
    [
        (1, f"{_RANGE}; it is 1."),
        (501, f"{_RANGE}; it is 501."),
        ("ten", "must be a number; it is 'ten'."),
    ],
)
def test_config_keeps_batches_in_flight_within_mailchimps_pending_limit(
    value: Any, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        read_config({"MCSYNC_BATCHES_IN_FLIGHT": value})
    assert str(caught.value) == f"MCSYNC_BATCHES_IN_FLIGHT {says}"


def test_config_batches_in_flight_defaults_to_twenty_and_takes_a_setting() -> None:
    assert read_config({}).batches_in_flight == 20
    assert read_config({"MCSYNC_BATCHES_IN_FLIGHT": "500"}).batches_in_flight == 500


# --- addresses ------------------------------------------------------------------------

ascii_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=80)
atom = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
    min_size=1,
    max_size=12,
)
local_chars = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+/=?^_`{|}~-",
    min_size=1,
    max_size=70,
)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
tld = st.sampled_from(["com", "fr", "de", "io", "museum", "xn--p1ai", "co", "a", "1"])
noise = st.text(alphabet=' @.\t-_"(),:;<>[]\\é', max_size=4)


@st.composite
def address_like(draw: st.DrawFn) -> str:
    """Mostly plausible addresses with a sprinkle of what breaks them."""
    local = draw(st.one_of(atom, local_chars))
    labels = draw(st.lists(label, min_size=0, max_size=3))
    domain = ".".join([*labels, draw(tld)])
    text = f"{local}@{domain}"
    if draw(st.booleans()):
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(noise) + text[position:]
    if draw(st.booleans()):
        text = draw(st.sampled_from(["", " ", "\t"])) + text + draw(st.sampled_from(["", " "]))
    return text


@given(st.text(max_size=80))
def test_normalize_is_idempotent(raw: str) -> None:
    once = normalize(raw)
    assert normalize(once) == once


@given(ascii_text)
def test_subscriber_hash_is_md5_of_the_lower_cased_address(raw: str) -> None:
    expected = hashlib.md5(raw.strip().lower().encode()).hexdigest()
    assert subscriber_hash(raw) == expected
    assert subscriber_hash(raw.upper()) == expected
    assert subscriber_hash(raw.swapcase()) == expected


@given(address_like())
def test_subscriber_hash_ignores_case_of_addresses(address: str) -> None:
    assert subscriber_hash(address.upper()) == subscriber_hash(address.lower())
    assert len(subscriber_hash(address)) == 32


def test_subscriber_hash_known_value() -> None:
    # The example from Mailchimp's documentation of the member id.
    assert (
        subscriber_hash(" Urist.McVankab@freddiesjokes.com ")
        == hashlib.md5(b"urist.mcvankab@freddiesjokes.com").hexdigest()
    )


@settings(max_examples=400)
@given(st.one_of(address_like(), ascii_text, st.text(max_size=40)))
def test_every_accepted_address_passes_mailchimp3_and_has_one_at(raw: str) -> None:
    if invalid_reason(raw) is not None:
        return
    address = raw.strip()
    check_email(address)  # raises ValueError for what mailchimp3 would refuse
    assert address.count("@") == 1
    assert len(address) <= 254
    assert address.isascii()


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "a@b",
        "a@@b.co",
        "@b.co",
        "a@",
        "a b@c.co",
        "a..b@c.co",
        ".a@c.co",
        "a.@c.co",
        "a@b.c",
        "a@-b.co",
        "a@b-.co",
        "a@b..co",
        "é@b.co",
        "a@b.co.",
        "x" * 65 + "@b.co",
        "a@" + "b" * 250 + ".co",
        "a@b.123",
    ],
)
def test_invalid_addresses_have_a_reason(raw: str | None) -> None:
    reason = invalid_reason(raw)
    assert reason and reason.endswith(".")


@pytest.mark.parametrize(
    "raw", ["a@b.co", " Anne.Case@Gmail.COM ", "o'brien+shop@mail.shop.org", "x@xn--p1ai.ru"]
)
def test_valid_addresses(raw: str) -> None:
    assert invalid_reason(raw) is None


def test_a_domains_verdict_is_the_same_whatever_was_asked_before() -> None:
    """Domains' verdicts are remembered (issue 10): a syntax-only check of a fake domain
    must not make it pass the full check afterwards, nor a reason lose its language."""
    from flask_mcsync import i18n

    assert invalid_reason("a@shop.example.com", fake=False) is None
    assert invalid_reason("b@shop.example.com") == (
        "'shop.example.com' is a domain reserved for examples: Mailchimp refuses its"
        " addresses as fake."
    )
    assert invalid_reason("c@Gmail.com") is None and invalid_reason("d@gmail.com") is None
    with i18n.use_locale("fr"):
        assert "réserv" in (invalid_reason("e@shop.example.com") or "")


# --- rules ----------------------------------------------------------------------------


def ruleset(*specs: tuple[str, str]) -> RuleSet:
    return RuleSet(clean_rule(kind, value) for kind, value in specs)


@given(atom, st.lists(label, max_size=3))
def test_domain_rule_matches_the_domain_and_its_subdomains(local: str, subs: list[str]) -> None:
    rules = ruleset(("domain", "Example.com"))
    host = ".".join([*subs, "example.com"])
    assert rules.match(f"{local}@{host}") is not None
    assert rules.match(f"{local}@{host}".upper()) is not None


@given(atom, label)
def test_domain_rule_does_not_match_lookalikes(local: str, prefix: str) -> None:
    rules = ruleset(("domain", "example.com"))
    assert rules.match(f"{local}@{prefix}example.com") is None
    assert rules.match(f"{local}@example.com.{prefix}.org") is None
    assert rules.match(f"{local}@example.co") is None
    assert rules.match(f"example.com@{prefix}.org") is None


@pytest.mark.parametrize("typed", ["example.com", "@example.com", "*@example.com", ".EXAMPLE.com"])
def test_domain_rule_accepts_common_spellings(typed: str) -> None:
    rule = clean_rule("domain", typed)
    assert rule.value == "example.com"
    assert ruleset(("domain", typed)).match("a@shop.example.com") is not None


@pytest.mark.parametrize(
    "pattern, address, matches",
    [
        ("*@MAILINATOR.com", "Someone@Mailinator.COM", True),
        ("test+*@*", "TEST+promo@orange.fr", True),
        ("test+*@*", "contest+promo@orange.fr", False),
        ("*@*.mailinator.com", "a@mailinator.com", False),
        ("user?@gmail.com", "USER7@gmail.com", True),
        ("user?@gmail.com", "user77@gmail.com", False),
    ],
)
def test_patterns_are_case_insensitive_shell_patterns(
    pattern: str, address: str, matches: bool
) -> None:
    assert (ruleset(("pattern", pattern)).match(address) is not None) is matches


@given(st.text(max_size=40).filter(lambda s: not any(c in s for c in "*?[")))
def test_clean_rule_rejects_patterns_without_wildcards(text: str) -> None:
    with pytest.raises(InvalidRule):
        clean_rule("pattern", text)


def test_clean_rule_rejects_bad_rules() -> None:
    for kind, value in [
        ("regex", ".*"),
        ("address", "not an address"),
        ("domain", "a*.com"),
        ("domain", "a@b.com"),
        ("domain", "localhost"),
        ("pattern", "*" * 17),
        ("pattern", "*" + "a" * 254),
        ("address", ""),
    ]:
        with pytest.raises(InvalidRule):
            clean_rule(kind, value)


def test_exact_address_rule_ignores_case() -> None:
    rules = ruleset(("address", "Blocked.Person@Gmail.com"))
    assert rules.match(" BLOCKED.PERSON@gmail.com ") is not None
    assert rules.match("blocked.person2@gmail.com") is None


@pytest.mark.parametrize(
    "pattern",
    ["*a*a*a*a*a*a*a*a*b", "*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", "a*a*a*a*a*a*a*a*a*a*?b"],
)
def test_adversarial_patterns_give_the_right_answer(pattern: str) -> None:
    rules = ruleset(("pattern", pattern))
    no_b = "a" * 245 + "@aaaaa.aa"
    assert len(no_b) == 254
    assert rules.match(no_b) is None
    ends_in_b = "a" * 244 + "@aaaaa.aab"
    assert len(ends_in_b) == 254
    assert rules.match(ends_in_b) is not None


# --- MCSYNC_RETRY_DELAY -------------------------------------------------------------


def test_the_retry_delay_defaults_to_two_seconds_and_is_read_from_the_config() -> None:
    assert read_config({"MCSYNC_API_KEY": KEY}).retry_delay == 2.0
    assert read_config({"MCSYNC_API_KEY": KEY, "MCSYNC_RETRY_DELAY": "0.5"}).retry_delay == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_the_retry_delay_must_be_a_positive_number(value: str) -> None:
    with pytest.raises(ConfigError, match="MCSYNC_RETRY_DELAY"):
        read_config({"MCSYNC_API_KEY": KEY, "MCSYNC_RETRY_DELAY": value})


def test_backoff_starts_at_the_retry_delay_and_doubles_within_its_jitter() -> None:
    from flask_mcsync.retry import MAX_DELAY, backoff_seconds

    for attempt, full in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)):
        waits = [backoff_seconds(attempt, None, 0.5) for _ in range(200)]
        assert all(full / 2 <= wait <= full for wait in waits), (attempt, min(waits), max(waits))
    assert backoff_seconds(40, None, 0.5) <= MAX_DELAY
    # Mailchimp's Retry-After wins over a shorter backoff.
    assert backoff_seconds(1, 30.0, 0.5) == 30.0


def test_the_chart_leaves_room_for_its_longest_axis_label() -> None:
    """The y axis's top label ("2,000,000") was cut to "00,000" by a fixed margin."""
    from flask_mcsync.admin.chart import PAD_LEFT, draw_chart

    def chart(synced: int) -> dict:
        return draw_chart([{"day": "2026-11-26", "synced": synced, "failed": 0, "skipped": 0}], 1)

    assert chart(7)["left"] == PAD_LEFT
    big = chart(1_234_567)
    assert [t["value"] for t in big["ticks"]] == [0, 1_000_000, 2_000_000]
    assert big["left"] >= 7 * len("2,000,000") + 6  # the label, and the gap the template leaves
    assert big["days"][0].synced_bar.x >= big["left"]
