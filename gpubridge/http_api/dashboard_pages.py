"""The dashboard's HTML: Jinja2 templates kept in code, rendered with autoescaping on."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from gpubridge.jobs.store import JobRecord
from gpubridge.money import micros_to_usd
from gpubridge.payments.packages import PACKAGES

if TYPE_CHECKING:
    from jinja2 import Environment

INPUT_PREVIEW_CHARS = 80

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gpubridge dashboard</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
form{margin:.5rem 0}label{margin-right:.5rem}input,select,button{font:inherit;padding:.2rem .4rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem;text-align:left;vertical-align:top}
.notice{background:#eef6ff;border:1px solid #9bc;padding:.5rem}
.error{background:#fff0f0;border:1px solid #c99;padding:.5rem}
.stats span{display:inline-block;margin-right:2rem}code{word-break:break-all}
</style></head><body>
<h1>gpubridge dashboard</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if notice %}<p class="notice" role="status">{{ notice }}</p>{% endif %}
{% block body %}{% endblock %}
</body></html>"""

_SIGN_IN = """{% extends "base" %}{% block body %}
<form method="post" action="/account/dashboard/sign-in">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<p><label for="email">Email</label><input id="email" name="email" type="email" required></p>
<p><label for="api_key">API key</label>
<input id="api_key" name="api_key" type="password" required autocomplete="off"></p>
<button type="submit">Sign in</button>
</form>{% endblock %}"""

_PACKAGE_SELECT = """<select name="package">{% for p in packages %}
<option value="{{ p.name }}"{% if p.name == selected %} selected{% endif %}>{{ p.label }}</option>
{% endfor %}</select>"""

_ACCOUNT = """{% extends "base" %}{% block body %}
<p>Signed in as <strong>{{ balance.email }}</strong></p>
<form method="post" action="/account/dashboard/sign-out">
<input type="hidden" name="csrf_token" value="{{ csrf }}"><button type="submit">Sign out</button>
</form>
<p class="stats">
<span>Balance: <strong id="balance">${{ "%.6f"|format(balance.balance) }}</strong></span>
<span>Spent today: ${{ "%.6f"|format(balance.daily_spend) }}
of ${{ "%.2f"|format(balance.daily_limit) }}</span>
<span>Discount tier: {{ balance.volume_discount.tier }}
({{ balance.volume_discount.discount_percent }}%)</span></p>

<h2>Top up by card</h2>
<form method="post" action="/account/dashboard/topup">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
{% with selected = None %}{% include "packages" %}{% endwith %}
<button type="submit">Pay by card</button></form>

<h2>Top up with USDC</h2>
{% if invoice %}<div class="notice" id="invoice">
<p>Send exactly <strong>{{ invoice.amount_usdc }} USDC</strong>
(network {{ invoice.network }}, chain id {{ invoice.chain_id }}) to
<code>{{ invoice.recipient }}</code> before {{ invoice.expires_at }}.</p>
<p>Token contract: <code>{{ invoice.asset }}</code>. Credits: ${{ invoice.credits_usd }}.
Invoice {{ invoice.invoice_id }} ({{ invoice.status }}).</p></div>{% endif %}
<form method="post" action="/account/dashboard/topup-crypto">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
{% with selected = None %}{% include "packages" %}{% endwith %}
<button type="submit">Get a USDC invoice</button></form>

<h2>Daily spending limit</h2>
<form method="post" action="/account/dashboard/daily-limit">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<label for="daily_limit">USD per day</label>
<input id="daily_limit" name="daily_limit" type="number" min="1" max="10000" step="0.01"
 value="{{ balance.daily_limit }}" required>
<button type="submit">Save limit</button></form>

<h2>Auto top-up</h2>
{% if auto %}<p>Auto top-up is <strong>{{ "on" if auto.enabled else "off" }}</strong>
{% if auto.enabled %}(below ${{ auto.threshold }}, buys {{ auto.package }}){% endif %};
saved card: {{ "yes" if auto.card_saved else "no (top up by card once first)" }}.</p>{% endif %}
<form method="post" action="/account/dashboard/auto-topup">
<input type="hidden" name="csrf_token" value="{{ csrf }}">
<label><input type="checkbox" name="enabled" value="1"
{% if auto and auto.enabled %} checked{% endif %}> enabled</label>
<label for="threshold">when balance is below USD</label>
<input id="threshold" name="threshold" type="number" min="1" max="10000" step="0.01"
 value="{{ auto.threshold if auto and auto.threshold is not none else 1 }}">
{% with selected = auto.package if auto else None %}{% include "packages" %}{% endwith %}
<button type="submit">Save auto top-up</button></form>

<h2>Jobs</h2>
{% if jobs %}<table id="jobs"><thead><tr><th>Created</th><th>Job</th><th>Service</th>
<th>Status</th><th>Cost</th><th>Refunded</th><th>Input</th></tr></thead><tbody>
{% for job in jobs %}<tr><td>{{ job.created }}</td><td><code>{{ job.id }}</code></td>
<td>{{ job.service }}</td><td>{{ job.status }}{% if job.error %}: {{ job.error }}{% endif %}</td>
<td>{{ job.cost }}</td><td>{{ job.refunded }}</td><td><code>{{ job.input }}</code></td></tr>
{% endfor %}</tbody></table>
<p>Jobs {{ offset + 1 }} to {{ offset + jobs|length }} of {{ total }}.
{% if offset > 0 %}<a href="/account/dashboard?offset={{ prev_offset }}">Newer</a>{% endif %}
{% if offset + jobs|length < total %}
<a href="/account/dashboard?offset={{ offset + jobs|length }}">Older</a>{% endif %}</p>
{% else %}<p>No jobs yet.</p>{% endif %}
{% endblock %}"""


@functools.cache
def _environment() -> Environment:
    """The templates, made on the first page shown (Jinja2 is imported then, not at start)."""
    from jinja2 import DictLoader, Environment, select_autoescape

    return Environment(
        loader=DictLoader(
            {"base": _BASE, "sign_in": _SIGN_IN, "account": _ACCOUNT, "packages": _PACKAGE_SELECT}
        ),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


def _usd(micros: int | None) -> str:
    return "" if micros is None else f"${micros_to_usd(micros):.6f}"


def job_row(job: JobRecord) -> dict[str, Any]:
    """What the job table shows of a job: plain strings, escaped by the template."""
    refunded = job.hold_micros if job.status.value in ("failed", "cancelled") else None
    preview = json.dumps(job.input, ensure_ascii=False)
    if len(preview) > INPUT_PREVIEW_CHARS:
        preview = preview[: INPUT_PREVIEW_CHARS - 1] + "\u2026"
    error = job.error.get("message") if isinstance(job.error, dict) else None
    return {
        "id": job.id,
        "service": job.service,
        "status": job.status.value,
        "error": str(error) if error else "",
        "created": job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "cost": _usd(job.cost_micros),
        "refunded": _usd(refunded),
        "input": preview,
    }


def _packages() -> list[dict[str, str]]:
    return [
        {
            "name": p.name,
            "label": f"${micros_to_usd(p.price_micros):.2f} for "
            f"${micros_to_usd(p.credits_micros):.2f} of credits",
        }
        for p in sorted(PACKAGES.values(), key=lambda p: p.price_micros)
    ]


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(packages=_packages(), **context)
