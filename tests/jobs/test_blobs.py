"""Blob stores: a local directory, or a bucket of an S3-compatible object store whose failures
are clear 503s."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from gpubridge.errors import ServiceUnavailable
from gpubridge.jobs.blobs import LocalBlobStore, S3BlobStore, blob_store_from_settings
from gpubridge.settings import Settings
from tests.support.object_store import ACCESS_KEY_ID, SECRET_ACCESS_KEY


def s3_store(endpoint_url: str, bucket: str, prefix: str = "jobs") -> S3BlobStore:
    return S3BlobStore.from_url(
        f"s3://{bucket}/{prefix}",
        endpoint_url=endpoint_url,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        timeout_s=5,
    )


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_local_store_keeps_blobs_as_files_of_its_directory(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "files")
    assert await blobs.read("a.png") is None
    await blobs.write("a.png", b"png")
    assert (tmp_path / "files" / "a.png").read_bytes() == b"png"
    assert await blobs.read("a.png") == b"png"
    await blobs.delete("a.png")
    await blobs.delete("a.png")
    assert list((tmp_path / "files").iterdir()) == []


async def test_a_local_store_refuses_keys_that_leave_its_directory(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    for key in ("../a.png", "a/b.png", ".hidden"):
        with pytest.raises(ValueError, match="bad blob key"):
            await blobs.write(key, b"x")


async def test_an_s3_store_keeps_blobs_as_objects_under_its_prefix(s3: Any) -> None:
    bucket = s3.new_bucket()
    blobs = s3_store(s3.endpoint_url, bucket, prefix="gpubridge/files")
    assert await blobs.read("a.png") is None
    await blobs.write("a.png", b"png")
    assert s3.keys(bucket) == ["gpubridge/files/a.png"]
    assert await blobs.read("a.png") == b"png"
    await blobs.delete("a.png")
    await blobs.delete("a.png")
    assert s3.keys(bucket) == []
    assert await blobs.read("a.png") is None


async def test_an_unreachable_store_is_unavailable_for_every_operation() -> None:
    blobs = s3_store(f"http://127.0.0.1:{closed_port()}", "files")
    for operation in (blobs.write("a.png", b"x"), blobs.read("a.png"), blobs.delete("a.png")):
        with pytest.raises(ServiceUnavailable, match="could not be reached") as raised:
            await operation
        assert raised.value.status == 503
        assert raised.value.code == "service_unavailable"


async def test_a_missing_bucket_is_unavailable_not_a_missing_file(s3: Any) -> None:
    blobs = s3_store(s3.endpoint_url, "no-such-bucket")
    for operation in (blobs.write("a.png", b"x"), blobs.read("a.png"), blobs.delete("a.png")):
        with pytest.raises(ServiceUnavailable, match="no bucket 'no-such-bucket'"):
            await operation


async def test_a_store_that_refuses_the_credentials_is_unavailable(s3: Any) -> None:
    blobs = s3_store(s3.endpoint_url, s3.new_bucket())
    await blobs.write("a.png", b"x")
    with s3.refusing():
        for operation in (blobs.write("b.png", b"x"), blobs.read("a.png"), blobs.delete("a.png")):
            with pytest.raises(ServiceUnavailable, match="refused this server's credentials"):
                await operation
    assert await blobs.read("a.png") == b"x"


async def test_the_settings_choose_the_local_directory_unless_an_object_store_is_named(
    tmp_path: Path, s3: Any
) -> None:
    local = blob_store_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalBlobStore)
    assert local.directory == tmp_path / "files"

    bucket = s3.new_bucket()
    shared = blob_store_from_settings(Settings(data_dir=tmp_path, **s3.settings(bucket, "a/b")))
    await shared.write("c.wav", b"wav")
    assert s3.keys(bucket) == ["a/b/c.wav"]
    assert not (tmp_path / "files").exists()


def test_an_s3_store_needs_an_s3_url() -> None:
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        S3BlobStore.from_url("https://files.example.com/bucket")
