"""How agents and directories find out what a service takes and answers: an example input made
from its schema, and the x402 Bazaar description of ``POST /run`` for it.

Everything here is derived from the catalog, so a discovery document cannot disagree with what
the server validates and charges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gpubridge.catalog import Catalog, Service
from gpubridge.catalog.portable import portable_schema
from gpubridge.jobs.status import JobStatus
from gpubridge.money import micros_to_usd
from gpubridge.payments.x402 import X402
from gpubridge.payments.x402.bazaar import BAZAAR, http_extension
from gpubridge.payments.x402.requirements import payment_required

RUN_PATH = "/run"
EXAMPLE_JOB_ID = "0b7e3f1c-5d2a-4e8b-9c61-2f4a7d9e1b35"
"""The job id of example answers (a real one is a random UUID)."""
EXAMPLE_TEXT = "Hello, world"
EXAMPLE_HOST = "https://example.com"
_MEDIA_SUFFIXES = {"image": ".png", "mask": ".png", "audio": ".wav", "video": ".mp4"}

Describe = Callable[[Service], Mapping[str, Any]]
"""The Bazaar extension of a paid resource for a service: how a door's resource is called."""


def example_input(service: Service) -> dict[str, Any]:
    """A small input the service accepts: each required field (those of the first alternative,
    when the schema offers several) with the example, default or first value its schema gives,
    or else a placeholder of its type."""
    value = _example(service.input_schema, "input")
    return value if isinstance(value, dict) else {}


def _example(schema: Any, name: str) -> Any:
    if not isinstance(schema, dict):
        return EXAMPLE_TEXT
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    for key in ("examples", "enum"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches and "type" not in schema:
            first = branches[0]
            if isinstance(first, dict) and ("type" in first or "properties" in first):
                return _example(first, name)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object_example(schema)
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        return [_example(schema.get("items"), name) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number_example(schema, kind)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _string_example(schema, name)


def _object_example(schema: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    required = list(schema.get("required") or [])
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches and isinstance(branches[0], dict):
            required += [n for n in branches[0].get("required") or [] if n not in required]
    return {name: _example(properties.get(name), name) for name in required}


def _number_example(schema: dict[str, Any], kind: str) -> int | float:
    if "minimum" in schema:
        value: float = schema["minimum"]
    elif "exclusiveMinimum" in schema:
        value = schema["exclusiveMinimum"] + 1
    else:
        value = 1
    if "maximum" in schema:
        value = min(value, schema["maximum"])
    return int(value) if kind == "integer" else value


def _string_example(schema: dict[str, Any], name: str) -> str:
    if schema.get("format") == "uri" or name.endswith("_url"):
        stem = name.removesuffix("_url")
        return f"{EXAMPLE_HOST}/{stem}{_MEDIA_SUFFIXES.get(stem, '')}"
    text = EXAMPLE_TEXT
    shortest = int(schema.get("minLength", 0))
    if len(text) < shortest:
        text = (text + " ") * (shortest // len(text) + 1)
    return text[: int(schema.get("maxLength", len(text)))]


def run_body_schema(service: Service) -> dict[str, Any]:
    """The body of ``POST /run`` for ``service``."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["service", "input"],
        "properties": {
            "service": {"type": "string", "enum": [service.key]},
            "input": _nested(portable_schema(service.input_schema)),
            "webhook_url": {
                "type": "string",
                "format": "uri",
                "description": "Where to POST the finished job (signed, retried).",
            },
        },
    }


def _nested(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` inside another: without the ``$schema`` and ``$id`` of a document root."""
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def job_schema(service: Service) -> dict[str, Any]:
    """A job as ``POST /run`` answers it: accepted (202) or, for a sync service that finished
    in time, complete with its output (200)."""
    output = portable_schema(service.output_schema or {"type": "object"})
    return {
        "type": "object",
        "required": ["job_id", "status", "status_url"],
        "properties": {
            "job_id": {"type": "string"},
            "service": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in JobStatus]},
            "status_url": {"type": "string"},
            "estimated_cost_usd": {"type": "number"},
            "cost_usd": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "output": output,
        },
    }


def accepted_job_example(service: Service, base_url: str) -> dict[str, Any]:
    """The answer to a job just accepted (its result comes from ``status_url``)."""
    return {
        "job_id": EXAMPLE_JOB_ID,
        "service": service.key,
        "status": JobStatus.PENDING.value,
        "status_url": f"{base_url}/status/{EXAMPLE_JOB_ID}",
    }


def run_extension(service: Service, base_url: str) -> dict[str, Any]:
    """The Bazaar description of ``POST /run`` for ``service``: the JSON body with an example
    input, and the job it answers."""
    return http_extension(
        method="POST",
        body={"service": service.key, "input": example_input(service)},
        body_schema=run_body_schema(service),
        output_example=accepted_job_example(service, base_url),
        output_schema=job_schema(service),
    )


def run_describer(base_url: str) -> Describe:
    """``run_extension`` for the services ``POST /run`` at ``base_url`` is asked to run."""

    def describe(service: Service) -> Mapping[str, Any]:
        return run_extension(service, base_url)

    return describe


def run_resources(
    catalog: Catalog, x402: X402, base_url: str, updated: datetime
) -> list[dict[str, Any]]:
    """``POST /run`` for each service it can run (one with a backend) as an x402 directory
    lists a paid resource (the x402 SDK's ``DiscoveryResource`` in its wire form): the
    requirements a 402 names for the example input, the service's Bazaar description, and its
    prices (``pricing``)."""
    resource = f"{base_url}{RUN_PATH}"
    items = []
    for service in catalog.services.values():
        if not service.backends:
            continue
        example = example_input(service)
        quote = catalog.quote(service, service.default_model, example)
        description = f"{service.name} ({service.key}) job"
        offer = x402.offer(
            quote.ceiling_micros,
            resource,
            description,
            {BAZAAR: run_extension(service, base_url)},
            metered=quote.price.metered,
        )
        required = payment_required(x402.config, offer, "")
        items.append(
            {
                "resource": resource,
                "type": "http",
                "x402Version": 2,
                "accepts": required["accepts"],
                "lastUpdated": updated.isoformat(),
                **{k: v for k, v in required["resource"].items() if k != "url"},
                "extensions": required["extensions"],
                "pricing": pricing(service),
            }
        )
    return items


def pricing(service: Service) -> dict[str, Any]:
    """What a service costs: the least a job is charged, and the rate for ``per`` units."""
    price = service.price
    rates: dict[str, Any] = {
        "unit": price.unit,
        "from_usd": micros_to_usd(price.minimum_micros),
        "micros": price.micros,
        "per": price.per,
    }
    if price.output_tokens_micros is not None:
        rates["output_tokens_micros"] = price.output_tokens_micros
    return rates
