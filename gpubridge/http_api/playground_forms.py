"""The playground's forms: fields drawn from a service's input JSON Schema, the job input read
back from a submitted form (uploads become media inputs), and the equivalent ``curl``."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData, UploadFile

from gpubridge.engines.base import MediaInput
from gpubridge.errors import InvalidInput
from gpubridge.jobs.media import FIELD_KINDS

LONG_TEXT_FIELDS = frozenset({"prompt", "text", "system", "negative_prompt"})
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Field:
    """One input of the form: ``kind`` is text, textarea, number, select, checkbox, media
    (an upload or a URL) or json (arrays and objects, written as JSON)."""

    name: str
    kind: str
    required: bool = False
    description: str = ""
    default: Any = None
    options: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    accept: str = ""
    numeric: bool = False
    """A menu of numbers (an integer enum): its choice is sent as a number."""


def _string_like(schema: dict[str, Any]) -> bool:
    """A string, or alternatives one of which is a string (a prompt, or a list of them)."""
    if schema.get("type") == "string":
        return True
    options = schema.get("anyOf") or schema.get("oneOf") or []
    return any(isinstance(o, dict) and o.get("type") == "string" for o in options)


def _field(name: str, schema: dict[str, Any], required: bool) -> Field:
    common: dict[str, Any] = {
        "name": name,
        "required": required,
        "description": str(schema.get("description", "")),
        "default": schema.get("default"),
    }
    kind = schema.get("type")
    if name in FIELD_KINDS:
        media = FIELD_KINDS[name]
        return Field(kind="media", accept=f"{media}/*", **common)
    if isinstance(schema.get("enum"), list):
        options = schema["enum"]
        numeric = kind in ("integer", "number") or all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in options
        )
        whole = kind == "integer" or all(isinstance(v, int) for v in options)
        return Field(
            kind="select",
            options=[str(v) for v in options],
            numeric=numeric,
            step="1" if whole else "any",
            **common,
        )
    if kind == "boolean":
        return Field(kind="checkbox", **common)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        step = "1" if kind == "integer" else "any"
        return Field(kind="number", minimum=low, maximum=high, step=step, **common)
    if _string_like(schema):
        long = name in LONG_TEXT_FIELDS or int(schema.get("maxLength", 0)) > 1000
        return Field(kind="textarea" if long else "text", **common)
    return Field(kind="json", **common)


def form_fields(schema: dict[str, Any]) -> list[Field]:
    """The form's fields for an input schema, required ones first, in the schema's order."""
    required = set(schema.get("required", ()))
    fields = [
        _field(name, prop if isinstance(prop, dict) else {}, name in required)
        for name, prop in (schema.get("properties") or {}).items()
    ]
    return sorted(fields, key=lambda f: not f.required)


def _invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}", violations=[{"path": name, "message": message}])


def _number(item: Field, raw: str) -> int | float:
    try:
        return int(raw) if item.step == "1" else float(raw)
    except ValueError:
        kind = "a whole number" if item.step == "1" else "a number"
        raise _invalid(item.name, f"must be {kind}") from None


def _typed(item: Field, raw: str) -> Any:
    if item.kind == "number" or item.numeric:
        return _number(item, raw)
    if item.kind == "json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _invalid(item.name, f"is not valid JSON ({exc.msg})") from None
    return raw


async def read_input(
    schema: dict[str, Any], form: FormData
) -> tuple[dict[str, Any], dict[str, MediaInput]]:
    """The job input a submitted form describes, and its uploaded media (each named in the
    input as ``upload:<filename>``, as the gateway expects). Empty fields are left out, so the
    schema's defaults apply."""
    payload: dict[str, Any] = {}
    media: dict[str, MediaInput] = {}
    for item in form_fields(schema):
        if item.kind == "checkbox":
            values = form.getlist(item.name)
            if values:
                payload[item.name] = str(values[-1]) == "true"
            continue
        if item.kind == "media":
            upload = form.get(f"{item.name}__file")
            if isinstance(upload, UploadFile) and upload.filename:
                data = await upload.read()
                if data:
                    name = _UNSAFE_NAME.sub("_", upload.filename)[:100].strip("._") or "upload"
                    declared = upload.content_type or "application/octet-stream"
                    payload[item.name] = f"upload:{name}"
                    media[item.name] = MediaInput(item.name, data, declared)
                    continue
        raw = form.get(item.name)
        if not isinstance(raw, str) or not raw.strip():
            continue
        payload[item.name] = _typed(item, raw if item.kind == "textarea" else raw.strip())
    return payload, media


def example_input(schema: dict[str, Any]) -> dict[str, Any]:
    """An input to show before anything is typed: the required fields, with placeholders."""
    example: dict[str, Any] = {}
    for item in form_fields(schema):
        if not item.required:
            continue
        if item.kind == "media":
            example[item.name] = f"https://example.com/your-{FIELD_KINDS[item.name]}"
        elif item.default is not None:
            example[item.name] = item.default
        elif item.kind in ("text", "textarea"):
            example[item.name] = "..."
    if not example and "prompt" in (schema.get("properties") or {}):
        example["prompt"] = "Hello"
    return example


def curl_command(public_url: str, service: str, payload: dict[str, Any]) -> str:
    """The ``curl`` that runs the same job through ``POST /run``; an uploaded file is sent as
    a ``data:`` URL read from the file of that name."""
    body: dict[str, Any] = {"service": service, "input": dict(payload)}
    uploads: dict[str, str] = {}
    for name, value in payload.items():
        if isinstance(value, str) and value.startswith("upload:"):
            marker = f"@@{name}@@"
            body["input"][name] = marker
            uploads[marker] = value.removeprefix("upload:")
    text = json.dumps(body, ensure_ascii=False)
    quoted = shlex.quote(text)
    for marker, filename in uploads.items():
        # Close the single-quoted JSON, splice in the file as base64, reopen it.
        inline = f"data:application/octet-stream;base64,'\"$(base64 -w0 {shlex.quote(filename)})\"'"
        quoted = quoted.replace(marker, inline)
    return (
        f"curl -X POST {public_url.rstrip('/')}/run \\\n"
        '  -H "Authorization: Bearer $GPUBRIDGE_API_KEY" \\\n'
        '  -H "Content-Type: application/json" \\\n'
        f"  -d {quoted}"
    )
