"""In-memory state of one emulated Mailchimp account.

Everything that several server threads and the batch worker touch lives here behind a
single re-entrant lock: one lock keeps the rules simple (no lock ordering to get wrong),
and the work done while holding it is a few dictionary operations per request.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, overload

from .results import CompactResults

if TYPE_CHECKING:
    from .interests import Interest, InterestCategory
    from .webhooks import Webhook

DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef-us1"
DEFAULT_LIST_ID = "a1b2c3d4e5"
DEFAULT_LIST_NAME = "Demo shop newsletter"

# Statuses a member can have; "archived" is what DELETE leaves behind.
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
# Statuses a client may ask for (Mailchimp refuses to create or set "archived").
SETTABLE_STATUSES = STATUSES[:-1]


# The last timestamp string made: members changed in the same second share one string
# object instead of a copy each (a 1M-member export keeps memory in check).
_last_stamp: tuple[int, str] = (0, "")

# Process-wide secret that turns a subscriber hash into a stable contact_id (no index).
_CONTACT_KEY = secrets.randbits(128)


def now_iso() -> str:
    """Mailchimp's timestamp format: ISO 8601, whole seconds, explicit UTC offset."""
    global _last_stamp
    now = datetime.now(timezone.utc).replace(microsecond=0)
    second = int(now.timestamp())
    cached = _last_stamp
    if cached[0] == second:
        return cached[1]
    stamp = now.isoformat()
    _last_stamp = (second, stamp)
    return stamp


class _FrozenList(list[Any]):
    """The empty list new members share: changing it in place is a bug, so it raises."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("shared empty list: assign a new list instead of changing it")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse


class _FrozenDict(dict[str, Any]):
    """The empty dict new members share: changing it in place is a bug, so it raises."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("shared empty dict: assign a new dict instead of changing it")

    update = setdefault = pop = popitem = clear = _refuse
    __setitem__ = __delitem__ = __ior__ = _refuse


# 1M members with their own empty tags/interests/permissions would spend ~180 MB on them.
_NO_TAGS: list[Any] = _FrozenList()
_NO_FLAGS: dict[str, Any] = _FrozenDict()


def contact_id_for(key: str) -> str:
    """The contact_id of the member with subscriber hash ``key`` (and back: an involution)."""
    return f"{int(key, 16) ^ _CONTACT_KEY:032x}"


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased address."""
    return hashlib.md5(email.lower().encode("utf-8")).hexdigest()


@dataclass
class MergeField:
    tag: str
    name: str
    merge_id: int
    type: str = "text"
    required: bool = False
    default_value: str = ""
    public: bool = True
    display_order: int = 0
    # Type-specific: size (text), choices (radio/dropdown), date_format, phone_format...
    options: dict[str, Any] = field(default_factory=dict)
    help_text: str = ""

    def to_json(self, list_id: str) -> dict[str, Any]:
        options = dict(self.options)
        if self.type == "text":
            options.setdefault("size", 25)
        return {
            "merge_id": self.merge_id,
            "tag": self.tag,
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "default_value": self.default_value,
            "public": self.public,
            "display_order": self.display_order or self.merge_id,
            "options": options,
            "help_text": self.help_text,
            "list_id": list_id,
            "_links": [],
        }


# Member attributes most members never change from their default. They live in a small
# per-member dict created only when one is set: with a slot each, 1M members would spend
# ~130 MB on defaults (issue 10: the sandbox must stay under 1 GB for 1M addresses).
_RARE_DEFAULTS: dict[str, Any] = {
    "ip_signup": "",
    "source": "API - Generic",
    "email_type": "html",
    # {"id", "name", "date_added"} per tag; ids come from the audience's tag registry.
    "tags": _NO_TAGS,
    "language": "",
    "ip_opt": "",
    # Interest id -> member is in it; marketing permission id -> enabled.
    "interests": _NO_FLAGS,
    "marketing_permissions": _NO_FLAGS,
    "unsubscribe_reason": "",
    # How the member left (see compliance.py): "user", "admin", "api", "abuse" or "" —
    # Mailchimp keeps this apart from the status and it decides who may be resubscribed.
    "opt_out_source": "",
    "unsubscribed_at": "",
    # Set when the address changes, so the contact_id stays the member's; otherwise the
    # ids below are derived from the subscriber hash (nothing stored per member).
    "fixed_contact_id": "",
}


T = TypeVar("T")


class _Rare(Generic[T]):
    """A descriptor for one of _RARE_DEFAULTS: read the default unless it was set."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.default = _RARE_DEFAULTS[name]

    @overload
    def __get__(self, member: None, owner: type) -> _Rare[T]: ...

    @overload
    def __get__(self, member: Member, owner: type) -> T: ...

    def __get__(self, member: Member | None, owner: type) -> T | _Rare[T]:
        if member is None:
            return self
        rare = member._rare
        found: T = self.default if rare is None else rare.get(self.name, self.default)
        return found

    def __set__(self, member: Member, value: T) -> None:
        if value == self.default:
            # Back to the default (an empty dict/list counts): nothing stored per member.
            if member._rare is not None:
                member._rare.pop(self.name, None)
            return
        if member._rare is None:
            member._rare = {}
        member._rare[self.name] = value


