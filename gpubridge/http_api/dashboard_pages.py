"""The dashboard's HTML: Jinja2 templates shipped in ``templates/``, rendered with autoescaping,
and the plain values they show of jobs and outputs."""

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
ERROR_SUMMARY_CHARS = 120
SHORT_ID_CHARS = 8
JSON_PREVIEW_ITEMS = 8
"""Lists longer than this (embeddings) show their first items and how many more there are."""


@functools.cache
def _environment() -> Environment:
    """The template environment, built on first render: Jinja2 stays out of start-up."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("gpubridge.http_api", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def usd(micros: int | None) -> str:
    return "" if micros is None else f"${micros_to_usd(micros):.6f}"


def short_id(job_id: str) -> str:
    return job_id[:SHORT_ID_CHARS]


def error_parts(error: Any) -> tuple[str, str, str]:
    """(code, one-line summary, the whole error as JSON) of a job's error."""
    if not isinstance(error, dict):
        return "", "", ""
    message = str(error.get("message") or "")
    first = message.strip().splitlines()[0] if message.strip() else ""
    if len(first) > ERROR_SUMMARY_CHARS:
        first = first[: ERROR_SUMMARY_CHARS - 1] + "\u2026"
    detail = json.dumps(error, indent=2, ensure_ascii=False, default=str)
    return str(error.get("code") or ""), first, detail


def job_row(job: JobRecord) -> dict[str, Any]:
    """What the job table shows of a job: plain strings, escaped by the template."""
    refunded = job.hold_micros if job.status.value in ("failed", "cancelled") else None
    preview = json.dumps(job.input, ensure_ascii=False)
    if len(preview) > INPUT_PREVIEW_CHARS:
        preview = preview[: INPUT_PREVIEW_CHARS - 1] + "\u2026"
    code, summary, detail = error_parts(job.error)
    return {
        "id": job.id,
        "short_id": short_id(job.id),
        "service": job.service,
        "model": job.model,
        "status": job.status.value,
        "error_code": code,
        "error": summary,
        "error_detail": detail,
        "created": job.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "cost": usd(job.cost_micros),
        "refunded": usd(refunded),
        "input": preview,
    }


def _preview(value: Any) -> Any:
    """``value`` with long lists cut (and a note of what was left out) and base64 dropped."""
    if isinstance(value, dict):
        return {k: _preview(v) for k, v in value.items() if k != "base64"}
    if isinstance(value, list):
        shown = [_preview(v) for v in value[:JSON_PREVIEW_ITEMS]]
        if len(value) > JSON_PREVIEW_ITEMS:
            shown.append(f"\u2026 {len(value) - JSON_PREVIEW_ITEMS} more")
        return shown
    return value


def _media(value: Any, found: list[dict[str, str]]) -> None:
    """Collect the files of an output (dicts with ``file_id`` and ``content_type``)."""
    if isinstance(value, dict):
        if isinstance(value.get("file_id"), str) and isinstance(value.get("content_type"), str):
            kind = value["content_type"].split("/", 1)[0]
            found.append(
                {
                    "kind": kind if kind in ("image", "audio", "video") else "file",
                    "url": f"/files/{value['file_id']}",
                    "content_type": value["content_type"],
                }
            )
            return
        for item in value.values():
            _media(item, found)
    elif isinstance(value, list):
        for item in value:
            _media(item, found)


TEXT_FIELDS = ("text", "caption", "prompt")


def output_view(output: Any) -> dict[str, Any]:
    """How the job page shows an output: its text, its media files, and the JSON."""
    media: list[dict[str, str]] = []
    _media(output, media)
    text = ""
    if isinstance(output, dict):
        text = next((output[f] for f in TEXT_FIELDS if isinstance(output.get(f), str)), "")
    shown = json.dumps(_preview(output), indent=2, ensure_ascii=False, default=str)
    return {"text": text, "media": media, "json": shown}


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
    return _environment().get_template(f"{template}.html").render(packages=_packages(), **context)
