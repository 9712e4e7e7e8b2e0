"""Fetching the media a job names by URL (``image_url``, ``mask_url``, ``audio_url``, ...).

Every input is fetched before the job is charged, so a bad URL is a 422 and never a failed,
refunded job: http(s) only through the guarded client (no private, loopback or link-local
targets unless the operator allows them, checked again on every redirect), a size cap, one
deadline for the whole download (redirects included: a per-read timeout alone lets a server
that trickles bytes hold a fetch forever), a content-type check and a check that the bytes
really are an image or audio file.
``data:`` URLs are accepted too.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import anyio

from gpubridge.engines.base import MediaInput
from gpubridge.errors import InvalidInput
from gpubridge.jobs.netguard import LazyGuardedClient, parse_url

log = logging.getLogger(__name__)

MediaKind = Literal["image", "audio", "video"]

FIELD_KINDS: dict[str, MediaKind] = {
    "image_url": "image",
    "mask_url": "image",
    "control_image_url": "image",
    "audio_url": "audio",
    "video_url": "video",
}
"""Input fields that name a media file, and what it must be."""

_GUARD_CODES = {"invalid_url", "unsafe_url", "unresolvable_host"}
_GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


@dataclass(frozen=True)
class _Signature:
    content_type: str
    kind: MediaKind
    magic: bytes
    offset: int = 0
    also: tuple[int, bytes] | None = None


_SIGNATURES = (
    _Signature("image/png", "image", b"\x89PNG\r\n\x1a\n"),
    _Signature("image/jpeg", "image", b"\xff\xd8\xff"),
    _Signature("image/gif", "image", b"GIF8"),
    _Signature("image/webp", "image", b"RIFF", also=(8, b"WEBP")),
    _Signature("image/bmp", "image", b"BM"),
    _Signature("image/tiff", "image", b"II*\x00"),
    _Signature("image/tiff", "image", b"MM\x00*"),
    _Signature("audio/wav", "audio", b"RIFF", also=(8, b"WAVE")),
    _Signature("audio/flac", "audio", b"fLaC"),
    _Signature("audio/ogg", "audio", b"OggS"),
    _Signature("audio/mpeg", "audio", b"ID3"),
    _Signature("audio/mpeg", "audio", b"\xff\xfb"),
    _Signature("audio/mpeg", "audio", b"\xff\xf3"),
    _Signature("audio/mpeg", "audio", b"\xff\xf2"),
    _Signature("audio/aac", "audio", b"\xff\xf1"),
    _Signature("audio/webm", "audio", b"\x1a\x45\xdf\xa3"),
    _Signature("video/mp4", "video", b"ftyp", offset=4),
    _Signature("video/webm", "video", b"\x1a\x45\xdf\xa3"),
)


def sniff(data: bytes) -> tuple[str, MediaKind] | None:
    """The content type and kind that ``data``'s leading bytes announce, if known."""
    for sig in _SIGNATURES:
        if data[sig.offset : sig.offset + len(sig.magic)] != sig.magic:
            continue
        if sig.also is not None:
            at, magic = sig.also
            if data[at : at + len(magic)] != magic:
                continue
        return sig.content_type, sig.kind
    return None


def _accepts(kind: MediaKind, sniffed_kind: MediaKind) -> bool:
    # An MP4/M4A or WebM container holds audio as often as video.
    return sniffed_kind == kind or (kind == "audio" and sniffed_kind == "video")


def media_fields(payload: dict[str, Any]) -> dict[str, tuple[str, MediaKind]]:
    """The media URLs in a job's input: field -> (url, kind)."""
    return {
        name: (value, FIELD_KINDS[name])
        for name, value in payload.items()
        if name in FIELD_KINDS and isinstance(value, str) and value
    }


def _invalid(field: str, message: str, code: str = "invalid_media") -> InvalidInput:
    return InvalidInput(
        f"{field}: {message}", code=code, violations=[{"path": field, "message": message}]
    )


def _check_image_decodes(field: str, data: bytes) -> None:
    try:
        from PIL import Image
    except ImportError:  # no local image runtimes here: the leading bytes were checked
        return
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:
        raise _invalid(field, f"the file is not a readable image ({exc})") from None


