"""The loaded catalog: input validation and price quotes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpubridge.catalog.explain import summary
from gpubridge.catalog.inputcheck import InputCheck
from gpubridge.catalog.loader import load_catalog_file
from gpubridge.catalog.models import CatalogFile, ModelSpec, Price, Service
from gpubridge.catalog.schemacheck import SchemaChecks
from gpubridge.catalog.tokens import TokenCounter
from gpubridge.engines.base import Usage
from gpubridge.errors import InvalidInput, NotFound
from gpubridge.money import ceil_div
from gpubridge.suggest import did_you_mean

CHARS_PER_TOKEN = 4
"""Rough prompt size for the typical estimate shown to callers; holds count with
``TokenCounter`` and the capture uses the runtime's count."""

FALLBACK_MAX_TOKENS = 256
"""The answer length the local LLM runtimes default to, for a service that declares none."""

DEFAULT_TIME_LIMIT_S = 600.0
"""The time limit of a job when the catalog is built without one (the settings' default)."""


@dataclass(frozen=True)
class Quote:
    """What a job on ``service`` with ``model`` costs, before discounts: typically
    (``units``, ``estimated_micros``) and at most (``ceiling_units``, ``ceiling_micros``).

    The ledger holds the ceiling, so that the capture of what the job really used is never cut
    short by an estimate that was too low."""

    service: Service
    model: ModelSpec
    price: Price
    units: int
    estimated_micros: int
    ceiling_units: int
    ceiling_micros: int


class Catalog:
    """The services an operator offers, validated at start-up."""

    def __init__(
        self,
        document: CatalogFile,
        *,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        tokens: TokenCounter | None = None,
    ) -> None:
        self.document = document
        self.time_limit_s = time_limit_s
        """The most seconds a job may run (the job timeout); bounds per-second ceilings."""
        self.tokens = tokens or TokenCounter()
        self.services: dict[str, Service] = document.services
        self._checks: dict[str, InputCheck] = {}
        """Each service's input check, made when its first input comes."""

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        *,
        starter: bool = False,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        schema_checks: SchemaChecks | None = None,
    ) -> Catalog:
        """Load and validate a catalog file (see ``load_catalog_file``)."""
        document = load_catalog_file(path, starter=starter, schema_checks=schema_checks)
        return cls(document, time_limit_s=time_limit_s)

    def service(self, key: str) -> Service:
        try:
            return self.services[key]
        except KeyError:
            hint, suggestion = did_you_mean(key, self.services)
            details = {} if suggestion is None else {"suggestion": suggestion}
            raise NotFound(
                f"unknown service {key!r}{hint}; GET /catalog lists the services",
                code="unknown_service",
                **details,
            ) from None

    def validate_input(self, service: Service, payload: Any) -> ModelSpec:
        """Check ``payload`` against the service's schema; return the model it selects."""
        check = self._checks.get(service.key)
        if check is None:
            check = self._checks[service.key] = InputCheck(service.input_schema)
        found = check.violations(payload)
        if found:
            raise InvalidInput(
                f"input does not match the {service.key} schema: {summary(found)}",
                violations=found,
            )
        model_id = payload.get("model") if isinstance(payload, dict) else None
        model = service.model(model_id)
        if model is None:
            ids = [m.id for m in service.models]
            hint, suggestion = did_you_mean(str(model_id), ids)
            violation = {"path": "model", "message": f"unknown model{hint}"}
            if suggestion is not None:
                violation["suggestion"] = suggestion
            raise InvalidInput(
                f"unknown model {model_id!r} for {service.key}{hint}; choose one of {ids}",
                violations=[violation],
            )
        return model

    def quote(
        self,
        service: Service,
        model: ModelSpec,
        payload: dict[str, Any] | None = None,
        seconds: float | None = None,
    ) -> Quote:
        """The typical and the highest cost of one job, before discounts; the ledger holds
        the highest (``ceiling_micros``). ``seconds`` is the length of the input when known
        (audio), or the caller's own guess for an estimate."""
        payload = payload or {}
        price = service.price_for(model)
        units = estimate_units(service, price, payload, seconds)
        ceiling = self._ceiling(service, model, price, payload, seconds)
        return Quote(
            service,
            model,
            price,
            units,
            cost_of(price, units, payload),
            ceiling.units,
            ceiling.micros,
        )

    def time_limit_for(self, service: Service) -> float:
        """The most seconds a job of ``service`` may run: the job timeout, or the service's
        own declared maximum when shorter."""
        if service.max_seconds is not None:
            return min(service.max_seconds, self.time_limit_s)
        return self.time_limit_s

    def _ceiling(
        self,
        service: Service,
        model: ModelSpec,
        price: Price,
        payload: dict[str, Any],
        seconds: float | None,
    ) -> _Ceiling:
        """The most a job can use and cost: every prompt token counted and every output token
        allowed; every output asked for; the audio's length, or the whole time limit."""
        if price.unit == "token":
            prompt = self.tokens.count(model.source, payload)
            output = ceiling_output_tokens(service, model, payload)
            cost = max(_token_cost(price, prompt, output), price.minimum_micros)
            return _Ceiling(prompt + output, cost)
        if price.unit == "output":
            units = int(payload.get("num_outputs", 1))
        elif price.unit == "audio_second" and seconds is not None:
            units = max(1, math.ceil(seconds))
        else:
            units = max(1, math.ceil(self.time_limit_for(service)))
        return _Ceiling(units, max(ceil_div(units * price.micros, price.per), price.minimum_micros))

    def actual_cost(self, price: Price, usage: Usage) -> int:
        """The metered cost at ``price`` of a finished job from what its runtime reported
        (never below the minimum charge); the caller caps it at what the job holds."""
        if price.unit == "token":
            cost = _token_cost(price, usage.prompt_tokens, usage.completion_tokens)
        elif price.unit == "audio_second":
            cost = ceil_div(int(usage.audio_seconds * 1000) * price.micros, price.per * 1000)
        elif price.unit == "output":
            cost = ceil_div(max(usage.outputs, 1) * price.micros, price.per)
        else:
            cost = ceil_div(int(usage.compute_seconds * 1000) * price.micros, price.per * 1000)
        return max(cost, price.minimum_micros)


