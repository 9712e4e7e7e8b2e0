"""Fetching media inputs: only real images/audio from allowed addresses, within limits."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from gpubridge.errors import InvalidInput
from gpubridge.jobs.media import MediaFetcher, media_fields, sniff
from tests.support.media_server import MediaServer, png_bytes, serve_media, wav_bytes

WAIT_S = 10
PNG = png_bytes(8, 8)
WAV = wav_bytes(0.1)


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    with serve_media() as server:
        server.add("cat.png", PNG, "image/png")
        server.add("untyped.png", PNG, "application/octet-stream")
        server.add("voice.wav", WAV, "audio/wav")
        server.add("page.html", b"<html>hi</html>", "text/html")
        server.add("fake.png", b"this is not an image at all", "image/png")
        server.add("truncated.png", PNG[:40], "image/png")
        server.add("big.png", PNG + b"\0" * 5000, "image/png")
        server.slow_s = 3.0
        yield server


def fetcher(**overrides: object) -> MediaFetcher:
    values: dict[str, object] = {
        "max_bytes": 4096,
        "timeout_s": 1.0,
        "max_redirects": 2,
        "allow_private": True,
    }
    values.update(overrides)
    return MediaFetcher(**values)  # type: ignore[arg-type]


@pytest.fixture
async def fetch() -> AsyncIterator[MediaFetcher]:
    client = fetcher()
    yield client
    await client.aclose()


async def refused(client: MediaFetcher, url: str, kind: str = "image") -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        await client.fetch("image_url" if kind == "image" else "audio_url", url, kind)  # type: ignore[arg-type]
    assert caught.value.status == 422
    return caught.value


async def test_an_image_is_fetched_with_its_sniffed_type(fetch: MediaFetcher, media: MediaServer):
    item = await fetch.fetch("image_url", media.url("cat.png"), "image")
    assert (item.field, item.content_type, item.data) == ("image_url", "image/png", PNG)


async def test_a_generic_content_type_is_accepted_when_the_bytes_are_an_image(
    fetch: MediaFetcher, media: MediaServer
):
    item = await fetch.fetch("image_url", media.url("untyped.png"), "image")
    assert item.content_type == "image/png"


async def test_audio_is_fetched_for_an_audio_field(fetch: MediaFetcher, media: MediaServer):
    item = await fetch.fetch("audio_url", media.url("voice.wav"), "audio")
    assert item.content_type == "audio/wav"


async def test_a_page_is_not_an_image(fetch: MediaFetcher, media: MediaServer):
    error = await refused(fetch, media.url("page.html"))
    assert error.code == "unsupported_media"
    assert "text/html" in error.message


async def test_bytes_that_are_not_an_image_are_refused_whatever_the_header_says(
    fetch: MediaFetcher, media: MediaServer
):
    assert (await refused(fetch, media.url("fake.png"))).code == "unsupported_media"
    assert (await refused(fetch, media.url("truncated.png"))).code == "invalid_media"


async def test_an_image_is_not_audio(fetch: MediaFetcher, media: MediaServer):
    assert (await refused(fetch, media.url("cat.png"), "audio")).code == "unsupported_media"


async def test_a_file_over_the_size_cap_is_refused(fetch: MediaFetcher, media: MediaServer):
    assert (await refused(fetch, media.url("big.png"))).code == "media_too_large"


async def test_redirects_are_followed_to_the_file(fetch: MediaFetcher, media: MediaServer):
    item = await fetch.fetch("image_url", f"{media.base_url}/redirect/cat.png", "image")
    assert item.data == PNG


async def test_a_missing_file_and_a_slow_server_are_unreachable(
    fetch: MediaFetcher, media: MediaServer
):
    assert (await refused(fetch, media.url("nope.png"))).code == "media_unreachable"
    assert (await refused(fetch, f"{media.base_url}/status/500")).code == "media_unreachable"
    slow = await refused(fetch, f"{media.base_url}/slow/cat.png")
    assert slow.code == "media_unreachable"
    assert "timed out" in slow.message


async def test_a_server_trickling_bytes_is_cut_off_at_one_deadline_for_the_whole_download(
    media: MediaServer,
):
    # A byte every 0.2 s never trips the 1 s wait for each read, but the download as a whole
    # would take far longer than the 1 s it is allowed.
    client = fetcher(timeout_s=1.0)
    started = time.monotonic()
    try:
        with anyio.fail_after(WAIT_S):
            error = await refused(client, f"{media.base_url}/trickle/cat.png")
    finally:
        await client.aclose()
    assert error.code == "media_unreachable"
    assert "timed out" in error.message
    assert time.monotonic() - started < 3


async def test_loopback_and_private_targets_are_refused_unless_allowed(media: MediaServer):
    strict = fetcher(allow_private=False)
    try:
        assert (await refused(strict, media.url("cat.png"))).code == "unsafe_url"
        for url in ("http://10.0.0.1/x.png", "http://169.254.169.254/latest", "http://[::1]/a"):
            assert (await refused(strict, url)).code == "unsafe_url"
        assert (await refused(strict, "file:///etc/passwd")).code == "invalid_url"
        assert (await refused(strict, "ftp://example.com/a.png")).code == "invalid_url"
    finally:
        await strict.aclose()


@pytest.mark.parametrize(
    "url", ["http://0177.0.0.1/x.png", "http://256.1.1.1/x.png", "http://[::1/x.png", "http:///x"]
)
async def test_a_url_httpx_cannot_parse_is_an_invalid_url(fetch: MediaFetcher, url: str):
    error = await refused(fetch, url)
    assert error.code == "invalid_url"
    assert error.details["violations"][0]["path"] == "image_url"


async def test_data_urls_are_decoded_and_checked(fetch: MediaFetcher):
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert (await fetch.fetch("image_url", url, "image")).data == PNG
    assert (await refused(fetch, "data:image/png;base64,@@@")).code == "invalid_media"
    assert (await refused(fetch, "data:image/png;base64")).code == "invalid_media"
    text = "data:text/plain," + "hello"
    assert (await refused(fetch, text)).code == "unsupported_media"


def test_media_fields_are_found_by_name() -> None:
    payload = {"image_url": "http://a/x.png", "mask_url": "", "prompt": "p", "audio_url": "u"}
    assert media_fields(payload) == {
        "image_url": ("http://a/x.png", "image"),
        "audio_url": ("u", "audio"),
    }


def test_sniffing_recognises_common_formats() -> None:
    assert sniff(PNG) == ("image/png", "image")
    assert sniff(WAV) == ("audio/wav", "audio")
    assert sniff(b"\x00\x00\x00\x18ftypmp42") == ("video/mp4", "video")
    assert sniff(b"plain text") is None