class MediaFetcher:
    """Fetches and checks media inputs; one instance per process."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout_s: float,
        max_redirects: int,
        allow_private: bool,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._client = LazyGuardedClient(
            allow_private=allow_private,
            require_https=False,
            timeout_s=timeout_s,
            max_redirects=max_redirects,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch_all(self, payload: dict[str, Any]) -> dict[str, MediaInput]:
        """Every media input of ``payload``, fetched and checked (``InvalidInput`` if not)."""
        return {
            name: await self.fetch(name, url, kind)
            for name, (url, kind) in media_fields(payload).items()
        }

    async def fetch(self, field: str, url: str, kind: MediaKind) -> MediaInput:
        if url.startswith("data:"):
            declared, data = self._decode_data_url(field, url)
        else:
            declared, data = await self._download(field, url)
        return self._checked(field, kind, declared, data)

    def _decode_data_url(self, field: str, url: str) -> tuple[str, bytes]:
        header, sep, body = url[5:].partition(",")
        if not sep:
            raise _invalid(field, "a data: URL needs a comma before its data")
        params = header.split(";")
        declared = params[0].strip().lower()
        try:
            if "base64" in (p.strip().lower() for p in params[1:]):
                data = base64.b64decode(body, validate=True)
            else:
                data = urllib.parse.unquote_to_bytes(body)
        except (binascii.Error, ValueError):
            raise _invalid(field, "the data: URL's base64 is not valid") from None
        if len(data) > self.max_bytes:
            raise _invalid(
                field, f"the file is larger than {self.max_bytes} bytes", "media_too_large"
            )
        return declared, data

    async def _download(self, field: str, url: str) -> tuple[str, bytes]:
        import httpx  # loaded with the client, on the first media input

        try:
            with anyio.fail_after(self.timeout_s):
                return await self._transfer(field, url)
        except InvalidInput as exc:
            if exc.code in _GUARD_CODES:  # the URL guard's refusal, named after the field
                raise _invalid(field, exc.message, exc.code) from None
            raise
        except httpx.TooManyRedirects:
            raise _invalid(field, "too many redirects", "media_unreachable") from None
        except (TimeoutError, httpx.TimeoutException):
            raise _invalid(
                field, f"fetching it timed out (limit {self.timeout_s:g} s)", "media_unreachable"
            ) from None
        except httpx.HTTPError as exc:
            raise _invalid(field, f"could not fetch it ({exc})", "media_unreachable") from None

    async def _transfer(self, field: str, url: str) -> tuple[str, bytes]:
        """The declared content type and the bytes, read under the size cap."""
        async with self._client.get().stream("GET", parse_url(url)) as response:
            if response.status_code != 200:
                raise _invalid(
                    field, f"fetching it answered HTTP {response.status_code}", "media_unreachable"
                )
            declared = response.headers.get("content-type", "").split(";")[0].strip().lower()
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                raise _invalid(
                    field, f"the file is larger than {self.max_bytes} bytes", "media_too_large"
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise _invalid(
                        field, f"the file is larger than {self.max_bytes} bytes", "media_too_large"
                    )
                chunks.append(chunk)
        return declared, b"".join(chunks)

    def _checked(self, field: str, kind: MediaKind, declared: str, data: bytes) -> MediaInput:
        if not data:
            raise _invalid(field, "the file is empty")
        allowed = (f"{kind}/", "video/") if kind == "audio" else (f"{kind}/",)
        if declared not in _GENERIC_TYPES and not declared.startswith(allowed):
            raise _invalid(field, f"expected {kind} content, got {declared!r}", "unsupported_media")
        sniffed = sniff(data)
        if sniffed is None or not _accepts(kind, sniffed[1]):
            raise _invalid(field, f"the file is not a supported {kind} format", "unsupported_media")
        if kind == "image":
            _check_image_decodes(field, data)
        return MediaInput(field=field, data=data, content_type=sniffed[0])


def describe(media: Iterable[MediaInput]) -> dict[str, dict[str, Any]]:
    """What was fetched, for logs and job records: field -> content type and size."""
    return {m.field: {"content_type": m.content_type, "size_bytes": len(m.data)} for m in media}