@dataclass(frozen=True)
class _Ceiling:
    units: int
    micros: int


def estimate_units(
    service: Service, price: Price, payload: dict[str, Any], seconds: float | None
) -> int:
    """How many pricing units a job is expected to use (tokens, seconds, outputs)."""
    if price.unit == "token":
        return estimate_prompt_tokens(payload) + max_output_tokens(service, payload)
    if price.unit == "output":
        return int(payload.get("num_outputs", 1))
    if seconds is not None:
        return max(1, math.ceil(seconds))
    if price.unit == "audio_second" and isinstance(payload.get("duration_seconds"), int | float):
        return max(1, math.ceil(float(payload["duration_seconds"])))
    return max(1, math.ceil(service.estimated_seconds))


def cost_of(price: Price, units: int, payload: dict[str, Any]) -> int:
    if price.unit == "token":
        prompt = estimate_prompt_tokens(payload)
        cost = _token_cost(price, prompt, max(units - prompt, 0))
    else:
        cost = ceil_div(units * price.micros, price.per)
    return max(cost, price.minimum_micros)


def _token_cost(price: Price, prompt_tokens: int, completion_tokens: int) -> int:
    output_rate = (
        price.output_tokens_micros if price.output_tokens_micros is not None else price.micros
    )
    return ceil_div(prompt_tokens * price.micros + completion_tokens * output_rate, price.per)


def estimate_prompt_tokens(payload: dict[str, Any]) -> int:
    chars = 0
    for key in ("prompt", "system", "text", "input"):
        value = payload.get(key)
        if isinstance(value, str):
            chars += len(value)
        elif isinstance(value, list):
            chars += sum(len(v) for v in value if isinstance(v, str))
    for message in payload.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            chars += len(message["content"])
    return ceil_div(chars, CHARS_PER_TOKEN) if chars else 0


def max_output_tokens(service: Service, payload: dict[str, Any]) -> int:
    value = payload.get("max_tokens")
    if isinstance(value, int):
        return value
    schema_default = service.input_schema.get("properties", {}).get("max_tokens", {}).get("default")
    return int(schema_default) if isinstance(schema_default, int) else 0


def ceiling_output_tokens(service: Service, model: ModelSpec, payload: dict[str, Any]) -> int:
    """The most tokens a job may generate: its ``max_tokens``, or when absent the largest
    default answer length that the schema, the model or a backend declares."""
    value = payload.get("max_tokens")
    if isinstance(value, int):
        return value
    defaults = [max_output_tokens(service, payload), model.options.get("max_tokens")]
    defaults += [backend.options.get("max_tokens") for backend in service.backends]
    return max((d for d in defaults if isinstance(d, int)), default=FALLBACK_MAX_TOKENS)
