"""The catalog's schema: services, models, pricing rules and backends."""

from __future__ import annotations

from functools import cached_property
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gpubridge.catalog.schemacheck import InvalidSchema, SchemaChecks, check_schema
from gpubridge.engines.base import BackendConfig, ModelRef
from gpubridge.money import usd_to_micros

Category = Literal["text", "image", "audio", "utility"]
PricingUnit = Literal["token", "audio_second", "output", "second"]

SCHEMA_CHECKS = "schema_checks"
"""The validation context's key for a ``SchemaChecks`` (see ``CatalogFile.model_validate``)."""


class Price(BaseModel):
    """``micros`` micro-USD for every ``per`` units of ``unit``, with a minimum charge.

    Rates smaller than a micro-USD per unit (tokens) stay exact: cost is
    ``ceil(quantity * micros / per)``.
    """

    model_config = ConfigDict(extra="forbid")

    unit: PricingUnit
    micros: int = Field(ge=0)
    per: int = Field(default=1, ge=1)
    minimum_usd: str = Field(description="The document's 'From' price, a decimal string.")
    output_tokens_micros: int | None = Field(
        default=None, ge=0, description="Token pricing only: a separate rate for output tokens."
    )

    @field_validator("minimum_usd")
    @classmethod
    def _minimum_is_money(cls, value: str) -> str:
        usd_to_micros(value)
        return value

    @cached_property
    def minimum_micros(self) -> int:
        # Converted once: every quote and every charge reads it.
        return usd_to_micros(self.minimum_usd)

    @property
    def metered(self) -> bool:
        """Whether the cost depends on what the job uses (tokens, seconds), not only on the
        request: such a job may be paid by a metered authorization of its ceiling."""
        return self.unit != "output"


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, description="Public model id accepted in input.model.")
    source: str = Field(min_length=1, description="Weights: a hub repo id or a local path.")
    description: str = ""
    license: str = ""
    default: bool = False
    price: Price | None = Field(default=None, description="Overrides the service's price.")
    options: dict[str, Any] = Field(default_factory=dict)

    def ref(self) -> ModelRef:
        return ModelRef(id=self.id, source=self.source, options=dict(self.options))


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    name: str = Field(min_length=1)
    category: Category
    description: str = Field(min_length=1)
    mode: Literal["sync", "async"]
    estimated_seconds: float = Field(gt=0)
    max_seconds: float | None = Field(
        default=None,
        gt=0,
        description="The most a job may run, when shorter than the job timeout; per-second "
        "prices hold this many seconds.",
    )
    price: Price
    models: list[ModelSpec] = Field(min_length=1)
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    backends: list[BackendConfig] = Field(default_factory=list)

    @field_validator("input_schema")
    @classmethod
    def _schema_is_valid(cls, schema: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # A SchemaChecks in the validation context remembers the schemas it proved before.
        checks = info.context.get(SCHEMA_CHECKS) if isinstance(info.context, dict) else None
        try:
            if isinstance(checks, SchemaChecks):
                checks.check(schema)
            else:
                check_schema(schema)
        except InvalidSchema as exc:
            raise ValueError(f"not a valid JSON Schema: {exc}") from exc
        if schema.get("type") != "object":
            raise ValueError("input_schema must describe an object")
        return schema

    @model_validator(mode="after")
    def _one_default_model(self) -> Service:
        defaults = [m.id for m in self.models if m.default]
        if len(defaults) > 1:
            raise ValueError(f"more than one default model: {defaults}")
        ids = [m.id for m in self.models]
        if len(set(ids)) != len(ids):
            raise ValueError("model ids must be unique within a service")
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError("backend names must be unique within a service")
        return self

    @property
    def default_model(self) -> ModelSpec:
        for model in self.models:
            if model.default:
                return model
        return self.models[0]

    def model(self, model_id: str | None) -> ModelSpec | None:
        if model_id is None:
            return self.default_model
        for model in self.models:
            if model.id == model_id:
                return model
        return None

    def price_for(self, model: ModelSpec) -> Price:
        return model.price or self.price


class CatalogFile(BaseModel):
    """The whole catalog.yaml document."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1]
    services: dict[str, Service]

    @model_validator(mode="before")
    @classmethod
    def _inject_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("services"), dict):
            for key, service in data["services"].items():
                if isinstance(service, dict):
                    service.setdefault("key", key)
        return data
