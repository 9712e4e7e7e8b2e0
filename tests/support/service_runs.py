"""Run services end to end: the real app for a catalog edit, a funded API key, POST /run polled
to a terminal status, output files downloaded from /files/{id}.

    async with service_runs(database_url, tmp_path, edit) as runs:
        job = await runs.run("ocr", {"image_url": url})
        png = await runs.download(job["output"]["image"])
        runs.assert_charged(job)
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette

from tests.support.gateway_app import (
    CatalogEdit,
    auth,
    register,
    running_app,
    settings_for,
    write_catalog,
)

if TYPE_CHECKING:
    from PIL import Image

CREDIT = 10_000_000
"""Micro-dollars granted to the key: enough for any test job."""
EMAIL = "you@example.com"
TERMINAL = ("completed", "failed", "cancelled")

Job = dict[str, Any]


@dataclass
class ServiceRuns:
    """A running app, its in-process client and a registered, funded API key."""

    app: Starlette
    client: httpx.AsyncClient
    key: str
    email: str = EMAIL

    @property
    def headers(self) -> dict[str, str]:
        return auth(self.key)

    async def submit(self, service: str, input: dict[str, Any]) -> httpx.Response:
        """POST /run with the key; the answer as it comes."""
        body = {"service": service, "input": input}
        return await self.client.post("/run", json=body, headers=self.headers)

    async def run(
        self,
        service: str,
        input: dict[str, Any],
        *,
        timeout_s: float = 60,
        poll_s: float = 0.05,
        expect: str | None = "completed",
        http_status: int | None = None,
    ) -> Job:
        """Submit a job and poll /status every ``poll_s`` until it is terminal, for at most
        ``timeout_s``.

        ``expect`` is the status the job must end in (``None``: any terminal one);
        ``http_status`` the answer POST /run must give (default: 200 or 202).
        """
        response = await self.submit(service, input)
        if http_status is None:
            assert response.status_code in (200, 202), response.text
        else:
            assert response.status_code == http_status, response.text
        job: Job = response.json()
        async with asyncio.timeout(timeout_s):
            while job["status"] not in TERMINAL:
                await asyncio.sleep(poll_s)
                status = await self.client.get(f"/status/{job['job_id']}", headers=self.headers)
                job = status.json()
        if expect is not None:
            assert job["status"] == expect, job
        return job

    async def download(self, file: dict[str, Any]) -> bytes:
        """The bytes of an output file view, checking the answer's status, type and size."""
        response = await self.client.get(f"/files/{file['file_id']}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith(file["content_type"])
        if "size_bytes" in file:
            assert len(response.content) == file["size_bytes"]
        return bytes(response.content)

    async def image(self, file: dict[str, Any]) -> Image.Image:
        """An output image file, downloaded and opened with Pillow."""
        from PIL import Image

        return Image.open(io.BytesIO(await self.download(file)))

    @staticmethod
    def assert_charged(job: Job) -> None:
        """The job was charged something, and no more than it was quoted."""
        assert 0 < job["cost_usd"] <= job["estimated_cost_usd"], job


@asynccontextmanager
async def service_runs(
    database_url: str,
    tmp_path: Path,
    edit: CatalogEdit | None = None,
    *,
    catalog: bool = True,
    credit: int = CREDIT,
    email: str = EMAIL,
    **settings: Any,
) -> AsyncIterator[ServiceRuns]:
    """The app on the packaged catalog changed by ``edit`` (``catalog=False``: on the catalog
    the settings choose, e.g. ``starter=True``), with a key for ``email`` granted ``credit``."""
    path = write_catalog(tmp_path / "catalog.yaml", edit) if catalog else None
    options = settings_for(database_url, tmp_path, path, **settings)  # type: ignore[arg-type]
    async with running_app(options) as (app, client):
        key = await register(client, email)
        await app.state.gateway.grant(email, credit)
        yield ServiceRuns(app, client, key, email)


StartServices = Callable[..., AbstractAsyncContextManager[ServiceRuns]]
"""``service_runs`` with the database and the directory already given, as the ``services``
fixture hands it out: ``async with services(edit) as runs``."""
