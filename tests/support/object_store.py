"""A local S3 server (moto's, on a free loopback port) for the object store's tests.

with serve_s3() as s3:
    bucket = s3.new_bucket()
    settings = settings_for(..., **s3.settings(bucket))
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from moto.server import ThreadedMotoServer

ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"


@dataclass
class LocalS3:
    endpoint_url: str

    def new_bucket(self) -> str:
        """A fresh empty bucket, so that tests never see each other's objects."""
        name = f"files-{uuid.uuid4().hex[:12]}"
        response = httpx.put(f"{self.endpoint_url}/{name}", timeout=10)
        response.raise_for_status()
        return name

    def keys(self, bucket: str) -> list[str]:
        """The keys of the bucket's objects."""
        import xml.etree.ElementTree as ElementTree

        response = httpx.get(f"{self.endpoint_url}/{bucket}?list-type=2", timeout=10)
        response.raise_for_status()
        tree = ElementTree.fromstring(response.content)
        return sorted(node.text or "" for node in tree.iter() if node.tag.endswith("}Key"))

    def settings(self, bucket: str, prefix: str = "jobs") -> dict[str, Any]:
        """The gpubridge settings of an object store in ``bucket`` of this server."""
        return {
            "object_store_url": f"s3://{bucket}/{prefix}",
            "object_store_endpoint_url": self.endpoint_url,
            "object_store_access_key_id": ACCESS_KEY_ID,
            "object_store_secret_access_key": SECRET_ACCESS_KEY,
            "object_store_timeout_s": 10.0,
        }

    @contextmanager
    def refusing(self) -> Iterator[None]:
        """The server checks credentials while inside, and knows none: every request is 403."""
        self._set_auth(b"0")
        try:
            yield
        finally:
            self._set_auth(b"inf")

    def _set_auth(self, unchecked_requests: bytes) -> None:
        url = f"{self.endpoint_url}/moto-api/reset-auth"
        httpx.post(url, content=unchecked_requests, timeout=10).raise_for_status()


@contextmanager
def serve_s3() -> Iterator[LocalS3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield LocalS3(f"http://{host}:{port}")
    finally:
        server.stop()