class Member:
    """One contact of an audience (slotted: an export may hold a million of them)."""

    __slots__ = (
        "_rare",
        "email_address",
        "last_changed",
        "merge_fields",
        "status",
        "timestamp_opt",
        "timestamp_signup",
    )

    ip_signup = _Rare[str]()
    source = _Rare[str]()
    email_type = _Rare[str]()
    tags = _Rare[list[dict[str, Any]]]()
    language = _Rare[str]()
    ip_opt = _Rare[str]()
    interests = _Rare[dict[str, bool]]()
    marketing_permissions = _Rare[dict[str, bool]]()
    unsubscribe_reason = _Rare[str]()
    opt_out_source = _Rare[str]()
    unsubscribed_at = _Rare[str]()
    fixed_contact_id = _Rare[str]()

    def __init__(
        self,
        email_address: str,
        status: str,
        merge_fields: dict[str, Any],
        timestamp_signup: str,
        last_changed: str,
        timestamp_opt: str = "",
        **rare: Any,
    ) -> None:
        self.email_address = email_address
        self.status = status
        self.merge_fields = merge_fields
        self.timestamp_signup = timestamp_signup
        self.last_changed = last_changed
        self.timestamp_opt = timestamp_opt
        self._rare: dict[str, Any] | None = None
        for name, value in rare.items():
            if name not in _RARE_DEFAULTS:
                raise TypeError(f"Member() got an unexpected keyword argument {name!r}")
            setattr(self, name, value)

    @property
    def id(self) -> str:
        return subscriber_hash(self.email_address)

    @property
    def contact_id(self) -> str:
        return self.fixed_contact_id or contact_id_for(self.id)

    @property
    def unique_email_id(self) -> str:
        return self.contact_id[-10:]

    @property
    def web_id(self) -> int:
        return int(self.contact_id[:8], 16) % 10**9

    def touch(self) -> None:
        """Every change moves last_changed (the since_last_changed filter relies on it)."""
        self.last_changed = now_iso()

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.touch()
            if status == "subscribed":
                self.timestamp_opt = self.last_changed
                self.opt_out_source = ""
                self.unsubscribe_reason = ""


