"""Jobs and estimates as tool results: text, structured content, images, audio and links."""

from __future__ import annotations

import json
from typing import Any

from mcp_types import AudioContent, CallToolResult, ContentBlock, ImageContent, ResourceLink
from mcp_types import TextContent as Text

from gpubridge.mcp_server.media import Media, split_media
from gpubridge.mcp_server.tools import GET_JOB


def job_result(
    view: dict[str, Any], *, inline_media_bytes: int, failed_is_error: bool = True
) -> CallToolResult:
    """A job view (see ``gateway.job_view``) as a tool result.

    A completed job gives its text (when it has one), its images and audio (inline when
    they fit in ``inline_media_bytes`` of base64, else links) and the job as structured
    content. A job still running is not an error: the result says how to fetch it later.
    """
    status = view["status"]
    if status == "completed":
        return _completed(view, inline_media_bytes)
    if status in ("pending", "running"):
        text = (
            f"Job {view['job_id']} is still {status}. Call {GET_JOB} with "
            f'{{"job_id": "{view["job_id"]}"}} (or GET {view["status_url"]}) for the result.'
        )
        return CallToolResult(content=[Text(text=text), _json(view)], structured_content=view)
    error = view.get("error") or {}
    text = f"Job {view['job_id']} {status}: {error.get('code')}: {error.get('message')}"
    if view.get("refunded_usd") is not None:
        text += f" (refunded ${view['refunded_usd']})"
    return CallToolResult(
        content=[Text(text=text), _json(view)],
        structured_content=view,
        is_error=failed_is_error and status == "failed",
    )


def pending_result(pending: dict[str, Any], public_url: str) -> CallToolResult:
    """A job id promised to a paid request that has no job yet (see ``pending_view``), in
    the shape of a job: ``pending`` while its payment settles, ``failed`` (its ``error``
    says ``released`` or ``refused``, nothing charged) when the payment never landed or the
    request was refused after it did."""
    job_id = pending["id"]
    view: dict[str, Any] = {
        "job_id": job_id,
        "id": job_id,
        "service": pending["service"],
        "status_url": f"{public_url}/status/{job_id}",
    }
    if pending["status"] == "settlement_pending":
        view |= {"status": "pending", "progress": {"stage": "settlement_pending"}}
        text = (
            f"Job {job_id} waits for its payment's settlement on chain; it starts once the "
            f'transfer is confirmed. Call {GET_JOB} with {{"job_id": "{job_id}"}} again later.'
        )
        return CallToolResult(content=[Text(text=text), _json(view)], structured_content=view)
    error = pending.get("error") or {
        "code": pending["status"],
        "message": f"the paid request was {pending['status']}",
    }
    view |= {"status": "failed", "error": error}
    text = f"Job {job_id} never started: {error['code']}: {error['message']}"
    return CallToolResult(content=[Text(text=text), _json(view)], structured_content=view)


def _completed(view: dict[str, Any], inline_media_bytes: int) -> CallToolResult:
    output, media = split_media(view.get("output") or {})
    # MCP has image and audio content blocks only: videos (and files with no base64) are links.
    inline = all(m.data and m.kind != "video" for m in media) and (
        sum(len(m.data) for m in media) <= inline_media_bytes
    )
    structured = {**view, "output": output}
    blocks: list[ContentBlock] = []
    if isinstance(output.get("text"), str):
        blocks.append(Text(text=output["text"]))
    if media:
        structured["media"] = [_describe(m, view, inline) for m in media]
        blocks += [_inline(m) if inline else _link(m, view) for m in media]
    blocks.append(_json(structured))
    return CallToolResult(content=blocks, structured_content=structured)


def _inline(media: Media) -> ContentBlock:
    if media.kind == "image":
        return ImageContent(data=media.data, mime_type=media.mime_type)
    return AudioContent(data=media.data, mime_type=media.mime_type)


def _link(media: Media, view: dict[str, Any]) -> ResourceLink:
    """A link to the file itself, or to the job's status document holding it as base64."""
    if media.url is not None:
        return ResourceLink(
            uri=media.url,
            name=f"{view['job_id']}/output/{media.path}",
            title=f"{media.kind} output of job {view['job_id']}",
            description=f"{media.mime_type}, {media.size_bytes} bytes (kept 24 hours).",
            mime_type=media.mime_type,
        )
    return ResourceLink(
        uri=view["status_url"],
        name=f"{view['job_id']}/output/{media.path}",
        title=f"{media.kind} output of job {view['job_id']}",
        description=(
            f"{media.mime_type}, {media.size_bytes} bytes, too large to send inline: it is "
            f"the base64 field output/{media.path} of this JSON job document (kept 24 hours)."
        ),
        mime_type="application/json",
    )


def _describe(media: Media, view: dict[str, Any], inline: bool) -> dict[str, Any]:
    described: dict[str, Any] = {
        "path": media.path,
        "mime_type": media.mime_type,
        "size_bytes": media.size_bytes,
        "delivery": "inline" if inline else "link",
    }
    if not inline:
        described["uri"] = media.url or view["status_url"]
    return described


def estimate_result(estimate: dict[str, Any]) -> CallToolResult:
    text = (
        f"{estimate['service']} ({estimate['model']}): about ${estimate['estimated_cost_usd']} "
        f"(at least ${estimate['minimum_cost_usd']}), priced per {estimate['pricing_unit']}."
    )
    return CallToolResult(content=[Text(text=text), _json(estimate)], structured_content=estimate)


def _json(value: dict[str, Any]) -> Text:
    return Text(text=json.dumps(value, separators=(",", ":"), default=str))
