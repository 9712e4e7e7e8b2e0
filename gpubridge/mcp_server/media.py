"""Images and audio inside job outputs: base64 ``image``, ``images`` and ``audio`` fields."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Literal

MediaKind = Literal["image", "audio"]

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


def split_media(output: dict[str, Any]) -> tuple[dict[str, Any], list[Media]]:
    """The output without its base64 media fields, and the media they held.

    A field that holds something else (a URL, a number) stays in the output untouched.
    """
    rest = dict(output)
    found: list[Media] = []
    for name, kind in MEDIA_FIELDS.items():
        value = output.get(name)
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