@dataclass
class Audience:
    id: str
    name: str
    merge_fields: list[MergeField]
    double_optin: bool = False
    date_created: str = field(default_factory=now_iso)
    # Keyed by subscriber hash; dicts keep insertion order, which is our paging order.
    members: dict[str, Member] = field(default_factory=dict)
    # Subscriber hashes of permanently deleted ("forgotten") addresses.
    forgotten: set[str] = field(default_factory=set)
    # Confirmation e-mails Mailchimp would have sent: (address, sent_at), in order.
    confirmation_emails: list[tuple[str, str]] = field(default_factory=list)
    # contact_id -> subscriber hash for members whose address changed (see members.py).
    contact_aliases: dict[str, str] = field(default_factory=dict)
    web_id: int = field(default_factory=lambda: secrets.randbelow(10**6))
    # Tag name -> tag id (Mailchimp's tags are static segments with an id per audience).
    tags: dict[str, int] = field(default_factory=dict)
    interest_categories: dict[str, InterestCategory] = field(default_factory=dict)
    interests: dict[str, Interest] = field(default_factory=dict)
    # GDPR fields: marketing_permission_id -> text. An audience with any is GDPR-enabled.
    marketing_permissions: dict[str, str] = field(default_factory=dict)
    webhooks: dict[str, Webhook] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        found = Counter(member.status for member in self.members.values())
        return {status: found.get(status, 0) for status in STATUSES}

    def to_json(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "id": self.id,
            "web_id": self.web_id,
            "name": self.name,
            "contact": {"company": "Sandbox shop", "country": "US"},
            "permission_reminder": "You signed up for our newsletter.",
            "use_archive_bar": True,
            "campaign_defaults": {"from_name": "Sandbox shop", "language": "en"},
            "email_type_option": False,
            "double_optin": self.double_optin,
            "marketing_permissions": bool(self.marketing_permissions),
            "list_rating": 0,
            "date_created": self.date_created,
            "visibility": "prv",
            "stats": {
                "member_count": counts["subscribed"],
                "total_contacts": sum(counts.values()) - counts["archived"],
                "unsubscribe_count": counts["unsubscribed"],
                "cleaned_count": counts["cleaned"],
                "member_count_since_send": counts["subscribed"],
                "unsubscribe_count_since_send": counts["unsubscribed"],
                "cleaned_count_since_send": counts["cleaned"],
                "campaign_count": 0,
                "merge_field_count": len(self.merge_fields),
            },
            "_links": [],
        }

    def member_json(self, member: Member) -> dict[str, Any]:
        # Mailchimp returns every merge field of the audience, empty ones as "".
        merge = {mf.tag: member.merge_fields.get(mf.tag, "") for mf in self.merge_fields}
        full_name = " ".join(
            str(part) for part in (merge.get("FNAME", ""), merge.get("LNAME", "")) if part
        )
        return {
            "id": member.id,
            "email_address": member.email_address,
            "unique_email_id": member.unique_email_id,
            "contact_id": member.contact_id,
            "full_name": full_name,
            "web_id": member.web_id,
            "email_type": member.email_type,
            "status": member.status,
            "consents_to_one_to_one_messaging": True,
            "merge_fields": merge,
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "ip_signup": member.ip_signup,
            "timestamp_signup": member.timestamp_signup,
            "ip_opt": member.ip_opt,
            "timestamp_opt": member.timestamp_opt,
            "member_rating": 2,
            "last_changed": member.last_changed,
            "language": member.language,
            "vip": False,
            "email_client": "",
            "location": {
                "latitude": 0,
                "longitude": 0,
                "gmtoff": 0,
                "dstoff": 0,
                "country_code": "",
                "timezone": "",
            },
            "source": member.source,
            "tags_count": len(member.tags),
            "tags": [{"id": tag["id"], "name": tag["name"]} for tag in member.tags],
            "list_id": self.id,
            "_links": [],
            **self._member_extras(member),
        }

    def _member_extras(self, member: Member) -> dict[str, Any]:
        # Mailchimp shows these keys only where the audience has such things.
        extras: dict[str, Any] = {}
        if self.interests:
            extras["interests"] = {i: member.interests.get(i, False) for i in self.interests}
        if self.marketing_permissions:
            extras["marketing_permissions"] = [
                {
                    "marketing_permission_id": pid,
                    "text": text,
                    "enabled": member.marketing_permissions.get(pid, False),
                }
                for pid, text in self.marketing_permissions.items()
            ]
        if member.status == "unsubscribed" and member.unsubscribe_reason:
            extras["unsubscribe_reason"] = member.unsubscribe_reason
        return extras


@dataclass
class Batch:
    id: str
    # The operations, compressed (results.pack_operations); emptied once the batch ran.
    packed_operations: bytes
    total_operations: int
    # Root URL of the sandbox as the submitting client saw it, for response_body_url.
    base_url: str
    status: str = "pending"
    submitted_at: str = field(default_factory=now_iso)
    # When it was submitted on the monotonic clock, for the batch start delay fault.
    submitted_monotonic: float = field(default_factory=time.monotonic)
    completed_at: str = ""
    finished_operations: int = 0
    errored_operations: int = 0
    results: CompactResults = field(default_factory=CompactResults)

    @property
    def response_body_url(self) -> str:
        if self.status != "finished":
            return ""
        return f"{self.base_url}_sandbox/batch-results/{self.id}.tar.gz"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "total_operations": self.total_operations,
            "finished_operations": self.finished_operations,
            "errored_operations": self.errored_operations,
            "submitted_at": self.submitted_at,
            "completed_at": self.completed_at,
            "response_body_url": self.response_body_url,
            "_links": [],
        }


