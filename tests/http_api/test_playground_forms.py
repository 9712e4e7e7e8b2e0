"""The playground's forms: fields from catalog schemas, job input from a submitted form, and
the equivalent curl command (run by a shell here, to prove its quoting)."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import FormData, Headers, UploadFile

from gpubridge.catalog.catalog import Catalog
from gpubridge.errors import InvalidInput
from gpubridge.http_api.playground_forms import (
    Field,
    curl_command,
    example_input,
    form_fields,
    read_input,
)

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def schema(catalog: Catalog, key: str) -> dict[str, Any]:
    return catalog.service(key).input_schema


def by_name(fields: list[Field]) -> dict[str, Field]:
    return {f.name: f for f in fields}


def test_llm_fields_take_their_kind_and_limits_from_the_schema(catalog: Catalog) -> None:
    fields = by_name(form_fields(schema(catalog, "llm-4090")))
    assert fields["prompt"].kind == "textarea"
    assert fields["messages"].kind == "json"
    assert fields["model"].kind == "select" and "llama-3.3-70b-versatile" in fields["model"].options
    tokens = fields["max_tokens"]
    assert (tokens.kind, tokens.step, tokens.minimum, tokens.maximum) == ("number", "1", 1, 8192)
    assert fields["temperature"].step == "any"
    assert fields["stream"].kind == "checkbox" and fields["stream"].default is False
    assert fields["stop"].kind == "text"  # a string, or a list of them


def test_media_fields_are_uploads_of_their_kind_and_required_fields_come_first(
    catalog: Catalog,
) -> None:
    fields = form_fields(schema(catalog, "whisper-l4"))
    assert fields[0].name == "audio_url" and fields[0].required
    assert (fields[0].kind, fields[0].accept) == ("media", "audio/*")
    inpaint = by_name(form_fields(schema(catalog, "inpaint")))
    assert inpaint["mask_url"].accept == "image/*"


def test_every_packaged_service_gets_a_form_with_its_required_fields(catalog: Catalog) -> None:
    for key, service in catalog.services.items():
        fields = form_fields(service.input_schema)
        names = [f.name for f in fields]
        assert set(service.input_schema.get("required", ())) <= set(names), key
        assert all(f.kind != "json" or not f.required for f in fields), key


async def test_a_submitted_form_becomes_typed_input_without_empty_fields(
    catalog: Catalog,
) -> None:
    form = FormData(
        [
            ("csrf_token", "t"),
            ("prompt", "Hello there"),
            ("max_tokens", "16"),
            ("temperature", "0.5"),
            ("model", ""),
            ("messages", ""),
            ("stream", "false"),
            ("stream", "true"),
            ("seed", " "),
        ]
    )
    payload, media = await read_input(schema(catalog, "llm-4090"), form)
    assert payload == {
        "prompt": "Hello there",
        "max_tokens": 16,
        "temperature": 0.5,
        "stream": True,
    }
    assert media == {}
    catalog.validate_input(catalog.service("llm-4090"), payload)


async def test_a_wrong_number_or_json_names_its_field(catalog: Catalog) -> None:
    for name, value, message in [
        ("max_tokens", "ten", "must be a whole number"),
        ("messages", "[{", "is not valid JSON"),
    ]:
        form = FormData([("prompt", "hi"), (name, value)])
        with pytest.raises(InvalidInput) as caught:
            await read_input(schema(catalog, "llm-4090"), form)
        violation = caught.value.details["violations"][0]
        assert violation["path"] == name and message in violation["message"]


async def test_an_upload_becomes_a_media_input_named_in_the_payload(catalog: Catalog) -> None:
    upload = UploadFile(
        BytesIO(WAV), filename="my talk (1).wav", headers=Headers({"content-type": "audio/wav"})
    )
    form = FormData([("audio_url__file", upload), ("audio_url", ""), ("language", "en")])
    payload, media = await read_input(schema(catalog, "whisper-l4"), form)
    assert payload == {"audio_url": "upload:my_talk__1_.wav", "language": "en"}
    assert media["audio_url"].data == WAV and media["audio_url"].content_type == "audio/wav"


async def test_a_url_is_used_when_no_file_is_chosen(catalog: Catalog) -> None:
    empty = UploadFile(BytesIO(b""), filename="")
    form = FormData([("image_url__file", empty), ("image_url", "https://example.com/a.png")])
    payload, media = await read_input(schema(catalog, "caption"), form)
    assert payload == {"image_url": "https://example.com/a.png"} and media == {}


def test_the_example_input_fills_the_required_fields(catalog: Catalog) -> None:
    assert example_input(schema(catalog, "embedding-l4")) == {"text": "..."}
    assert example_input(schema(catalog, "whisper-l4")) == {
        "audio_url": "https://example.com/your-audio"
    }
    assert example_input(schema(catalog, "llm-4090")) == {"prompt": "Hello"}


def fake_curl(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``curl`` prints its arguments as JSON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "curl"
    script.write_text("#!/usr/bin/env python3\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def run_shell(command: str, tmp_path: Path) -> list[str]:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env={**fake_curl(tmp_path), "GPUBRIDGE_API_KEY": "gpub_k"},
        capture_output=True,
        text=True,
        check=True,
    )
    argv: list[str] = json.loads(done.stdout)
    return argv


def test_the_curl_command_posts_the_same_job_to_run(tmp_path: Path) -> None:
    payload = {"prompt": 'It\'s "quoted" $HOME `x`', "max_tokens": 8}
    command = curl_command("http://127.0.0.1:8000/", "llm-4090", payload)
    argv = run_shell(command, tmp_path)
    assert argv[:2] == ["-X", "POST"] and argv[2] == "http://127.0.0.1:8000/run"
    assert "Authorization: Bearer gpub_k" in argv
    body = json.loads(argv[argv.index("-d") + 1])
    assert body == {"service": "llm-4090", "input": payload}


def test_an_uploaded_file_is_sent_as_a_data_url_read_by_the_shell(tmp_path: Path) -> None:
    (tmp_path / "talk.wav").write_bytes(WAV)
    command = curl_command("http://gpubridge.test", "whisper-l4", {"audio_url": "upload:talk.wav"})
    assert shlex.split(command)[0] == "curl"
    body = json.loads(run_shell(command, tmp_path)[-1])
    url = body["input"]["audio_url"]
    assert url.startswith("data:application/octet-stream;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == WAV


async def test_a_menu_of_whole_numbers_is_sent_as_an_integer(catalog: Catalog) -> None:
    key = next(k for k, s in catalog.services.items() if "scale" in s.input_schema["properties"])
    scale = by_name(form_fields(schema(catalog, key)))["scale"]
    assert (scale.kind, scale.numeric, scale.options) == ("select", True, ["2", "4"])
    form = FormData([("image_url", "https://example.com/a.png"), ("scale", "2")])
    payload, _ = await read_input(schema(catalog, key), form)
    assert payload["scale"] == 2 and isinstance(payload["scale"], int)
    catalog.validate_input(catalog.service(key), payload)
