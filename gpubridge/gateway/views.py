"""The public shapes of jobs and services (HTTP, webhooks, MCP), and prices in words."""

from __future__ import annotations

from typing import Any

from gpubridge.catalog import Price, Service
from gpubridge.catalog.availability import ServiceReport, Verdict
from gpubridge.catalog.portable import portable_schema
from gpubridge.jobs.status import JobStatus
from gpubridge.jobs.store import JobRecord
from gpubridge.money import micros_to_decimal, micros_to_usd

_UNIT_NAMES = {
    "token": ("token", "tokens"),
    "audio_second": ("second of audio", "seconds of audio"),
    "output": ("output", "outputs"),
    "second": ("second of GPU time", "seconds of GPU time"),
}


def job_view(job: JobRecord, public_url: str = "") -> dict[str, Any]:
    """The public JSON shape of a job (GET /status, webhooks, MCP)."""
    view: dict[str, Any] = {
        "id": job.id,
        "job_id": job.id,
        "service": job.service,
        "model": job.model,
        "status": job.status.value,
        "status_url": f"{public_url}/status/{job.id}",
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
        "execution_time_seconds": (
            round(job.execution_ms / 1000, 3) if job.execution_ms is not None else None
        ),
        "estimated_cost_usd": micros_to_usd(job.hold_micros),
        "cost_usd": micros_to_usd(job.cost_micros) if job.cost_micros is not None else None,
        "backend": job.backend,
    }
    if job.status == JobStatus.COMPLETED:
        view["output"] = job.output
        view["usage"] = job.usage
    if job.error is not None:
        view["error"] = job.error
    if job.progress is not None and not job.status.is_terminal:
        view["progress"] = job.progress
    if job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        view["refunded_usd"] = micros_to_usd(job.hold_micros)
    return view


def service_summary(service: Service, report: ServiceReport) -> dict[str, Any]:
    """The public catalog entry of a service, saying whether it and each model can run now
    (``report``) and why not."""
    price = service.price
    return {
        "key": service.key,
        "name": service.name,
        "category": service.category,
        "description": service.description,
        "mode": service.mode,
        **availability_fields(report.verdict, "unavailable_reason"),
        "estimated_seconds": service.estimated_seconds,
        "pricing": {
            "unit": price.unit,
            "from_usd": micros_to_usd(price.minimum_micros),
            "micros": price.micros,
            "per": price.per,
        },
        "models": [
            {
                "id": m.id,
                "source": m.source,
                "default": m is service.default_model,
                "description": m.description,
                "license": m.license,
                **availability_fields(report.models[m.id], "reason"),
                **(
                    {
                        "from_usd": micros_to_usd(m.price.minimum_micros),
                        "price_micros": m.price.micros,
                        "per": m.price.per,
                    }
                    if m.price
                    else {}
                ),
            }
            for m in service.models
        ],
        "input_schema": portable_schema(service.input_schema),
        "output_schema": (
            portable_schema(service.output_schema) if service.output_schema is not None else None
        ),
    }


def availability_fields(verdict: Verdict, reason_key: str) -> dict[str, Any]:
    """``{"available": true}``, or false with the reason under ``reason_key``."""
    if verdict.available:
        return {"available": True}
    return {"available": False, reason_key: verdict.reason}


def price_text(price: Price) -> str:
    """E.g. 'from $0.003 ($0.59 per 1M input tokens, $0.79 per 1M output tokens)'."""
    if price.unit == "token":
        text = f"${_usd(price.micros)} {_per(price.per, ('input token', 'input tokens'))}"
        if price.output_tokens_micros is not None:
            output = ("output token", "output tokens")
            text += f", ${_usd(price.output_tokens_micros)} {_per(price.per, output)}"
    else:
        text = f"${_usd(price.micros)} {_per(price.per, _UNIT_NAMES[price.unit])}"
    return f"from ${_usd(price.minimum_micros)} ({text})"


def _per(count: int, unit: tuple[str, str]) -> str:
    if count == 1:
        return f"per {unit[0]}"
    amount = "1M" if count == 1_000_000 else f"{count:,}"
    return f"per {amount} {unit[1]}"


def _usd(micros: int) -> str:
    return format(micros_to_decimal(micros).normalize(), "f")
