"""Images and audio in results: inline content when small, a resource link when large."""

from __future__ import annotations

import base64

import anyio
from mcp_types import AudioContent, ImageContent, ResourceLink

from gpubridge.mcp_server.media import split_media
from tests.mcp_server.conftest import StartGateway, http_client, serve_http
from tests.mcp_server.media_engine import MEDIA_SERVICE, PNG_SIGNATURE, media_bytes


async def test_a_small_image_comes_back_as_image_content(running):
    key = await running.funded_key()
    async with running.client(key) as client:
        result = await client.call_tool(MEDIA_SERVICE, {"size_bytes": 2048})
    assert not result.is_error
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == 1
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data) == media_bytes("image", 2048)
    job = result.structured_content
    assert "image" not in job["output"] and job["output"]["seed"] == 7
    assert job["media"] == [
        {"path": "image", "mime_type": "image/png", "size_bytes": 2048, "delivery": "inline"}
    ]


async def test_small_audio_comes_back_as_audio_content(running):
    key = await running.funded_key()
    async with running.client(key) as client:
        result = await client.call_tool(MEDIA_SERVICE, {"size_bytes": 512, "kind": "audio"})
    audio = [block for block in result.content if isinstance(block, AudioContent)]
    assert len(audio) == 1 and audio[0].mime_type == "audio/wav"


async def test_a_large_image_over_http_comes_back_as_a_link_to_the_job(
    start_gateway: StartGateway,
):
    size = 700 * 1024  # about 933 KiB of base64: over the 512 KiB inline limit
    async with start_gateway() as running, serve_http(running.app) as url:
        key = await running.funded_key()
        async with http_client(url, key) as client:
            with anyio.fail_after(30):
                result = await client.call_tool(MEDIA_SERVICE, {"size_bytes": size})
        assert not result.is_error
        assert not [b for b in result.content if isinstance(b, ImageContent)]
        links = [block for block in result.content if isinstance(block, ResourceLink)]
        job = result.structured_content
        assert len(links) == 1
        assert links[0].uri == f"{url}/status/{job['job_id']}" == job["status_url"]
        assert links[0].mime_type == "application/json"
        assert "image/png" in (links[0].description or "")
        assert job["media"][0]["delivery"] == "link"
        assert job["media"][0]["uri"] == links[0].uri
        assert job["media"][0]["size_bytes"] == size

        fetched = await running.http.get(f"/status/{job['job_id']}")
        image = base64.b64decode(fetched.json()["output"]["image"])
        assert image.startswith(PNG_SIGNATURE) and len(image) == size


async def test_the_inline_limit_is_a_setting(start_gateway: StartGateway):
    async with start_gateway(mcp_inline_media_bytes=1000) as running:
        key = await running.funded_key()
        async with running.client(key) as client:
            result = await client.call_tool(MEDIA_SERVICE, {"size_bytes": 2048})
    assert [b for b in result.content if isinstance(b, ResourceLink)]


def test_media_fields_are_found_in_data_urls_lists_and_declared_formats():
    png = base64.b64encode(PNG_SIGNATURE + b"x" * 10).decode()
    unknown = base64.b64encode(b"\x00" * 12).decode()
    output = {
        "images": [f"data:image/webp;base64,{unknown}", png],
        "audio": unknown,
        "format": "mp3",
        "text": "a caption",
    }
    rest, media = split_media(output)
    assert rest == {"format": "mp3", "text": "a caption"}
    assert [(m.path, m.mime_type) for m in media] == [
        ("images/0", "image/webp"),
        ("images/1", "image/png"),
        ("audio", "audio/mp3"),
    ]
    assert media[0].data == unknown


def test_fields_that_are_not_base64_stay_in_the_output():
    output = {"image": "https://example.com/cat.png", "images": [], "audio": None}
    assert split_media(output) == (output, [])


async def test_an_output_contradicting_its_declared_schema_still_reaches_the_client(
    start_gateway: StartGateway,
):
    def declare(data):
        data["services"][MEDIA_SERVICE]["output_schema"] = {
            "type": "object",
            "required": ["image", "caption"],
            "properties": {"caption": {"type": "string"}},
        }

    async with start_gateway(edit=declare) as running:
        key = await running.funded_key()
        async with running.client(key) as client:
            result = await client.call_tool(MEDIA_SERVICE, {"size_bytes": 64})
    assert result.is_error
    note = result.content[0].text  # type: ignore[union-attr]
    assert note.startswith("output_schema_mismatch") and "caption" in note
    assert [b for b in result.content if isinstance(b, ImageContent)]
    assert result.structured_content["status"] == "completed"
