"""Files of jobs: media inputs fetched at submission and outputs served at ``/files/{id}``.

A file's record (job, role, type, size, expiry) is a database row; its bytes live in a
``BlobStore`` (``jobs/blobs.py``): a local directory by default, or an S3-compatible bucket
that replicas share. Outputs expire with their job's results; inputs once the job can no longer
run.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gpubridge.db import Database
from gpubridge.db.engine import as_utc, utcnow
from gpubridge.db.tables import files
from gpubridge.engines.base import MediaInput, OutputFile
from gpubridge.errors import Expired, NotFound, ServiceUnavailable
from gpubridge.jobs.blobs import BlobStore

log = logging.getLogger(__name__)

_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "audio/wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
}


@dataclass(frozen=True)
class StoredFile:
    id: str
    content_type: str
    size_bytes: int
    expires_at: datetime
    field: str | None = None


def new_file_id(content_type: str) -> str:
    """An unguessable id that ends with the type's usual extension (``....png``)."""
    extension = _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type) or ""
    return uuid.uuid4().hex + extension


class FileStore:
    """Job files: rows in the database, bytes in a ``BlobStore``."""

    def __init__(self, db: Database, blobs: BlobStore, *, public_url: str) -> None:
        self.db = db
        self.blobs = blobs
        self.public_url = public_url.rstrip("/")

    def url(self, file_id: str) -> str:
        return f"{self.public_url}/files/{file_id}"

    async def save_inputs(
        self, media: Mapping[str, MediaInput], expires_at: datetime
    ) -> list[StoredFile]:
        """Write the bytes of fetched inputs; ``record_inputs`` adds their rows with the job."""
        stored: list[StoredFile] = []
        try:
            for item in media.values():
                file_id = new_file_id(item.content_type)
                await self.blobs.write(file_id, item.data)
                stored.append(
                    StoredFile(file_id, item.content_type, len(item.data), expires_at, item.field)
                )
        except BaseException:
            await self.discard(stored)
            raise
        return stored

    async def record_inputs(
        self, conn: AsyncConnection, job_id: str, stored: list[StoredFile]
    ) -> None:
        for item in stored:
            await _insert(conn, item, job_id=job_id, role="input")

    async def discard(self, stored: list[StoredFile]) -> None:
        """Delete blobs written for a job that was not created after all (what the store
        cannot delete now stays behind, unreferenced)."""
        for item in stored:
            try:
                await self.blobs.delete(item.id)
            except ServiceUnavailable:
                log.warning("an input file of a job not created stays in the object store")

    async def job_inputs(self, job_id: str) -> dict[str, MediaInput]:
        """The media inputs of a job, by field."""
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    select(files.c.id, files.c.field, files.c.content_type).where(
                        files.c.job_id == job_id, files.c.role == "input"
                    )
                )
            ).all()
        media = {}
        for row in rows:
            data = await self.blobs.read(row.id)
            if data is not None and row.field:
                media[row.field] = MediaInput(row.field, data, row.content_type)
        return media

    async def save_output(
        self, job_id: str, item: OutputFile, expires_at: datetime, field: str | None
    ) -> StoredFile:
        file_id = new_file_id(item.content_type)
        await self.blobs.write(file_id, item.data)
        stored = StoredFile(file_id, item.content_type, len(item.data), expires_at, field)
        async with self.db.begin() as conn:
            await _insert(conn, stored, job_id=job_id, role="output")
        return stored

    async def read(self, file_id: str) -> tuple[StoredFile, bytes]:
        """A file and its bytes; ``NotFound`` or ``Expired`` (both 404) otherwise."""
        async with self.db.connect() as conn:
            row = (await conn.execute(select(files).where(files.c.id == file_id))).first()
        if row is None:
            raise NotFound(f"no file {file_id}", code="file_not_found")
        expires_at = as_utc(row.expires_at)
        assert expires_at is not None
        stored = StoredFile(row.id, row.content_type, row.size_bytes, expires_at, row.field)
        if stored.expires_at <= utcnow():
            raise Expired("this file expired with its job's results", code="expired")
        data = await self.blobs.read(file_id)
        if data is None:
            raise Expired("this file is no longer stored", code="expired")
        return stored, data

    async def purge_expired(self, now: datetime | None = None, limit: int = 500) -> int:
        """Delete up to ``limit`` expired files (bytes first, then rows); returns how many.

        A file whose bytes the store cannot delete now keeps its row, for a later purge."""
        now = now or utcnow()
        async with self.db.connect() as conn:
            ids = (
                (
                    await conn.execute(
                        select(files.c.id).where(files.c.expires_at <= now).limit(limit)
                    )
                )
                .scalars()
                .all()
            )
        deleted = []
        for file_id in ids:
            try:
                await self.blobs.delete(file_id)
            except ServiceUnavailable:
                break  # the store is down or refusing: the rest waits for the next purge
            deleted.append(file_id)
        if deleted:
            async with self.db.begin() as conn:
                await conn.execute(delete(files).where(files.c.id.in_(deleted)))
        return len(deleted)

    def output_view(
        self, stored: StoredFile, item: OutputFile, inline_bytes: int
    ) -> dict[str, Any]:
        """What a job's output shows for a file it produced."""

        view: dict[str, Any] = {
            "url": self.url(stored.id),
            "file_id": stored.id,
            "content_type": stored.content_type,
            "size_bytes": stored.size_bytes,
            "expires_at": stored.expires_at.isoformat(),
            **item.metadata,
        }
        if stored.size_bytes <= inline_bytes:
            view["base64"] = base64.b64encode(item.data).decode("ascii")
        return view


async def _insert(conn: AsyncConnection, item: StoredFile, *, job_id: str, role: str) -> None:
    await conn.execute(
        insert(files).values(
            id=item.id,
            job_id=job_id,
            role=role,
            field=item.field,
            content_type=item.content_type,
            size_bytes=item.size_bytes,
            created_at=utcnow(),
            expires_at=item.expires_at,
        )
    )


def expiry(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
