"""``/metrics`` for the worker processes: read from the pool at each scrape, never stored."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gpubridge.engines.workers.pool import WorkerPool


class WorkerCollector(Collector):
    """Each worker's state, models, memory and jobs, labelled by worker and device."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Any]:
        labels = ["worker", "device"]
        up = GaugeMetricFamily("gpubridge_worker_up", "1 when the worker is ready", labels=labels)
        starts = CounterMetricFamily(
            "gpubridge_worker_starts", "Times the worker process was started", labels=labels
        )
        running = GaugeMetricFamily(
            "gpubridge_worker_running_jobs", "Jobs running on the worker", labels=labels
        )
        models = GaugeMetricFamily(
            "gpubridge_worker_loaded_models", "Models resident in the worker", labels=labels
        )
        resident = GaugeMetricFamily(
            "gpubridge_worker_model_bytes", "Bytes of the resident models", labels=labels
        )
        budget = GaugeMetricFamily(
            "gpubridge_worker_model_budget_bytes",
            "The worker's model memory budget (0: automatic, -1: none)",
            labels=labels,
        )
        rss = GaugeMetricFamily(
            "gpubridge_worker_rss_bytes", "Resident memory of the worker process", labels=labels
        )
        device = GaugeMetricFamily(
            "gpubridge_worker_device_allocated_bytes",
            "GPU memory allocated by the worker (CUDA workers)",
            labels=labels,
        )
        restart = GaugeMetricFamily(
            "gpubridge_worker_last_restart_seconds",
            "From the worker's last death to its return",
            labels=labels,
        )
        for w in self.pool.snapshot():
            key = [w["name"], w["device"]]
            up.add_metric(key, 1 if w["ready"] else 0)
            starts.add_metric(key, w["starts"])
            running.add_metric(key, len(w["running_jobs"]))
            models.add_metric(key, len(w["models"]))
            resident.add_metric(key, w["resident_bytes"] or 0)
            budget.add_metric(key, -1 if w["budget_bytes"] is None else w["budget_bytes"])
            rss.add_metric(key, w["rss_bytes"] or 0)
            if w["device_memory"]:
                device.add_metric(key, w["device_memory"]["allocated_bytes"])
            if w["last_restart_s"] is not None:
                restart.add_metric(key, w["last_restart_s"])
        yield from (up, starts, running, models, resident, budget, rss, device, restart)
        retried = CounterMetricFamily(
            "gpubridge_worker_retried_jobs",
            "Jobs run again after their worker died before they produced output",
        )
        retried.add_metric([], self.pool.retried_jobs)
        yield retried
        if self.pool.last_cancel_to_free_s is not None:
            freed = GaugeMetricFamily(
                "gpubridge_worker_last_cancel_to_free_seconds",
                "From the last cancel of a running job to its worker being free",
            )
            freed.add_metric([], self.pool.last_cancel_to_free_s)
            yield freed
