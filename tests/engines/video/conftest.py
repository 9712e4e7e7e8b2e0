"""Tiny video pipelines built once per test run; tests run torch on one CPU thread."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.tiny_video import build_tiny_ltx, build_tiny_svd, build_tiny_wan


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one CPU thread: several threads on tensors this small spend
    their time waiting for each other, the more so on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_ltx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with one_torch_thread():
        return build_tiny_ltx(tmp_path_factory.mktemp("ltx-video"))


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with one_torch_thread():
        return build_tiny_wan(tmp_path_factory.mktemp("wan"))


@pytest.fixture(scope="session")
def tiny_svd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with one_torch_thread():
        return build_tiny_svd(tmp_path_factory.mktemp("svd"))
