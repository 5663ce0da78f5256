"""Before an export: what it would send, and whether Mailchimp would refuse some of it.

Mailchimp refuses a member whose record lacks a required merge field, on creation and
on every update of an existing member (it validates the whole record), unless the call
carries ``skip_merge_validation=true``. An audience that gained a required field the
shop does not fill would refuse a whole export. So the export window, ``flask mcsync
preview`` and ``flask mcsync export`` all ask :func:`preview` / :func:`unmapped_required`
first, and say which required fields the shop does not fill and how many addresses
Mailchimp would refuse. The owner fixes the mapping, or goes on with
``skip_merge_validation`` (recorded on the run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from .app_state import McSync
from .eligibility import Tally, scan
from .errors import ConfigError
from .exclusions import load_ruleset
from .gateway import MailchimpError, gateway_for
from .merge_values import convert_all, field_types
from .source import SubscriberSource
from .throttle import SlotTimeout

# Mailchimp's address field is implicit and filled by the address itself.
IMPLICIT_TAGS = {"EMAIL"}


@dataclass
class MergeCheck:
    """The audience's required merge fields set against the shop's mapping."""

    required: list[dict[str, str]] = field(default_factory=list)  # tag, name
    unmapped: list[dict[str, str]] = field(default_factory=list)  # required, not mapped
    blank: dict[str, int] = field(default_factory=dict)  # mapped required tag → blank rows
    refused: int = 0  # addresses Mailchimp would refuse (at most)
    error: str | None = None  # Mailchimp could not be asked

    @property
    def ok(self) -> bool:
        return not self.unmapped and not self.refused

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "required": self.required,
            "unmapped": self.unmapped,
            "blank": self.blank,
            "refused": self.refused,
            "error": self.error,
            "message": self.message(),
        }

    def message(self) -> str | None:
        if self.error:
            return self.error
        if self.ok:
            return None
        parts = []
        if self.unmapped:
            parts.append(
                "The audience requires merge field(s) the shop does not fill: "
                + ", ".join(_describe(f) for f in self.unmapped)
                + "."
            )
        for tag, count in self.blank.items():
            parts.append(f"{count} address(es) have no value for the required field {tag}.")
        parts.append(
            f"Mailchimp would refuse up to {self.refused} address(es). Map the field(s) in"
            " the shop's SubscriberSource(merge_fields=...), or export with"
            " skip_merge_validation (Mailchimp then accepts the members without them)."
        )
        return " ".join(parts)


def _describe(f: dict[str, str]) -> str:
    return f"{f['tag']} ({f['name']})" if f["name"] and f["name"] != f["tag"] else f["tag"]


def audience_types(ext: McSync, list_id: str) -> dict[str, dict[str, Any]]:
    """The audience's merge fields by tag. Raises MailchimpError / SlotTimeout."""
    return field_types(gateway_for(ext).merge_fields(list_id))


def types_or_none(ext: McSync, list_id: str) -> dict[str, dict[str, Any]] | None:
    """The field types, or ``None`` when Mailchimp cannot be asked now.

    Without types, :mod:`merge_values` still never sends a boolean or a raw date; a
    sync must not stop because this lookup failed (its own call would fail too, and be
    retried).
    """
    try:
        return audience_types(ext, list_id)
    except (MailchimpError, SlotTimeout, ConfigError, RedisError):
        return None


#: How long one process reuses an audience's field types for single-address syncs.
FIELD_TYPES_MAX_AGE = 60.0


def recent_types(
    ext: McSync, list_id: str, fresh: bool = False
) -> tuple[dict[str, dict[str, Any]] | None, bool]:
    """:func:`types_or_none`, read at most once a minute per process and audience, and
    whether they were kept from an earlier read. ``fresh``: read them now.

    For single-address syncs (auto-sync, opt-outs, re-syncs): a drain job sends row
    after row, and asking Mailchimp for the field types before each PUT doubled the
    requests per signup (and took a connection slot each time). Mailchimp does not
    change a field's type in place, but an owner may delete a field and make it again
    with another type, or change a date format: for up to a minute the old type is then
    used. A PUT Mailchimp refuses with kept types is sent once more with fresh ones
    (:func:`~flask_mcsync.single_sync.perform`), so a refusal is never the cache's; a
    date format changed within the minute can reach Mailchimp in the old format. The
    diagnostic's re-sync always reads them fresh. A failed lookup is not kept.
    """
    now = time.monotonic()
    kept = ext.field_types.get(list_id)
    if not fresh and kept is not None and now - kept[0] < FIELD_TYPES_MAX_AGE:
        return kept[1], True
    types = types_or_none(ext, list_id)
    if types is not None:
        ext.field_types[list_id] = (now, types)
    return types, False


def _required(types: dict[str, dict[str, Any]], source: SubscriberSource) -> MergeCheck:
    check = MergeCheck()
    mapped = {tag.upper() for tag in source.merge_fields}
    for tag, spec in types.items():
        if not spec["required"] or tag in IMPLICIT_TAGS:
            continue
        item = {"tag": tag, "name": str(spec["name"])}
        check.required.append(item)
        if tag not in mapped:
            check.unmapped.append(item)
    return check


def unmapped_required(ext: McSync, source: SubscriberSource, list_id: str) -> list[dict[str, str]]:
    """Required fields of the audience the mapping leaves out (``[]`` if unknown now)."""
    types = types_or_none(ext, list_id)
    return _required(types, source).unmapped if types is not None else []


def refusal_message(unmapped: list[dict[str, str]]) -> str:
    return (
        "The audience requires merge field(s) the shop does not fill: "
        + ", ".join(_describe(f) for f in unmapped)
        + ". Mailchimp would refuse the addresses without them. Map the field(s) in the"
        " shop's SubscriberSource(merge_fields=...), or export with skip_merge_validation"
        " (the checkbox in the export window, --skip-merge-validation on the command line)."
    )


def preview(ext: McSync, list_id: str | None) -> dict[str, Any]:
    """What an export would do now (the counts) and the merge field check, in one read.

    The export window and ``flask mcsync preview`` both show this.
    """
    session = ext.session
    source = ext.require_source()
    types: dict[str, dict[str, Any]] | None = None
    check = MergeCheck()
    if list_id:
        try:
            types = audience_types(ext, list_id)
        except (MailchimpError, SlotTimeout, ConfigError, RedisError) as exc:
            check.error = f"Could not read the audience's merge fields from Mailchimp: {exc}"
    if types is not None:
        check = _required(types, source)
    required_mapped = [f["tag"] for f in check.required if f not in check.unmapped]
    counts = Tally()
    refused = 0
    for page in scan(session, source, load_ruleset(session)):
        for row, verdict in page:
            counts.add(verdict)
            if not verdict.send or not required_mapped:
                continue
            values = {k.upper(): v for k, v in convert_all(row.merge_fields, types).items()}
            blanks = [t for t in required_mapped if str(values.get(t, "")).strip() == ""]
            for tag in blanks:
                check.blank[tag] = check.blank.get(tag, 0) + 1
            refused += bool(blanks)
    check.refused = counts.send if check.unmapped else refused
    return {"counts": counts.as_dict(), "merge_fields": check.as_dict()}
