"""The status page's per-day chart: the SVG geometry, so the template only places rectangles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..i18n import format_day

CHART_WIDTH = 1000
CHART_HEIGHT = 220
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 8, 12, 28
# Room per character of a y-axis label (12 px text: digits are ~7 px wide), and between
# the label and the plot.
AXIS_CHAR_WIDTH, AXIS_GAP = 7, 10
MAX_X_LABELS = 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class ChartDay:
    day: str
    synced: int
    failed: int
    skipped: int
    synced_bar: Bar
    failed_bar: Bar
    label: str | None  # the x-axis label under this day, if it gets one
    label_x: float
    slot_x: float  # the day's whole column: hovering it shows the day's figures
    slot_width: float


def _nice_max(value: int) -> int:
    """The y axis top: 1, 2 or 5 times a power of ten, at least ``value``."""
    if value <= 0:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def draw_chart(daily: list[dict[str, Any]], days: int) -> dict[str, Any]:
    """Geometry of the bars, computed here so the template only places rectangles."""
    top = _nice_max(max([max(d["synced"], d["failed"]) for d in daily] or [0]))
    # The left margin holds the longest y label, the top one: "2,000,000" did not fit in
    # a fixed 48 and was cut to "00,000". Grouping adds as many characters in every
    # language as the comma does here.
    pad_left = max(PAD_LEFT, AXIS_GAP + AXIS_CHAR_WIDTH * len(f"{top:,}"))
    plot_w = CHART_WIDTH - pad_left - PAD_RIGHT
    plot_h = CHART_HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / max(len(daily), 1)
    bar_w = max(slot * 0.38, 0.6)
    every = max(1, -(-len(daily) // MAX_X_LABELS))
    base = PAD_TOP + plot_h

    def bar(value: int, x: float) -> Bar:
        height = plot_h * value / top
        if value:
            height = max(height, 3.0)  # a single address still shows
        return Bar(round(x, 2), round(base - height, 2), round(bar_w, 2), round(height, 2))

    out = []
    for i, d in enumerate(daily):
        left = pad_left + i * slot + (slot - 2 * bar_w) / 2
        last = i == len(daily) - 1
        labelled = (len(daily) - 1 - i) % every == 0 or (len(daily) <= MAX_X_LABELS) or last
        out.append(
            ChartDay(
                day=d["day"],
                synced=d["synced"],
                failed=d["failed"],
                skipped=d["skipped"],
                synced_bar=bar(d["synced"], left),
                failed_bar=bar(d["failed"], left + bar_w),
                label=format_day(d["day"], short=True) if labelled else None,
                label_x=round(pad_left + (i + 0.5) * slot, 2),
                slot_x=round(pad_left + i * slot, 2),
                slot_width=round(slot, 2),
            )
        )
    ticks = [
        {"value": v, "y": round(base - plot_h * v / top, 2)} for v in sorted({0, top // 2, top})
    ]
    synced = sum(d["synced"] for d in daily)
    failed = sum(d["failed"] for d in daily)
    busiest = max(daily, key=lambda d: d["synced"] + d["failed"], default=None)
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": pad_left,
        "right": CHART_WIDTH - PAD_RIGHT,
        "top": PAD_TOP,
        "base": base,
        "days": out,
        "ticks": ticks,
        "synced": synced,
        "failed": failed,
        "busiest": busiest if busiest and busiest["synced"] + busiest["failed"] else None,
        "period_days": days,
    }
