"""The one way to Mailchimp: mailchimp3 over one pooled HTTP session per gateway, with
connect and read timeouts on every call, a shared limit of simultaneous connections, and
errors sorted into what to do about them.

A service makes its gateway from the app's state with :func:`gateway_for`; within
:func:`kept_connections` (a worker's jobs) the gateways of a thread share one session.

Errors come out as three classes, because each asks for a different reaction:

* :class:`TransientError` (429, 5xx, 403 without a body, the 400 "signed up to a lot of
  lists very recently", timeouts, dropped connections): try again later, honouring
  ``retry_after``. Its subclass :class:`BatchLost` says a batch Mailchimp accepted is gone
  (``GET /batches/{id}`` answers 404) or its results expired: nothing is wrong with the
  account, the batch must be sent again.
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
import os
import tarfile
import time
import weakref
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests
from mailchimp3 import MailChimp
from mailchimp3.mailchimpclient import MailChimpError

from . import jsoncodec, messages
from .addresses import subscriber_hash
from .errors import ConfigError, McSyncError
from .throttle import ConnectionSlots, SlotTimeout, account_id
from .times import parse_time

if TYPE_CHECKING:
    from .app_state import McSync

# Titles of 400 answers that are about one address and will not change on a retry.
ADDRESS_TITLES = {
    "Member In Compliance State",
    "Forgotten Email Not Subscribed",
    "Invalid Resource",
    "Member Exists",
}
ACCOUNT_TITLES = {"API Key Missing", "API Key Invalid", "Resource Not Found", "Forbidden"}
# A 400 that passes: Mailchimp's anti-abuse pause on one address ("... has signed up to a
# lot of lists very recently; we're not allowing more signups for now"). Retried like a 429.
TEMPORARY_400_MARK = "signed up to a lot of lists"


class MailchimpError(McSyncError):
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


def as_mailchimp_error(exc: Exception) -> MailchimpError:
    """A passing failure told as Mailchimp's are; a full connection limit is "Busy"."""
    if isinstance(exc, MailchimpError):
        return exc
    title = messages.BUSY if isinstance(exc, SlotTimeout) else type(exc).__name__
    return TransientError(title, str(exc))


def gave_up(tries: int, exc: Exception, unit: str = "tries") -> TransientError:
    """What is recorded once a passing failure outlasted every try: the last cause.

    ``unit``: "tries" (a batch's steps, a re-sync) or "attempts" (auto-sync's rows).
    """
    cause = as_mailchimp_error(exc)
    said = messages.GAVE_UP_ATTEMPTS if unit == "attempts" else messages.GAVE_UP_TRIES
    return TransientError(said(tries=tries), f"{cause.title}: {cause.detail}")


def error_from_response(
    status: int, body: dict[str, Any] | None, retry_after: str | None = None
) -> MailchimpError:
    """Classify one HTTP error answer (also used for the operations of a batch)."""
    body = body or {}
    title = str(body.get("title") or f"HTTP {status}")
    detail = str(body.get("detail") or "")
    errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    kwargs: dict[str, Any] = {"detail": detail, "status": status, "errors": errors}
    empty_403 = status == 403 and not body
    temporary_400 = status == 400 and TEMPORARY_400_MARK in detail.lower()
    if status == 429 or status >= 500 or empty_403 or temporary_400:
        kwargs["retry_after"] = _seconds(retry_after)
        if empty_403:
            kwargs["detail"] = messages.EMPTY_403_DETAIL
        elif not detail:
            kwargs["detail"] = messages.BUSY_DETAIL
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
        raise TransientError(messages.TIMEOUT, messages.TIMEOUT_DETAIL) from exc
    except requests.RequestException as exc:
        raise TransientError(
            messages.CONNECTION_FAILED, messages.CONNECTION_DETAIL(error=type(exc).__name__)
        ) from exc


#: Seconds to open a connection when the caller does not say (``MCSYNC_CONNECT_TIMEOUT``).
DEFAULT_CONNECT_TIMEOUT = 5.0


def _leave_open() -> None:
    """What closing a gateway does to a session it was lent: nothing."""


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
        body = kwargs.pop("json", None)
        if body is not None:
            # Encoded here rather than by requests: a batch of 1,000 operations is the
            # export's largest JSON (see jsoncodec).
            kwargs["data"] = jsoncodec.dumps_bytes(body)
            headers = kwargs.get("headers") or {}
            kwargs["headers"] = {**headers, "Content-Type": "application/json"}
        return self.session.request(**kwargs)


