"""The spending chart: an SVG drawn on the server, one stacked series per service."""

from __future__ import annotations

from datetime import date, timedelta
from xml.etree import ElementTree

from gpubridge.gateway.usage import UsageReport
from gpubridge.http_api.dashboard_charts import spending_chart

SVG = "{http://www.w3.org/2000/svg}"
DAYS = [date(2026, 11, 6) + timedelta(days=n) for n in range(30)]


def report(spending: dict[str, list[int]]) -> UsageReport:
    return UsageReport(DAYS, spending, [])


def test_no_spending_draws_no_chart() -> None:
    assert spending_chart(report({})) is None
    assert spending_chart(report({"llm-4090": [0] * 30})) is None


def test_the_chart_is_a_script_free_svg_with_a_series_per_service() -> None:
    llm = [0] * 29 + [3_000]
    embeddings = [10_000] + [0] * 28 + [2_500]
    chart = spending_chart(report({"embedding-l4": embeddings, "llm-4090": llm}))
    assert chart is not None
    root = ElementTree.fromstring(str(chart))
    assert root.tag == f"{SVG}svg"
    assert root.get("id") == "spending-chart" and root.get("role") == "img"
    assert "last 30 days" in (root.get("aria-label") or "")
    assert not list(root.iter(f"{SVG}script"))
    texts = {"".join(node.itertext()).strip() for node in root.iter()}
    assert {"embedding-l4", "llm-4090"} <= texts
    assert "Nov 06" in texts  # the first day labels the axis
    # The stylesheet pygal scoped to its own id follows the id the page uses.
    style = "".join("".join(s.itertext()) for s in root.iter(f"{SVG}style"))
    assert "#spending-chart" in style and "#chart-" not in style
    # One bar per day with spending, per service: 2 for embeddings, 1 for the LLM.
    bars = [
        node
        for node in root.iter(f"{SVG}rect")
        if "rect" in (node.get("class") or "") and float(node.get("height") or 0) > 0
    ]
    assert len(bars) == 3


def test_service_names_are_escaped_in_the_svg() -> None:
    chart = spending_chart(report({"<b>x</b>": [1_000] * 30}))
    assert chart is not None
    assert "<b>" not in str(chart) and "&lt;b&gt;" in str(chart)
