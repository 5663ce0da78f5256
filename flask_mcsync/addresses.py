"""What an e-mail address is to us: its identity, its Mailchimp id, and whether it is valid.

Mailchimp identifies a member by the MD5 of the lower-cased address, so two addresses
that differ only by case are one contact. We keep the address as the shop typed it for
display and send it unchanged (Mailchimp keeps the case it was given), but compare,
de-duplicate and hash on the normalised form.

Validation is deliberately a little stricter than Mailchimp's syntax check: anything it
or mailchimp3 would refuse is refused here first, with a reason the shop owner can act on,
so that a bad address costs no request and never fails a whole batch.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from .i18n import gettext as _

MAX_LENGTH = 254  # RFC 5321 path limit; Mailchimp refuses longer addresses.
MAX_LOCAL_LENGTH = 64

_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Mailchimp refuses these as "looks fake or invalid" (see MAILCHIMP.md), subdomains too.
FAKE_DOMAINS = ("example.com", "example.org", "example.net", "test.com")
RESERVED_TLDS = ("test", "invalid", "example", "localhost")

_TLD_RE = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


def normalize(raw: str) -> str:
    """The identity of an address: surrounding white space removed, lower-cased."""
    return raw.strip().lower()


# An export hashes each address where the planner checks it for duplicates, where it
# cuts the batch, in the operation's path, and where the outcome is recorded. Remembered
# here (about 4 MB for 16,384 addresses, several batches), each is hashed once; the
# outcome's too when the same worker planned the batch a few batches earlier.
@lru_cache(maxsize=16384)
def subscriber_hash(raw: str) -> str:
    """Mailchimp's member id: the MD5 hex digest of the normalised address."""
    return hashlib.md5(normalize(raw).encode("utf-8"), usedforsecurity=False).hexdigest()


def invalid_reason(raw: str | None, fake: bool = True) -> str | None:
    """``None`` when the address can be sent to Mailchimp, else why not (one sentence).

    ``fake=False`` checks the syntax only (an exclusion rule may name any address).
    """
    if raw is None or not raw.strip():
        return _("The address is empty.")
    address = raw.strip()
    if len(address) > MAX_LENGTH:
        return _("The address is longer than %(max)s characters.", max=MAX_LENGTH)
    if not address.isascii():
        return _("The address has non-ASCII characters, which Mailchimp does not accept.")
    if address.count("@") != 1:
        return _("The address must contain exactly one '@'.")
    local, domain = address.rsplit("@", 1)
    if not local:
        return _("Nothing stands before the '@'.")
    if len(local) > MAX_LOCAL_LENGTH:
        return _("The part before the '@' is longer than %(max)s characters.", max=MAX_LOCAL_LENGTH)
    if not _LOCAL_RE.match(local):
        return _(
            "The part before the '@' has a character or dot placement that e-mail does not"
            " allow (spaces, quotes, commas, two dots in a row, a dot at either end)."
        )
    if _good_domain(domain.lower()):
        return None  # the common case, decided once per domain
    return invalid_domain(domain) or (fake_domain(domain) if fake else None)


@lru_cache(maxsize=4096)
def _good_domain(domain: str) -> bool:
    """Whether ``domain`` is a well-formed domain Mailchimp does not call fake.

    A shop's addresses share a few thousand domains at most (gmail.com, its customers'
    companies), so an export of a million addresses checks each domain once, not each
    address: 3-4 % of the export's worker time in a profile (issue 10). Only the verdict
    is kept: the reason, when there is one, is said in the page's language each time.
    """
    return invalid_domain(domain) is None and fake_domain(domain) is None


def invalid_domain(domain: str) -> str | None:
    """Why ``domain`` cannot be an e-mail domain, or ``None``."""
    labels = domain.lower().split(".")
    if len(labels) < 2:
        return _("The domain has no dot: a full domain such as 'mailinator.com' is needed.")
    if not all(_LABEL_RE.match(label) for label in labels):
        return _("The domain is malformed (empty part, bad character, or a '-' at an edge).")
    if not _TLD_RE.match(labels[-1]):
        return _("The domain ends in '.%(tld)s', which is not a top-level domain.", tld=labels[-1])
    return None


def fake_domain(domain: str) -> str | None:
    """Why Mailchimp will refuse ``domain`` as fake, or ``None``.

    Mailchimp answers "looks fake or invalid" for the documentation domains and the
    reserved top-level domains (RFC 2606, RFC 6761), whatever the address: judging them
    here means the shop owner sees the reason before a sync rather than an error after.
    """
    name = domain.lower().rstrip(".")
    if any(name == d or name.endswith("." + d) for d in FAKE_DOMAINS):
        return _(
            "'%(domain)s' is a domain reserved for examples: Mailchimp refuses its addresses"
            " as fake.",
            domain=name,
        )
    tld = name.rpartition(".")[2]
    if tld in RESERVED_TLDS:
        return _(
            "'.%(tld)s' is a reserved top-level domain that receives no e-mail: Mailchimp"
            " refuses its addresses as fake.",
            tld=tld,
        )
    return None
