"""The one way to Mailchimp: mailchimp3 over one pooled HTTP session per gateway, with
connect and read timeouts on every call, a shared limit of simultaneous connections, and
errors sorted into what to do about them.

Errors come out as three classes, because each asks for a different reaction:

* :class:`TransientError` (429, 5xx, 403 without a body, timeouts, dropped connections):
  try again later, honouring ``retry_after``. Its subclass :class:`BatchLost` says a
  batch Mailchimp accepted is gone (``GET /batches/{id}`` answers 404) or its results
  expired: nothing is wrong with the account, the batch must be sent again.
* :class:`AddressError` (400s about one member: compliance state, forgotten, invalid or
  fake-looking address, invalid merge fields): record it for that address and move on;
  retrying cannot help.
* :class:`AccountError` (bad API key, unknown audience): nothing will work until the shop
  owner fixes the settings, so a run stops with the message instead of failing every
  address.

All carry Mailchimp's ``title`` and ``detail`` unchanged, so the admin sees what
Mailchimp said.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import weakref
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import requests
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError

from .addresses import subscriber_hash
from .throttle import ConnectionSlots

# Titles of 400 answers that are about one address and will not change on a retry.
ADDRESS_TITLES = {
    "Member In Compliance State",
    "Forgotten Email Not Subscribed",
    "Invalid Resource",
    "Member Exists",
}
ACCOUNT_TITLES = {"API Key Missing", "API Key Invalid", "Resource Not Found", "Forbidden"}


class MailchimpError(Exception):
    """Something Mailchimp (or the way to it) refused. ``str()`` is a full sentence."""

    permanent = True

    def __init__(
        self,
        title: str,
        detail: str = "",
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{title}: {detail}" if detail else title)
        self.title = title
        self.detail = detail
        self.status = status
        self.errors = errors or []
        self.retry_after = retry_after

    @property
    def full_detail(self) -> str:
        """The detail with per-field messages (e.g. which merge field is missing)."""
        fields = "; ".join(f"{e.get('field') or '?'}: {e.get('message', '')}" for e in self.errors)
        return f"{self.detail} ({fields})" if fields else self.detail


class TransientError(MailchimpError):
    permanent = False


class BatchLost(TransientError):
    """Mailchimp no longer has a batch we sent, or its results: send the batch again.

    Not an account problem: the key and the audience are fine (the same key was just
    accepted), only this batch's record is gone.
    """


class AddressError(MailchimpError):
    pass


class AccountError(MailchimpError):
    pass


def error_from_response(
    status: int, body: dict[str, Any] | None, retry_after: str | None = None
) -> MailchimpError:
    """Classify one HTTP error answer (also used for the operations of a batch)."""
    body = body or {}
    title = str(body.get("title") or f"HTTP {status}")
    detail = str(body.get("detail") or "")
    errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    kwargs: dict[str, Any] = {"detail": detail, "status": status, "errors": errors}
    if status == 429 or status >= 500 or (status == 403 and not body):
        # 403 without a JSON body is Mailchimp's edge blocking a burst: it passes.
        kwargs["retry_after"] = _seconds(retry_after)
        if not detail:
            kwargs["detail"] = "Mailchimp is busy or unavailable for the moment."
        return TransientError(title, **kwargs)
    if status in (401, 403) or title in ACCOUNT_TITLES:
        return AccountError(title, **kwargs)
    return AddressError(title, **kwargs)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _from_mailchimp3(exc: MailChimpError) -> MailchimpError:
    data = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    response = data.get("response")
    status = getattr(response, "status_code", None) or int(data.get("status") or 0)
    body = {k: v for k, v in data.items() if k != "response"}
    retry_after = response.headers.get("Retry-After") if response is not None else None
    return error_from_response(status, body, retry_after)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except MailChimpError as exc:
        raise _from_mailchimp3(exc) from exc
    except requests.Timeout as exc:
        raise TransientError(
            "Timeout", "Mailchimp did not answer within the request timeout."
        ) from exc
    except requests.RequestException as exc:
        raise TransientError(
            "Connection failed",
            f"Could not reach Mailchimp ({type(exc).__name__}: check the network and"
            " MCSYNC_API_URL).",
        ) from exc


#: Seconds to open a connection when the caller does not say (``MCSYNC_CONNECT_TIMEOUT``).
DEFAULT_CONNECT_TIMEOUT = 5.0


class PooledMailChimp(MailChimp):
    """mailchimp3's client sending every request through one :class:`requests.Session`.

    mailchimp3 calls ``requests.request`` for each call, which opens (and closes) a new
    connection every time, TLS handshake included. It also logs each request's JSON
    payload at INFO on ``mailchimp3.client``: addresses and names would reach the host's
    logs. Both live in its ``_make_request``, the one method all its calls go through, so
    this is the one method replaced; the calls, URLs and errors stay mailchimp3's.
    """

    def __init__(self, session: requests.Session, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session

    def _make_request(self, **kwargs: Any) -> requests.Response:
        # No logging here on purpose: the payload and the member's URL are personal data.
        return self.session.request(**kwargs)


class Gateway:
    """Calls to one Mailchimp account.

    ``slots`` (shared through Redis) bounds the simultaneous calls of all workers; without
    it (no Redis configured, e.g. a one-off CLI lookup) calls are not counted.

    ``timeout`` is the read timeout (``MCSYNC_REQUEST_TIMEOUT``): how long Mailchimp may
    take to answer. ``connect_timeout`` (``MCSYNC_CONNECT_TIMEOUT``) bounds opening a
    connection, so an unreachable host fails fast instead of after the read timeout.
    The gateway keeps its connections open between calls; :meth:`close` (or dropping
    the gateway) closes them.
    """

    def __init__(
        self,
        api_key: str,
        api_url: str,
        timeout: float,
        slots: ConnectionSlots | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self.session = requests.Session()
        # Closed with the gateway, so no socket is left for the garbage collector to warn about.
        self._close = weakref.finalize(self, self.session.close)
        # requests takes (connect, read); mailchimp3 passes it through unchanged.
        self.timeouts = (connect_timeout, timeout)
        self.client = PooledMailChimp(self.session, mc_api=api_key, timeout=self.timeouts)
        # mailchimp3 reads this attribute for every call; the trailing slash matters.
        self.client.base_url = api_url
        self.timeout = timeout
        self.slots = slots

    def close(self) -> None:
        """Close the pooled connections now, rather than when the gateway is collected."""
        self._close()

    @contextlib.contextmanager
    def _call(self) -> Iterator[None]:
        slot = self.slots.slot() if self.slots else contextlib.nullcontext()
        with slot, _translated():
            yield

    def ping(self) -> dict[str, Any]:
        with self._call():
            return dict(self.client.ping.get())

    def audiences(self) -> list[dict[str, Any]]:
        """Every audience of the account: id, name, member count, double opt-in."""
        with self._call():
            data = self.client.lists.all(
                get_all=True,
                fields="lists.id,lists.name,lists.stats.member_count,lists.double_optin,"
                "total_items",
            )
        return [
            {
                "id": item["id"],
                "name": item.get("name", item["id"]),
                "member_count": (item.get("stats") or {}).get("member_count"),
                "double_optin": item.get("double_optin"),
            }
            for item in data.get("lists", [])
        ]

    def get_member(self, list_id: str, email: str) -> dict[str, Any] | None:
        """The member as Mailchimp holds it now, or ``None`` when not in the audience."""
        try:
            with self._call():
                return dict(self.client.lists.members.get(list_id, subscriber_hash(email)))
        except AccountError as exc:
            if exc.status == 404 and self._audience_exists(list_id):
                return None
            raise

    def _audience_exists(self, list_id: str) -> bool:
        try:
            with self._call():
                self.client.lists.get(list_id, fields="id")
            return True
        except AccountError:
            return False

    def upsert_member(
        self,
        list_id: str,
        email: str,
        status_if_new: str,
        merge_fields: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create the member with ``status_if_new`` or update its merge fields.

        Never sends ``status``: an existing member's status (unsubscribed, cleaned) stays.
        """
        body = member_body(email, status_if_new, merge_fields)
        with self._call():
            return dict(
                self.client.lists.members.create_or_update(list_id, subscriber_hash(email), body)
            )

    def unsubscribe_member(self, list_id: str, email: str) -> dict[str, Any] | None:
        """Unsubscribe a member who opted out in the shop; ``None`` if not in the audience."""
        try:
            with self._call():
                return dict(
                    self.client.lists.members.update(
                        list_id, subscriber_hash(email), {"status": "unsubscribed"}
                    )
                )
        except AccountError as exc:
            if exc.status == 404 and self._audience_exists(list_id):
                return None
            raise

    def change_address(self, list_id: str, old: str, new: str) -> dict[str, Any] | None:
        """Move a member to a new address (status and history kept).

        ``None`` when the old address is not in the audience. Raises
        :class:`AddressError` when the new address is already a member.
        """
        try:
            with self._call():
                return dict(
                    self.client.lists.members.update(
                        list_id, subscriber_hash(old), {"email_address": new.strip()}
                    )
                )
        except AccountError as exc:
            if exc.status == 404 and self._audience_exists(list_id):
                return None
            raise

    def submit_batch(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        with self._call():
            return dict(self.client.batch_operations.create({"operations": operations}))

    def get_batch(self, batch_id: str) -> dict[str, Any]:
        """The batch's status; :class:`BatchLost` when Mailchimp no longer knows it.

        A 404 here is not "audience not found": a bad key answers 401, and the batch id
        is ours, so the batch itself is gone (deleted, or lost by Mailchimp).
        """
        try:
            with self._call():
                return dict(self.client.batch_operations.get(batch_id))
        except AccountError as exc:
            if exc.status == 404:
                raise BatchLost(
                    "Batch gone",
                    f"Mailchimp no longer knows batch {batch_id} ({exc.title}); the batch"
                    " will be re-sent.",
                    status=404,
                ) from exc
            raise

    def batch_results(self, url: str) -> list[dict[str, Any]]:
        """Every operation result of a finished batch, ``response`` decoded from JSON.

        The archive lives on a file store, not the API: it needs no key and takes no
        connection slot. Results that are gone raise :class:`TransientError`, so the
        caller re-sends the batch rather than waiting on it forever.
        """
        with _translated():
            response = self.session.get(url, timeout=self.timeouts)
        if response.status_code in (403, 404, 410):
            raise BatchLost(
                "Batch results expired",
                "Mailchimp no longer has this batch's results; the batch will be re-sent.",
                status=response.status_code,
            )
        if response.status_code >= 400:
            raise error_from_response(response.status_code, None)
        return read_results_archive(response.content)


def member_body(
    email: str, status_if_new: str, merge_fields: dict[str, Any] | None
) -> dict[str, Any]:
    """The body of a member upsert, the same for a single call and a batch operation."""
    body: dict[str, Any] = {"email_address": email.strip(), "status_if_new": status_if_new}
    if merge_fields:
        body["merge_fields"] = merge_fields
    return body


def read_results_archive(content: bytes) -> list[dict[str, Any]]:
    """Parse a batch result archive: a tar.gz of JSON arrays of operation results."""
    results: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            for item in json.load(handle):
                raw = item.get("response")
                try:
                    decoded = json.loads(raw) if isinstance(raw, str) and raw else raw
                except ValueError:
                    decoded = None
                results.append(
                    {
                        "status_code": int(item.get("status_code") or 0),
                        "operation_id": item.get("operation_id"),
                        "response": decoded if isinstance(decoded, dict) else {},
                    }
                )
    return results


def was_created(member: dict[str, Any], status_if_new: str, since: datetime) -> bool:
    """Whether an upsert created the member rather than updating an existing one.

    Mailchimp answers both with 200 and the member. A member we just created has the
    status we asked for and an opt-in (subscribed) or last-change (pending) time at or
    after the request; an existing member keeps its older times or another status.
    A pending member that already existed and had its merge fields changed is counted as
    created: Mailchimp gives no way to tell the two apart.
    """
    if member.get("status") != status_if_new:
        return False
    field = "timestamp_opt" if status_if_new == "subscribed" else "last_changed"
    stamp = _parse_time(member.get(field)) or _parse_time(member.get("timestamp_signup"))
    return stamp is not None and stamp >= since.replace(microsecond=0)


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
