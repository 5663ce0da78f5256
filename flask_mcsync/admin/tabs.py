"""The tabs of the admin layout.

Tabs whose view is not registered are hidden, so a page added later (the "Sync status"
dashboard, its "Diagnostic tool" subtab) appears by registering its endpoint, without
touching the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request


@dataclass(frozen=True)
class Tab:
    endpoint: str
    label: str
    parent: str | None = None  # the endpoint of the tab this one is a subtab of
    # Endpoints that render this tab's page too (a form shown again with its errors).
    also: tuple[str, ...] = ()

    def shows(self, endpoint: str) -> bool:
        return endpoint == self.endpoint or endpoint in self.also


TABS = (
    Tab(
        "mcsync.settings_page",
        "General settings",
        also=(
            "mcsync.save_settings",
            "mcsync.add_rule",
            "mcsync.remove_rule",
            "mcsync.register_webhook",
            "mcsync.remove_webhook",
        ),
    ),
    Tab("mcsync.sync_page", "Users list synching"),
    Tab("mcsync.status_page", "Sync status", also=("mcsync.run_page",)),
    Tab("mcsync.diagnostic_page", "Diagnostic tool", parent="mcsync.status_page"),
    Tab(
        "mcsync.drift_page",
        "Drift report",
        parent="mcsync.status_page",
        also=("mcsync.start_reconcile",),
    ),
)


@dataclass(frozen=True)
class TabView:
    tab: Tab
    active: bool
    children: tuple[TabView, ...] = ()


def visible_tabs() -> list[TabView]:
    """Top-level tabs that exist, the current one marked, each with its subtabs."""
    views = current_app.view_functions
    here = request.endpoint or ""
    result = []
    for tab in TABS:
        if tab.parent is not None or tab.endpoint not in views:
            continue
        children = tuple(
            TabView(child, child.shows(here))
            for child in TABS
            if child.parent == tab.endpoint and child.endpoint in views
        )
        active = tab.shows(here) or any(c.active for c in children)
        result.append(TabView(tab, active, children))
    return result
