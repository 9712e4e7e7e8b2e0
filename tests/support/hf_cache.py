"""A Hugging Face cache on disk, laid out as huggingface_hub lays it out, for tests that must
not touch the network: ``models--org--name/blobs/<sha>``, ``snapshots/<commit>/<file>`` (a
symlink to its blob) and ``refs/<name>`` holding the commit."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest


def cache_model(
    cache: Path,
    repo_id: str,
    files: Mapping[str, bytes],
    *,
    ref: str = "main",
    commit: str | None = None,
) -> Path:
    """Put ``files`` (path in the repository -> bytes) in ``cache`` as the snapshot of
    ``repo_id`` that ``ref`` names; returns the snapshot directory."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = commit or hashlib.sha1(f"{repo_id}@{ref}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


def use_hub(monkeypatch: pytest.MonkeyPatch, cache: Path, *, offline: bool) -> Path:
    """Point huggingface_hub at ``cache`` (as ``HF_HUB_CACHE`` would) and, when ``offline``,
    put it in offline mode (as ``HF_HUB_OFFLINE=1`` would), until the test ends: both are read
    when huggingface_hub is imported, so a test in this process sets its constants."""
    cache.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", offline)
    return cache