class Gateway:
    """Calls to one Mailchimp account.

    ``slots`` (shared through Redis) bounds the simultaneous calls of all workers; without
    it (no Redis configured, e.g. a one-off CLI lookup) calls are not counted.

    ``timeout`` is the read timeout (``MCSYNC_REQUEST_TIMEOUT``): how long Mailchimp may
    take to answer. ``connect_timeout`` (``MCSYNC_CONNECT_TIMEOUT``) bounds opening a
    connection, so an unreachable host fails fast instead of after the read timeout.
    The gateway keeps its connections open between calls; :meth:`close` (or dropping
    the gateway) closes them. ``session``: an HTTP session shared with other gateways
    (a worker's, see :func:`kept_connections`); its owner closes it, not the gateway.
    """

    def __init__(
        self,
        api_key: str,
        api_url: str,
        timeout: float,
        slots: ConnectionSlots | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        session: requests.Session | None = None,
    ) -> None:
        self.session = session if session is not None else requests.Session()
        # Closed with the gateway, so no socket is left for the garbage collector to warn
        # about; a shared session is left to its owner.
        self._close = weakref.finalize(self, self.session.close if session is None else _leave_open)
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

    def merge_fields(self, list_id: str) -> list[dict[str, Any]]:
        """The audience's merge fields: tag, name, type, required, options."""
        with self._call():
            data = self.client.lists.merge_fields.all(list_id, get_all=True)
        return list(data.get("merge_fields", []))

    def _member_path(self, list_id: str, email: str, skip_merge_validation: bool) -> str:
        path = f"lists/{list_id}/members/{subscriber_hash(email)}"
        return path + ("?skip_merge_validation=true" if skip_merge_validation else "")

    def upsert_member(
        self,
        list_id: str,
        email: str,
        status_if_new: str,
        merge_fields: dict[str, Any] | None = None,
        skip_merge_validation: bool = False,
        language: str | None = None,
    ) -> dict[str, Any]:
        """Create the member with ``status_if_new`` or update its merge fields.

        Never sends ``status``: an existing member's status (unsubscribed, cleaned,
        archived) stays.
        """
        body = member_body(email, status_if_new, merge_fields, language)
        with self._call():
            # mailchimp3's create_or_update cannot send a query parameter.
            return dict(
                self.client._put(
                    url=self._member_path(list_id, email, skip_merge_validation), data=body
                )
            )

    def _patch_member(
        self, list_id: str, email: str, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """PATCH a member's status, ``None`` when it is not in the audience.

        Always with ``skip_merge_validation=true``: Mailchimp validates the whole record on
        a PATCH, so an audience that gained a required field would otherwise refuse the
        opt-out (or the confirmation request) of a customer who never had that field.
        """
        try:
            with self._call():
                return dict(
                    self.client._patch(url=self._member_path(list_id, email, True), data=body)
                )
        except AccountError as exc:
            if exc.status == 404 and self._audience_exists(list_id):
                return None
            raise

    def unsubscribe_member(self, list_id: str, email: str) -> dict[str, Any] | None:
        """Unsubscribe a member who opted out in the shop; ``None`` if not in the audience."""
        return self._patch_member(list_id, email, {"status": "unsubscribed"})

    def ask_confirmation(self, list_id: str, email: str) -> dict[str, Any] | None:
        """Set an unsubscribed member to ``pending``: Mailchimp e-mails them to confirm.

        Only for someone who opted in again in the shop. Mailchimp refuses it for a
        cleaned address ("Member In Compliance State", raised as :class:`AddressError`).
        """
        return self._patch_member(list_id, email, {"status": "pending"})

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

    # --- both ways: webhooks and reading the audience ---------------------------------------

    def webhooks(self, list_id: str) -> list[dict[str, Any]]:
        """The audience's webhooks (id, url, events, sources)."""
        with self._call():
            data = self.client.lists.webhooks.all(list_id)
        return [dict(w) for w in data.get("webhooks", [])]

    def create_webhook(
        self, list_id: str, url: str, events: dict[str, bool], sources: dict[str, bool]
    ) -> dict[str, Any]:
        """Register a webhook; Mailchimp first checks the URL with a GET."""
        webhooks = self.client.lists.webhooks
        body = {"url": url, "events": events, "sources": sources}
        # mailchimp3's create() runs its own URL regex first, which refuses loopback and
        # private addresses (a shop tried on a LAN, the sandbox): Mailchimp's own check of
        # the URL (its GET) is the one that counts, and its refusal says why.
        with self._call():
            return dict(
                webhooks._mc_client._post(url=webhooks._build_path(list_id, "webhooks"), data=body)
            )

    def delete_webhook(self, list_id: str, webhook_id: str) -> bool:
        """Remove a webhook; ``False`` when it was already gone."""
        try:
            with self._call():
                self.client.lists.webhooks.delete(list_id, webhook_id)
        except AccountError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def members_page(
        self,
        list_id: str,
        *,
        offset: int,
        count: int,
        since_last_changed: str | None = None,
        status: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of members (only what reconcile reads) and the total to page through.

        Archived contacts are left out unless ``status="archived"`` asks for them.
        """
        params: dict[str, Any] = {
            "count": count,
            "offset": offset,
            "fields": "members.id,members.email_address,members.status,members.merge_fields,"
            "members.last_changed,members.contact_id,total_items",
        }
        if since_last_changed:
            params["since_last_changed"] = since_last_changed
        if status:
            params["status"] = status
        with self._call():
            data = self.client.lists.members.all(list_id, **params)
        return [dict(m) for m in data.get("members", [])], int(data.get("total_items") or 0)

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
                    messages.BATCH_GONE,
                    messages.BATCH_GONE_DETAIL(batch=batch_id, title=exc.title),
                    status=404,
                ) from exc
            raise

    def batch_results(
        self, url: str, fields: tuple[str, ...] | None = None
    ) -> list[dict[str, Any]]:
        """Every operation result of a finished batch, ``response`` decoded from JSON
        (only ``fields`` of each answered member, if given: see :func:`read_results_archive`).

        The archive lives on a file store, not the API: it needs no key and takes no
        connection slot. Results that are gone raise :class:`TransientError`, so the
        caller re-sends the batch rather than waiting on it forever.
        """
        with _translated():
            response = self.session.get(url, timeout=self.timeouts)
        if response.status_code in (403, 404, 410):
            raise BatchLost(
                messages.RESULTS_EXPIRED,
                messages.RESULTS_EXPIRED_DETAIL,
                status=response.status_code,
            )
        if response.status_code >= 400:
            raise error_from_response(response.status_code, None)
        return read_results_archive(response.content, fields)


def gateway_for(ext: McSync) -> Gateway:
    """A gateway to the Mailchimp account configured for ``ext``'s app.

    :raises ConfigError: when ``MCSYNC_API_KEY`` is not set.
    """
    config = ext.config
    if not config.api_key:
        raise ConfigError(
            "MCSYNC_API_KEY is not set: add your Mailchimp API key to the app config"
            " (or run the sandbox and point MCSYNC_API_URL at it)."
        )
    slots = None
    if config.redis_url and not ext.redis_offline:
        slots = ConnectionSlots(
            ext.redis,
            account=account_id(config.api_key),
            limit=config.max_connections,
            # A lease outlives the slowest possible request, then frees itself.
            lease_seconds=config.connect_timeout + config.request_timeout + 30,
            # Give up waiting well before the job's own lease runs out, so a job
            # stuck behind busy slots retries instead of being taken over mid-wait.
            wait_seconds=config.lease_seconds / 2,
        )
    return Gateway(
        config.api_key,
        config.api_url,
        config.request_timeout,
        slots,
        connect_timeout=config.connect_timeout,
        session=_kept_session(ext),
    )


@contextlib.contextmanager
def kept_connections(ext: McSync) -> Iterator[None]:
    """Within this block, every gateway made for ``ext`` in this thread shares one HTTP
    session.

    A worker runs its jobs in it: each auto-sync send and each poll is a job of its
    own, and with a gateway of their own each opened a new connection to Mailchimp
    (a TLS handshake, on the real service) for one request. Shared, the connection
    stays open from one job to the next.

    A connection idle for longer than :data:`KEPT_IDLE_SECONDS` is closed before the
    next job uses it. urllib3 notices a connection the server closed only once the
    close has arrived; one a NAT or load balancer dropped silently would hold the
    next request for the whole read timeout. A connection that fails mid-request
    fails like any dropped connection, and the job's retry covers it.

    Only the thread and process that opened the block share it: a work horse forked
    per job (``MCSYNC_FORK_PER_JOB``) makes its own, never writing on its parent's
    sockets, and other threads (the admin pages') keep a session per gateway.
    """
    kept = KeptSession()
    previous = getattr(ext.kept_sessions, "value", None)
    ext.kept_sessions.value = kept
    try:
        yield
    finally:
        ext.kept_sessions.value = previous
        kept.session.close()


def _kept_session(ext: McSync) -> requests.Session | None:
    kept: KeptSession | None = getattr(ext.kept_sessions, "value", None)
    if kept is None or kept.pid != os.getpid():  # a forked child: not its sockets
        return None
    kept.freshen()
    return kept.session


#: Seconds a worker's kept connection may sit unused before it is closed rather than
#: reused: well under the idle limits of NAT gateways and load balancers (4-6 minutes
#: for the common clouds' NATs; 60 s for many load balancers).
KEPT_IDLE_SECONDS = 30.0


class KeptSession:
    """A worker thread's shared HTTP session and when it last answered a request."""

    def __init__(self) -> None:
        self.pid = os.getpid()  # a forked child inherits the thread's locals, not this
        self.session = requests.Session()
        self.used = time.monotonic()
        self.session.hooks["response"].append(self._answered)

    def _answered(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self.used = time.monotonic()

    def freshen(self) -> None:
        """Close the pooled connections if they sat idle too long (the session stays
        usable: the next request opens a new one)."""
        if time.monotonic() - self.used > KEPT_IDLE_SECONDS:
            self.session.close()
            self.used = time.monotonic()


def member_body(
    email: str,
    status_if_new: str,
    merge_fields: dict[str, Any] | None,
    language: str | None = None,
) -> dict[str, Any]:
    """The body of a member upsert, the same for a single call and a batch operation.

    ``language`` (``fr``, ``en``...) makes Mailchimp write to the contact in it.
    """
    body: dict[str, Any] = {"email_address": email.strip(), "status_if_new": status_if_new}
    if merge_fields:
        body["merge_fields"] = merge_fields
    if language:
        body["language"] = language
    return body


def read_results_archive(
    content: bytes, fields: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Parse a batch result archive: a tar.gz of JSON arrays of operation results.

    ``fields``: of a success (status below 400), read only these top-level fields of
    the member Mailchimp answered (:func:`~.jsoncodec.picked`); errors are always
    decoded whole.
    """
    results: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            handle = archive.extractfile(member)
            if handle is None:
                continue
            for item in jsoncodec.loads(handle.read()):
                raw = item.get("response")
                code = int(item.get("status_code") or 0)
                decoded = None
                if fields and code < 400 and isinstance(raw, str):
                    # A member's JSON runs to 5 KB at Mailchimp (its links): only the
                    # fields asked for are kept (a regular expression over the text, used
                    # before, cost twice the decoding).
                    decoded = jsoncodec.picked(raw, fields)
                if decoded is None:
                    try:
                        decoded = jsoncodec.loads(raw) if isinstance(raw, str) and raw else raw
                    except ValueError:
                        decoded = None
                results.append(
                    {
                        "status_code": code,
                        "operation_id": item.get("operation_id"),
                        "response": decoded if isinstance(decoded, dict) else {},
                    }
                )
    return results


# The fields of an answered member that say whether the write created it (was_created)
# and how it stands: all a batch's outcomes need of Mailchimp's answer.
MEMBER_FIELDS = ("status", "timestamp_opt", "last_changed", "timestamp_signup")


def was_created(member: dict[str, Any], status_if_new: str, since: datetime) -> bool:
    """Whether an upsert created the member rather than updating an existing one.

    Mailchimp answers both with 200 and the member. A member we just created has the
    status we asked for and an opt-in (subscribed) or last-change (pending) time at or
    after the request; an existing member keeps its older times or another status.
    A subscribed member changed after it opted in (``last_changed`` later than
    ``timestamp_opt``) existed before the write that answered: a create stamps both at
    once. That settles a member who opted in just before the send, whose opt-in time alone
    looks new (the seconds of clock skew we allow).
    A pending member that already existed and had its merge fields changed is counted as
    created: Mailchimp gives no way to tell the two apart.
    """
    if member.get("status") != status_if_new:
        return False
    field = "timestamp_opt" if status_if_new == "subscribed" else "last_changed"
    stamp = parse_time(member.get(field)) or parse_time(member.get("timestamp_signup"))
    if stamp is None or stamp < since.replace(microsecond=0):
        return False
    changed = parse_time(member.get("last_changed"))
    return field == "last_changed" or changed is None or changed <= stamp
