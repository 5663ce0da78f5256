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

MAX_LENGTH = 254  # RFC 5321 path limit; Mailchimp refuses longer addresses.
MAX_LOCAL_LENGTH = 64

_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TLD_RE = re.compile(r"^([a-z]{2,63}|xn--[a-z0-9-]{1,59})$")


def normalize(raw: str) -> str:
    """The identity of an address: surrounding white space removed, lower-cased."""
    return raw.strip().lower()


def subscriber_hash(raw: str) -> str:
    """Mailchimp's member id: the MD5 hex digest of the normalised address."""
    return hashlib.md5(normalize(raw).encode("utf-8"), usedforsecurity=False).hexdigest()


def invalid_reason(raw: str | None) -> str | None:
    """``None`` when the address can be sent to Mailchimp, else why not (one sentence)."""
    if raw is None or not raw.strip():
        return "The address is empty."
    address = raw.strip()
    if len(address) > MAX_LENGTH:
        return f"The address is longer than {MAX_LENGTH} characters."
    if not address.isascii():
        return "The address has non-ASCII characters, which Mailchimp does not accept."
    if address.count("@") != 1:
        return "The address must contain exactly one '@'."
    local, domain = address.rsplit("@", 1)
    if not local:
        return "Nothing stands before the '@'."
    if len(local) > MAX_LOCAL_LENGTH:
        return f"The part before the '@' is longer than {MAX_LOCAL_LENGTH} characters."
    if not _LOCAL_RE.match(local):
        return (
            "The part before the '@' has a character or dot placement that e-mail does not"
            " allow (spaces, quotes, commas, two dots in a row, a dot at either end)."
        )
    labels = domain.lower().split(".")
    if len(labels) < 2:
        return "The domain has no dot: a full domain such as 'example.org' is needed."
    if not all(_LABEL_RE.match(label) for label in labels):
        return "The domain is malformed (empty part, bad character, or a '-' at an edge)."
    if not _TLD_RE.match(labels[-1]):
        return f"The domain ends in '.{labels[-1]}', which is not a top-level domain."
    return None
