"""The use cases both front doors share: quote, submit, run, get, cancel, stream."""

from gpubridge.gateway.core import Gateway
from gpubridge.gateway.intake import Submitted
from gpubridge.gateway.paid_intake import PaidSubmission
from gpubridge.gateway.runner import JobRunner
from gpubridge.gateway.views import job_view, service_summary

__all__ = ["Gateway", "JobRunner", "PaidSubmission", "Submitted", "job_view", "service_summary"]
