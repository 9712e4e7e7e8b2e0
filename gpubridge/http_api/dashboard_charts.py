"""The dashboard's spending chart: an SVG drawn on the server by pygal, inlined in the page, so
it shows without any script (pygal's own inline config script is left out)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from markupsafe import Markup

from gpubridge.gateway.usage import UsageReport
from gpubridge.money import micros_to_usd

if TYPE_CHECKING:
    from pygal.style import Style

COLORS = (
    "#2563eb",
    "#f59e0b",
    "#10b981",
    "#ef4444",
    "#8b5cf6",
    "#06b6d4",
    "#ec4899",
    "#84cc16",
    "#64748b",
    "#f97316",
)


@functools.cache
def _style() -> Style:
    """The chart's style; pygal is imported on the first chart drawn, not at start-up."""
    from pygal.style import Style

    return Style(
        background="transparent",
        plot_background="transparent",
        foreground="#1f2937",
        foreground_strong="#111827",
        foreground_subtle="#d1d5db",
        colors=COLORS,
        font_family="system-ui, -apple-system, 'Segoe UI', sans-serif",
        label_font_size=12,
        major_label_font_size=12,
        legend_font_size=13,
        value_font_size=11,
        tooltip_font_size=12,
    )


def _usd_label(value: float | None) -> str:
    return "" if value is None else f"${value:,.4f}".rstrip("0").rstrip(".")


def spending_chart(report: UsageReport) -> Markup | None:
    """Spending per day over the report's days, stacked by service; None without spending."""
    if report.total_micros == 0:
        return None
    import pygal

    chart = pygal.StackedBar(
        style=_style(),
        js=[],
        width=900,
        height=320,
        disable_xml_declaration=True,
        legend_at_bottom=True,
        legend_at_bottom_columns=min(5, max(1, len(report.spending))),
        show_minor_x_labels=False,
        x_labels_major_every=7,
        truncate_legend=-1,
        truncate_label=-1,
        value_formatter=_usd_label,
        margin=8,
        spacing=12,
    )
    chart.x_labels = [day.strftime("%b %d") for day in report.days]
    for service, micros in report.spending.items():
        chart.add(service, [micros_to_usd(m) if m else None for m in micros])
    tree = chart.render_tree()
    for parent in tree.iter():
        for child in list(parent):
            if child.tag == "script":
                parent.remove(child)
    tree.set("role", "img")
    tree.set("aria-label", f"Spending per day over the last {len(report.days)} days, by service")
    tree.set("id", "spending-chart")
    svg = ElementTree.tostring(tree, encoding="unicode")
    # pygal scopes its stylesheet to the id it gave the chart; keep the two in step.
    return Markup(svg.replace(f"#chart-{chart.uuid}", "#spending-chart"))  # noqa: S704