@dataclass
class Stats:
    requests_by_method: Counter[str] = field(default_factory=Counter)
    requests_by_kind: Counter[str] = field(default_factory=Counter)
    responses_by_status: Counter[str] = field(default_factory=Counter)
    too_many_requests_sent: int = 0
    max_in_flight: int = 0
    batches_processed: int = 0
    operations_processed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_total": sum(self.requests_by_method.values()),
            "requests_by_method": dict(self.requests_by_method),
            "requests_by_kind": dict(self.requests_by_kind),
            "responses_by_status": dict(self.responses_by_status),
            "too_many_requests_sent": self.too_many_requests_sent,
            "max_in_flight": self.max_in_flight,
            "batches_processed": self.batches_processed,
            "operations_processed": self.operations_processed,
        }


def default_merge_fields() -> list[MergeField]:
    return [
        MergeField(tag="FNAME", name="First name", merge_id=1),
        MergeField(tag="LNAME", name="Last name", merge_id=2),
    ]


class AccountLock:
    """The account's re-entrant lock, which knows whether a thread waits for it.

    The batch thread takes it for each operation it runs, and took it again as soon as
    it let go: a request thread woken by the release had not run yet, so it waited
    again, up to the whole batch. A ``POST /batches`` waited 37-43 ms at the median
    (80-100 ms at the 90th percentile) while batches ran; 20 ms when :meth:`give_way`
    lets it in first (``benchmarks/bench_sandbox_latency.py``).

    What Mailchimp does: it answers ``POST /batches`` with the batch still "pending" and
    runs it later, one batch of an account at a time, where a batch can sit for minutes
    (../shared/MAILCHIMP.md), so taking a batch in does not wait for the ones running.
    How long its API takes to answer is not documented and not modelled here: a test
    that wants a slow Mailchimp sets the ``latency`` fault. This only keeps the sandbox
    from adding a wait Mailchimp has no reason to have.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._counting = threading.Lock()
        self.waiting = 0

    def __enter__(self) -> AccountLock:
        if not self._lock.acquire(blocking=False):
            with self._counting:
                self.waiting += 1
            try:
                self._lock.acquire()
            finally:
                with self._counting:
                    self.waiting -= 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def give_way(self) -> None:
        """Called by a thread that has just released the lock and will take it again at
        once: a thread that waits for it runs first (the OS wakes it; giving up the GIL
        lets it take the lock before this thread can)."""
        if self.waiting:
            time.sleep(0)


class SandboxState:
    """The account: audiences, API keys, batches and request statistics."""

    def __init__(self) -> None:
        self.lock = AccountLock()
        # Set whenever a batch is queued so the worker wakes without polling hard.
        self.batch_queued = threading.Event()
        self.keys: set[str] = set()
        self.lists: dict[str, Audience] = {}
        self.batches: dict[str, Batch] = {}
        self.stats = Stats()
        # In-flight requests per API key; deliberately NOT reset by reset(): requests
        # that are still running will decrement their own count when they finish.
        self.in_flight: Counter[str] = Counter()
        # Webhook callbacks waiting for the dispatcher thread, and those it has made.
        self.webhook_outbox: list[Any] = []
        self.webhook_queued = threading.Event()
        self.webhook_deliveries: list[dict[str, Any]] = []
        self.webhook_generation = 0
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.keys = {DEFAULT_API_KEY}
            self.lists = {}
            self.batches = {}
            self.stats = Stats()
            self.webhook_deliveries = []
            # Callbacks of the old account are not delivered (the one being delivered
            # right now finishes, but is not recorded: see events.WebhookDispatcher).
            for note in self.webhook_outbox[1:]:
                note.done.set()
            del self.webhook_outbox[1:]
            self.webhook_generation += 1
            self.create_list(DEFAULT_LIST_NAME, default_merge_fields(), list_id=DEFAULT_LIST_ID)

    def create_list(
        self,
        name: str,
        merge_fields: list[MergeField] | None = None,
        *,
        list_id: str | None = None,
        double_optin: bool = False,
    ) -> Audience:
        with self.lock:
            new_id = list_id or secrets.token_hex(5)
            audience = Audience(
                id=new_id,
                name=name,
                merge_fields=default_merge_fields() if merge_fields is None else merge_fields,
                double_optin=double_optin,
            )
            self.lists[new_id] = audience
            return audience

    def new_batch_id(self) -> str:
        # Unique for the life of the process, so results of a batch from before a
        # reset can never be confused with a new one.
        return f"{next(self._ids):04d}{secrets.token_hex(3)}"

    def unfinished_batches(self) -> int:
        with self.lock:
            return sum(1 for b in self.batches.values() if b.status != "finished")

    def next_unfinished_batch(self) -> Batch | None:
        with self.lock:
            for batch in self.batches.values():
                if batch.status != "finished":
                    return batch
            return None
