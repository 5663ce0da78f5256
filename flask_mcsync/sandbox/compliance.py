"""Mailchimp's compliance rules: who may be (re)subscribed, and the confirmation e-mail.

Mailchimp remembers *how* a member left, apart from the status. People who
unsubscribed themselves ("user"), were reported for abuse ("abuse") or bounced
(status "cleaned") are in a compliance state: ``status: subscribed`` is refused.
Members unsubscribed through the API ("api") or by an admin in Mailchimp's web app
("admin") can be resubscribed. ``status: pending`` makes Mailchimp send its
confirmation e-mail; that is how a shop honours a fresh opt-in from someone who
unsubscribed. The sandbox records each such e-mail on the audience so tests can see it.
"""

from __future__ import annotations

from .errors import ApiError
from .state import Audience, Member, now_iso

# Values of Member.opt_out_source (and of the control API's member seeding).
OPT_OUT_SOURCES = ("user", "admin", "api", "abuse")
# Sources that put an unsubscribed member in a compliance state.
_BLOCKING_SOURCES = ("user", "abuse")


def in_compliance_state(member: Member) -> bool:
    return member.status == "cleaned" or (
        member.status == "unsubscribed" and member.opt_out_source in _BLOCKING_SOURCES
    )


def compliance_error(member: Member) -> ApiError:
    return ApiError(
        400,
        "Member In Compliance State",
        f"{member.email_address} is in a compliance state due to unsubscribe, bounce, "
        "or compliance review and cannot be subscribed.",
    )


def change_status(audience: Audience, member: Member, target: str) -> None:
    """An explicit ``status`` sent through the API for an existing member."""
    if target == member.status:
        return
    if target == "subscribed" and in_compliance_state(member):
        raise compliance_error(member)
    # Uncertain in real Mailchimp: a confirmation e-mail to a bounced address or to
    # someone who reported abuse; refused here, the strict reading.
    if target == "pending" and (
        member.status == "cleaned"
        or (member.status == "unsubscribed" and member.opt_out_source == "abuse")
    ):
        raise compliance_error(member)
    enter_status(audience, member, target, source="api")


def enter_status(audience: Audience, member: Member, target: str, *, source: str) -> None:
    """Move a member to ``target``, recording how it left and any confirmation e-mail."""
    if target == member.status:
        return
    member.set_status(target)
    if target == "unsubscribed":
        member.opt_out_source = source
        member.unsubscribed_at = member.last_changed
    if target == "pending":
        send_confirmation(audience, member)


def send_confirmation(audience: Audience, member: Member) -> None:
    """Mailchimp e-mails a pending member a link to confirm (double opt-in)."""
    audience.confirmation_emails.append((member.email_address, now_iso()))
