"""Webhook delivery: signed per Standard Webhooks, retried with backoff, every attempt recorded."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from gpubridge.errors import InvalidInput
from gpubridge.jobs.netguard import LazyGuardedClient
from gpubridge.settings import Settings

logger = logging.getLogger(__name__)

# URL rejections that waiting cannot fix; an unresolvable host is retried.
_PERMANENT_URL_ERRORS = frozenset({"invalid_url", "unsafe_url"})


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt: its 1-based number and the status code or the error."""

    webhook_id: str
    number: int
    status_code: int | None
    error: str | None
    duration_s: float

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """Delivers signed webhook events over one shared HTTP client; call `aclose` when done.

    URLs must be https; with ``allow_private`` any private address is allowed too, and plain
    http to loopback (development). Redirects are never followed: a 3xx is a failed attempt.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 2.0,
    ) -> None:
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._client = LazyGuardedClient(
            allow_private=allow_private, require_https=True, timeout_s=timeout_s
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSender:
        return cls(
            allow_private=settings.allow_private_urls,
            timeout_s=settings.webhook_timeout_s,
            retries=settings.webhook_retries,
            backoff_s=settings.webhook_backoff_s,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deliver(
        self,
        url: str,
        secret: str,
        event_type: str,
        payload: dict[str, Any],
        *,
        record: Callable[[Attempt], Awaitable[None]],
    ) -> bool:
        """Deliver one event; return whether a 2xx came back.

        Makes up to ``1 + retries`` attempts with one webhook id and body, waiting
        ``backoff_s * 2**n`` after failed attempt ``n`` (0-based). Each attempt is passed to
        ``record``. A URL rejected as invalid or unsafe ends delivery at once.
        """
        signer = Webhook(secret)
        webhook_id = f"msg_{uuid.uuid4().hex}"
        event_time = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = json.dumps(
            {"type": event_type, "timestamp": event_time, "data": payload}, separators=(",", ":")
        )
        for n in range(self._retries + 1):
            if n:
                await asyncio.sleep(self._backoff_s * 2 ** (n - 1))
            attempt, retryable = await self._attempt(url, signer, webhook_id, body, n + 1)
            log = logger.info if attempt.delivered else logger.warning
            log(
                "webhook attempt",
                extra={
                    "webhook_id": webhook_id,
                    "event_type": event_type,
                    "attempt": attempt.number,
                    "status_code": attempt.status_code,
                    "error": attempt.error,
                },
            )
            await record(attempt)
            if attempt.delivered:
                return True
            if not retryable:
                break
        return False

    async def _attempt(
        self, url: str, signer: Webhook, webhook_id: str, body: str, number: int
    ) -> tuple[Attempt, bool]:
        """Send once; return the attempt and whether another attempt may succeed."""
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "gpubridge-webhooks",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(webhook_id, now, body),
        }
        status_code: int | None = None
        error: str | None = None
        retryable = True
        started = time.monotonic()
        import httpx  # loaded with the client, on the first delivery

        try:
            async with (
                asyncio.timeout(self._timeout_s),
                self._client.get().stream(
                    "POST", url, content=body.encode(), headers=headers
                ) as resp,
            ):
                status_code = resp.status_code
        except InvalidInput as exc:
            error = f"{exc.code}: {exc.message}"
            retryable = exc.code not in _PERMANENT_URL_ERRORS
        except httpx.InvalidURL as exc:
            error = f"invalid_url: {exc}"
            retryable = False
        except TimeoutError:
            error = "timeout"
        except (httpx.HTTPError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        duration_s = time.monotonic() - started
        return Attempt(webhook_id, number, status_code, error, duration_s), retryable
