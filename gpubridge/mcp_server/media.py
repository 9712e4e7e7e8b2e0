"""Media inside job outputs: stored files (``{"url", "file_id", "content_type", "base64"?}``
anywhere at the top level or in lists), and base64 ``image``, ``images`` and ``audio`` fields."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

MediaKind = Literal["image", "audio", "video"]

MEDIA_FIELDS: dict[str, MediaKind] = {"image": "image", "images": "image", "audio": "audio"}
"""Output fields that may hold base64 media (``images`` holds a list)."""

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(;[^,]*)?;base64,", re.ASCII)

_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"WAVE", 8, "audio/wav"),
    (b"OggS", 0, "audio/ogg"),
    (b"fLaC", 0, "audio/flac"),
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
]


@dataclass(frozen=True)
class Media:
    """One base64 image or audio clip found in an output."""

    path: str
    """Where it sits in the output, e.g. ``image`` or ``images/1``."""
    kind: MediaKind
    data: str
    """Plain base64 (a ``data:`` URL prefix removed)."""
    mime_type: str
    size_bytes: int
    url: str | None = None
    """Where the file is served (``/files/{id}``), for stored files."""


def _is_file_view(value: Any) -> bool:
    return isinstance(value, dict) and "file_id" in value and "content_type" in value


def _file_media(path: str, value: dict[str, Any]) -> Media | None:
    mime = str(value["content_type"])
    kind = mime.split("/")[0]
    if kind not in ("image", "audio", "video"):
        return None
    data = value.get("base64")
    return Media(
        path,
        kind,  # type: ignore[arg-type]
        data if isinstance(data, str) else "",
        mime,
        int(value.get("size_bytes", 0)),
        str(value.get("url")) if value.get("url") else None,
    )


def _split_files(output: dict[str, Any]) -> tuple[dict[str, Any], list[Media]]:
    """Stored files: kept in the output without their base64, and listed as media."""
    rest: dict[str, Any] = {}
    found: list[Media] = []
    for name, value in output.items():
        items = list(enumerate(value)) if isinstance(value, list) else None
        if _is_file_view(value):
            media = _file_media(name, value)
            if media is not None:
                found.append(media)
            rest[name] = {k: v for k, v in value.items() if k != "base64"}
        elif items and all(_is_file_view(item) for _, item in items):
            for i, item in items:
                media = _file_media(f"{name}/{i}", item)
                if media is not None:
                    found.append(media)
            rest[name] = [{k: v for k, v in item.items() if k != "base64"} for _, item in items]
        else:
            rest[name] = value
    return rest, found


def split_media(output: dict[str, Any]) -> tuple[dict[str, Any], list[Media]]:
    """The output without its media payloads, and the media found.

    Stored files stay in the output as their links (base64 removed); plain base64 fields are
    taken out. A field that holds something else (a URL, a number) stays untouched.
    """
    rest, found = _split_files(output)
    for name, kind in MEDIA_FIELDS.items():
        value = rest.get(name)
        if isinstance(value, list):
            items = [(f"{name}/{i}", item) for i, item in enumerate(value)]
        else:
            items = [(name, value)]
        media = [_decode(path, item, kind, output) for path, item in items]
        if items and all(m is not None for m in media):
            found.extend(m for m in media if m is not None)
            del rest[name]
    return rest, found


def _decode(path: str, value: Any, kind: MediaKind, output: dict[str, Any]) -> Media | None:
    if not isinstance(value, str) or not value:
        return None
    declared: str | None = None
    match = _DATA_URL.match(value)
    if match:
        declared = match.group("mime")
        value = value[match.end() :]
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    mime = declared or _sniff(raw) or _declared_type(output, kind) or _default_type(kind)
    return Media(path, kind, value, mime, len(raw))


def _sniff(raw: bytes) -> str | None:
    for signature, offset, mime in _SIGNATURES:
        if raw[offset : offset + len(signature)] == signature:
            return mime
    return None


def _declared_type(output: dict[str, Any], kind: MediaKind) -> str | None:
    mime = output.get("mime_type") or output.get("content_type")
    if isinstance(mime, str) and mime.startswith(f"{kind}/"):
        return mime
    fmt = output.get("format")
    if isinstance(fmt, str) and fmt.isalnum() and len(fmt) <= 10:
        return f"{kind}/{fmt.lower()}"
    return None


def _default_type(kind: MediaKind) -> str:
    return "image/png" if kind == "image" else "audio/wav"
