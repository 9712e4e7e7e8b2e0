"""Prometheus metrics of one gateway process (its own registry, no global state)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

from gpubridge.jobs.store import JobRecord
from gpubridge.payments.ledger_check import LedgerReport

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    """Jobs submitted and finished, how long they ran and what they cost."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.submitted = Counter(
            "gpubridge_jobs_submitted", "Jobs accepted", ["service"], registry=self.registry
        )
        self.finished = Counter(
            "gpubridge_jobs_finished",
            "Jobs that ended, by final status",
            ["service", "status"],
            registry=self.registry,
        )
        self.execution = Histogram(
            "gpubridge_job_execution_seconds",
            "Time from start to end of completed jobs",
            ["service"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.charged = Counter(
            "gpubridge_charged_micro_usd",
            "Micro-USD captured from completed jobs",
            ["service"],
            registry=self.registry,
        )
        self.ledger_ok = Gauge(
            "gpubridge_ledger_check_ok",
            "1 when the last ledger check found nothing wrong, 0 when it found problems, "
            "-1 before the first check",
            registry=self.registry,
        )
        self.ledger_ok.set(-1)
        self.process = Info(
            "gpubridge_process",
            "The process that answered (`gpubridge serve --processes N` runs several, each "
            "with metrics of its own)",
            registry=self.registry,
        )
        self.process.info({"pid": str(os.getpid())})
        self.ledger_findings = Gauge(
            "gpubridge_ledger_check_findings",
            "Broken invariants found by the last ledger check",
            registry=self.registry,
        )
        self.ledger_checked_at = Gauge(
            "gpubridge_ledger_check_timestamp_seconds",
            "When the last ledger check ran (Unix time)",
            registry=self.registry,
        )

    def ledger_checked(self, report: LedgerReport) -> None:
        self.ledger_ok.set(1 if report.ok else 0)
        self.ledger_findings.set(len(report.findings))
        self.ledger_checked_at.set_to_current_time()

    def job_submitted(self, job: JobRecord) -> None:
        self._child(self.submitted, job.service).inc()

    def job_finished(self, job: JobRecord) -> None:
        self._child(self.finished, job.service, job.status.value).inc()
        if job.execution_ms is not None and job.status.value == "completed":
            self._child(self.execution, job.service).observe(job.execution_ms / 1000)
        if job.cost_micros:
            self._child(self.charged, job.service).inc(job.cost_micros)

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, kept: the label sets are few (services, statuses) and
        looking one up anew costs a lock and several checks on every job."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
