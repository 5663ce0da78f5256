"""A small client of the sandbox control API, for tests and the demo."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from .state import DEFAULT_LIST_ID


class SandboxError(RuntimeError):
    """The control API refused a request."""


class SandboxClient:
    """Talks to ``/_sandbox/`` of a running sandbox; every call has a timeout."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        # Accept the API URL too, so callers can pass whichever they have at hand.
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/3.0")] if base.endswith("/3.0") else base
        self.timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self._session.request(
            method, f"{self.base_url}/_sandbox{path}", json=body, timeout=self.timeout
        )
        if response.status_code >= 400:
            raise SandboxError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self) -> None:
        """Back to the initial account: default audience, no members, faults or batches."""
        self._call("POST", "/reset")

    def create_list(
        self,
        name: str,
        merge_fields: list[dict[str, Any]] | None = None,
        *,
        list_id: str | None = None,
        double_optin: bool = False,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "double_optin": double_optin}
        if merge_fields is not None:
            body["merge_fields"] = merge_fields
        if list_id is not None:
            body["id"] = list_id
        result: dict[str, Any] = self._call("POST", "/lists", body)
        return result

    def lists(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/lists")["lists"]
        return result

    def seed_members(
        self, list_id: str = DEFAULT_LIST_ID, members: list[dict[str, Any]] | None = None
    ) -> dict[str, int]:
        """Insert members as given (any status, no validation).

        Each member may carry ``opt_out_source`` ("user", "admin", "api", "abuse") to say
        how an unsubscribed member left (it decides whether Mailchimp lets them back), and
        ``unsubscribe_reason``, ``last_changed``, ``timestamp_opt``, ``unsubscribed_at``.
        """
        result: dict[str, int] = self._call(
            "POST", f"/lists/{list_id}/members", {"members": members or []}
        )
        return result

    def forget(self, list_id: str, emails: list[str]) -> None:
        """Mark addresses as permanently deleted in the list."""
        self._call("POST", f"/lists/{list_id}/forgotten", {"emails": emails})

    def members(self, list_id: str = DEFAULT_LIST_ID) -> dict[str, Any]:
        """All members (``members``) plus ``counts`` by status."""
        result: dict[str, Any] = self._call("GET", f"/lists/{list_id}/members")
        return result

    def member(self, list_id: str, email: str) -> dict[str, Any] | None:
        """One member by address or hash, or None when the list does not hold it."""
        response = self._session.get(
            f"{self.base_url}/_sandbox/lists/{list_id}/members/{quote(email, safe='')}",
            timeout=self.timeout,
        )
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise SandboxError(f"member {email}: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def confirmation_emails(self, list_id: str = DEFAULT_LIST_ID) -> list[dict[str, str]]:
        """Confirmation e-mails "sent" (a member set to pending): email_address, sent_at."""
        result: list[dict[str, str]] = self._call("GET", f"/lists/{list_id}/confirmation-emails")[
            "confirmation_emails"
        ]
        return result

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Merge fault settings (latency_ms, error_rates, next, ...); returns them all."""
        result: dict[str, Any] = self._call("POST", "/faults", settings)
        return result

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/faults")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def add_key(self, key: str) -> None:
        """Accept another API key (e.g. one with a different datacenter suffix)."""
        self._call("POST", "/keys", {"api_key": key})

    # --- Changes made in Mailchimp, with their webhook callbacks --------------------------
    # Each returns {"member": <member after the change>, "deliveries": [<callbacks made>]}
    # once the callbacks were delivered (or failed).

    def _member_event(self, list_id: str, email: str, event: str, body: dict[str, Any]) -> Any:
        return self._call("POST", f"/lists/{list_id}/members/{quote(email, safe='')}/{event}", body)

    def unsubscribe(
        self,
        list_id: str,
        email: str,
        *,
        reason: str = "manual",
        action: str = "unsub",
        source: str = "user",
        campaign_id: str = "",
        unsubscribe_reason: str = "",
    ) -> dict[str, Any]:
        """The person unsubscribes themselves (source "user") or an admin does ("admin").

        reason "abuse" is a spam complaint; action "delete" is an admin deleting
        (archiving) the contact.
        """
        result: dict[str, Any] = self._member_event(
            list_id,
            email,
            "unsubscribe",
            {
                "reason": reason,
                "action": action,
                "source": source,
                "campaign_id": campaign_id,
                "unsubscribe_reason": unsubscribe_reason,
            },
        )
        return result

    def confirm(self, list_id: str, email: str, *, ip_opt: str = "") -> dict[str, Any]:
        """The person confirms a pending subscription (the link in Mailchimp's e-mail)."""
        result: dict[str, Any] = self._member_event(list_id, email, "confirm", {"ip_opt": ip_opt})
        return result

    def clean(
        self, list_id: str, email: str, *, reason: str = "hard", campaign_id: str = ""
    ) -> dict[str, Any]:
        """A bounce cleans the address (reason "hard" or "abuse")."""
        result: dict[str, Any] = self._member_event(
            list_id, email, "clean", {"reason": reason, "campaign_id": campaign_id}
        )
        return result

    def edit_profile(
        self, list_id: str, email: str, merge_fields: dict[str, Any], *, source: str = "user"
    ) -> dict[str, Any]:
        """The person (or an admin) changes merge fields on Mailchimp's profile page."""
        result: dict[str, Any] = self._member_event(
            list_id, email, "profile", {"merge_fields": merge_fields, "source": source}
        )
        return result

    def change_address(
        self, list_id: str, email: str, new_email: str, *, source: str = "user"
    ) -> dict[str, Any]:
        """The contact's address is changed in Mailchimp (its subscriber hash changes)."""
        result: dict[str, Any] = self._member_event(
            list_id, email, "change-address", {"new_email": new_email, "source": source}
        )
        return result

    def webhook_deliveries(
        self, list_id: str | None = None, *, settle: bool = True
    ) -> list[dict[str, Any]]:
        """Webhook callbacks made so far: list_id, type, source, url, payload, status_code,
        error. With settle, first waits for callbacks still queued."""
        query = f"?settle={int(settle)}" + (f"&list_id={quote(list_id)}" if list_id else "")
        result: list[dict[str, Any]] = self._call("GET", f"/webhook-deliveries{query}")[
            "deliveries"
        ]
        return result

    def clear_webhook_deliveries(self) -> None:
        self._call("DELETE", "/webhook-deliveries")

    def add_marketing_permission(
        self, list_id: str, text: str, marketing_permission_id: str | None = None
    ) -> list[dict[str, str]]:
        """Give the audience a GDPR marketing permission (e.g. "Email"); returns them all."""
        body: dict[str, str] = {"text": text}
        if marketing_permission_id is not None:
            body["marketing_permission_id"] = marketing_permission_id
        result: list[dict[str, str]] = self._call(
            "POST", f"/lists/{list_id}/marketing-permissions", body
        )["marketing_permissions"]
        return result

    def marketing_permissions(self, list_id: str) -> list[dict[str, str]]:
        result: list[dict[str, str]] = self._call("GET", f"/lists/{list_id}/marketing-permissions")[
            "marketing_permissions"
        ]
        return result
