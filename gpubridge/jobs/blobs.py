"""Where the bytes of job files live: a local directory on one machine, or a bucket of an
S3-compatible object store (AWS S3, MinIO, Cloudflare R2, Ceph) that every gateway replica and
worker sharing the database also shares.

A store that cannot be reached, or that refuses this server, raises ``ServiceUnavailable``
(503) with a message that names the problem, never the store's own exception.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError, PermissionDeniedError, UnauthenticatedError
from obstore.store import S3Store

from gpubridge.errors import ServiceUnavailable
from gpubridge.settings import Settings

if TYPE_CHECKING:
    from obstore.store import ClientConfig, S3Config

log = logging.getLogger(__name__)

S3_RETRIES = 3
"""Retries of a request that failed to connect or got a 5xx answer, with backoff."""


class BlobStore(Protocol):
    """Where the bytes of files live, by key (a file id such as ``<hex>.png``)."""

    async def write(self, key: str, data: bytes) -> None: ...

    async def read(self, key: str) -> bytes | None:
        """The bytes, or None when no blob has this key."""
        ...

    async def delete(self, key: str) -> None:
        """Delete the blob, if there is one."""
        ...


class LocalBlobStore:
    """Blobs as files in one directory (created on first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        if "/" in key or key.startswith("."):
            raise ValueError(f"bad blob key {key!r}")
        return self.directory / key

    def _write(self, key: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self._path(f"{key}.partial")
        partial.write_bytes(data)
        partial.replace(self._path(key))

    async def write(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def read(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)


class S3BlobStore:
    """Blobs as objects in an S3 bucket, under an optional prefix."""

    def __init__(self, store: S3Store, bucket: str) -> None:
        self.store = store
        self.bucket = bucket

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        path_style: bool = True,
        timeout_s: float = 30.0,
    ) -> S3BlobStore:
        """A store for ``s3://bucket/prefix``. Without keys, the AWS environment variables or
        the machine's role provide the credentials. Nothing is sent until the first call."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"an object store URL is s3://bucket/prefix, not {url!r}")
        config: S3Config = {"region": region, "virtual_hosted_style_request": not path_style}
        if endpoint_url:
            config["endpoint"] = endpoint_url.rstrip("/")
        if access_key_id is not None and secret_access_key is not None:
            config["access_key_id"] = access_key_id
            config["secret_access_key"] = secret_access_key
        client: ClientConfig = {
            "allow_http": bool(endpoint_url and endpoint_url.startswith("http://")),
            "connect_timeout": timedelta(seconds=min(timeout_s, 5.0)),
            "timeout": timedelta(seconds=timeout_s),
        }
        store = S3Store(
            parts.netloc,
            prefix=parts.path.strip("/") or None,
            config=config,
            client_options=client,
            retry_config={"max_retries": S3_RETRIES, "retry_timeout": timedelta(seconds=timeout_s)},
        )
        return cls(store, parts.netloc)

    async def write(self, key: str, data: bytes) -> None:
        try:
            await obstore.put_async(self.store, key, data)
        except (BaseError, OSError) as exc:
            raise self._unavailable("store", exc) from None

    async def read(self, key: str) -> bytes | None:
        try:
            result = await obstore.get_async(self.store, key)
            return bytes(await result.bytes_async())
        except FileNotFoundError as exc:
            if _missing_bucket(exc):
                raise self._unavailable("read", exc) from None
            return None
        except (BaseError, OSError) as exc:
            raise self._unavailable("read", exc) from None

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self.store, key)
        except FileNotFoundError as exc:
            if _missing_bucket(exc):
                raise self._unavailable("delete", exc) from None
        except (BaseError, OSError) as exc:
            raise self._unavailable("delete", exc) from None

    def _unavailable(self, verb: str, exc: Exception) -> ServiceUnavailable:
        if isinstance(exc, PermissionDeniedError | UnauthenticatedError):
            reason = "the object store refused this server's credentials"
        elif isinstance(exc, FileNotFoundError):
            reason = f"the object store has no bucket {self.bucket!r}"
        else:
            reason = "the object store could not be reached"
        # The store's message holds the request and the server's answer (never the secret).
        log.warning("object store: could not %s a file: %s", verb, str(exc).split("\n")[0])
        return ServiceUnavailable(f"could not {verb} the file: {reason}; try again later")


def _missing_bucket(exc: FileNotFoundError) -> bool:
    """S3 answers 404 both for a missing key and a missing bucket; only its code tells."""
    return "NoSuchBucket" in str(exc)


def blob_store_from_settings(settings: Settings) -> BlobStore:
    """The object store ``object_store_url`` names, else the local ``files_dir``."""
    if not settings.object_store_url:
        return LocalBlobStore(settings.resolved_files_dir())
    secret = settings.object_store_secret_access_key
    return S3BlobStore.from_url(
        settings.object_store_url,
        endpoint_url=settings.object_store_endpoint_url,
        region=settings.object_store_region,
        access_key_id=settings.object_store_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        path_style=settings.object_store_path_style,
        timeout_s=settings.object_store_timeout_s,
    )
