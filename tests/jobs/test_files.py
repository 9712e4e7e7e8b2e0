"""Job files: rows in the database and bytes in a blob store (a local directory, or a bucket
of an S3-compatible object store), read back until they expire, then purged."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import accounts, files
from gpubridge.engines.base import MediaInput, OutputFile
from gpubridge.errors import Expired, NotFound, ServiceUnavailable
from gpubridge.jobs import store
from gpubridge.jobs.blobs import BlobStore, LocalBlobStore, S3BlobStore
from gpubridge.jobs.files import FileStore, expiry
from gpubridge.jobs.status import JobStatus
from tests.support.object_store import ACCESS_KEY_ID, SECRET_ACCESS_KEY

LATER = timedelta(hours=1)


@pytest.fixture(params=["local", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each test runs on the local directory and on a fresh bucket of the local S3 server."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "files")
    s3: Any = request.getfixturevalue("s3")
    return S3BlobStore.from_url(
        f"s3://{s3.new_bucket()}/jobs",
        endpoint_url=s3.endpoint_url,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )


@pytest.fixture
def file_store(database: Any, blobs: BlobStore) -> FileStore:
    return FileStore(database, blobs, public_url="https://gpu.example.com/")


async def new_job(db: Any) -> str:
    account_id, job_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with db.begin() as conn:
        await conn.execute(
            insert(accounts).values(
                id=account_id, webhook_secret="s", daily_limit_micros=1, created_at=utcnow()
            )
        )
        await store.insert_job(
            conn,
            id=job_id,
            account_id=account_id,
            service="caption",
            model="m",
            input={},
            status=JobStatus.RUNNING.value,
            hold_micros=0,
        )
    return job_id


async def test_an_output_is_stored_and_read_back_with_its_record(file_store, database):
    job_id = await new_job(database)
    item = OutputFile(b"\x89PNG...", "image/png", {"width": 16})
    stored = await file_store.save_output(job_id, item, expiry(3600), "image")
    assert stored.id.endswith(".png")
    read, data = await file_store.read(stored.id)
    assert data == b"\x89PNG..."
    assert (read.content_type, read.size_bytes, read.field) == ("image/png", 7, "image")
    view = file_store.output_view(stored, item, inline_bytes=4)
    assert view["url"] == f"https://gpu.example.com/files/{stored.id}"
    assert view["width"] == 16
    assert "base64" not in view
    assert file_store.output_view(stored, item, inline_bytes=7)["base64"] == "iVBORy4uLg=="


async def test_inputs_recorded_with_their_job_come_back_by_field(file_store, database):
    job_id = await new_job(database)
    media = {
        "image_url": MediaInput("image_url", b"png", "image/png"),
        "audio_url": MediaInput("audio_url", b"wav", "audio/wav"),
    }
    stored = await file_store.save_inputs(media, utcnow() + LATER)
    async with database.begin() as conn:
        await file_store.record_inputs(conn, job_id, stored)
    assert await file_store.job_inputs(job_id) == media
    assert await file_store.job_inputs(await new_job(database)) == {}


async def test_discarded_inputs_leave_no_bytes_behind(file_store, blobs):
    stored = await file_store.save_inputs(
        {"image_url": MediaInput("image_url", b"png", "image/png")}, utcnow() + LATER
    )
    assert await blobs.read(stored[0].id) == b"png"
    await file_store.discard(stored)
    assert await blobs.read(stored[0].id) is None


async def test_an_unknown_file_is_not_found_and_an_expired_one_expired(file_store, database):
    with pytest.raises(NotFound) as missing:
        await file_store.read("0123456789abcdef.png")
    assert missing.value.code == "file_not_found"
    job_id = await new_job(database)
    old = await file_store.save_output(
        job_id, OutputFile(b"x", "audio/wav"), utcnow() - timedelta(seconds=1), None
    )
    with pytest.raises(Expired):
        await file_store.read(old.id)


async def test_a_file_whose_bytes_are_gone_is_expired(file_store, database, blobs):
    job_id = await new_job(database)
    stored = await file_store.save_output(job_id, OutputFile(b"x", "audio/wav"), expiry(60), None)
    await blobs.delete(stored.id)
    with pytest.raises(Expired, match="no longer stored"):
        await file_store.read(stored.id)


async def test_purging_deletes_the_bytes_and_rows_of_expired_files_only(
    file_store, database, blobs
):
    job_id = await new_job(database)
    now = utcnow()
    old = [
        await file_store.save_output(job_id, OutputFile(b"old", "image/png"), now, None)
        for _ in range(3)
    ]
    kept = await file_store.save_output(job_id, OutputFile(b"new", "image/png"), now + LATER, None)
    assert await file_store.purge_expired(now, limit=2) == 2
    assert await file_store.purge_expired(now) == 1
    assert await file_store.purge_expired(now) == 0
    for item in old:
        assert await blobs.read(item.id) is None
    assert await blobs.read(kept.id) == b"new"
    async with database.connect() as conn:
        assert (await conn.execute(select(files.c.id))).scalars().all() == [kept.id]


class RefusingAfter(LocalBlobStore):
    """A local store that refuses every write after the first ``writes``, as a store that
    becomes unreachable would."""

    def __init__(self, directory: Path, writes: int) -> None:
        super().__init__(directory)
        self.writes = writes

    async def write(self, key: str, data: bytes) -> None:
        if self.writes == 0:
            raise ServiceUnavailable("could not store the file: the object store is down")
        self.writes -= 1
        await super().write(key, data)


async def test_inputs_saved_before_the_store_failed_are_deleted(database, tmp_path):
    blobs = RefusingAfter(tmp_path / "files", writes=1)
    file_store = FileStore(database, blobs, public_url="")
    media = {
        "image_url": MediaInput("image_url", b"png", "image/png"),
        "audio_url": MediaInput("audio_url", b"wav", "audio/wav"),
    }
    with pytest.raises(ServiceUnavailable):
        await file_store.save_inputs(media, utcnow() + LATER)
    assert list((tmp_path / "files").iterdir()) == []


async def test_a_store_refusing_deletes_keeps_the_rows_for_a_later_purge(database, s3):
    bucket = s3.new_bucket()
    blobs = S3BlobStore.from_url(
        f"s3://{bucket}",
        endpoint_url=s3.endpoint_url,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    file_store = FileStore(database, blobs, public_url="")
    job_id = await new_job(database)
    now = utcnow()
    stored = await file_store.save_output(job_id, OutputFile(b"x", "image/png"), now, None)
    with s3.refusing():
        assert await file_store.purge_expired(now) == 0
    assert s3.keys(bucket) == [stored.id]
    assert await file_store.purge_expired(now) == 1
    assert s3.keys(bucket) == []
