"""The template filters and globals the admin pages register app-wide (``mcsync_*``).

App-wide because the host's own templates may show our figures too (a dashboard tile);
the ``mcsync_`` prefix keeps them out of the host's names.
"""

from __future__ import annotations

from flask import Blueprint

from .. import i18n, messages
from ..outcomes import outcome_label, run_label
from ..times import parse_time


def register(bp: Blueprint) -> None:
    bp.app_template_filter("mcsync_number")(i18n.format_number)
    bp.app_template_filter("mcsync_datetime")(i18n.format_datetime)
    bp.app_template_filter("mcsync_duration")(i18n.format_duration)
    bp.app_template_filter("mcsync_day")(i18n.format_day)
    bp.app_template_filter("mcsync_stored")(messages.translate)
    bp.app_template_filter("mcsync_time")(parse_time)
    bp.app_template_global("mcsync_run_label")(run_label)
    bp.app_template_global("mcsync_outcome_label")(outcome_label)
