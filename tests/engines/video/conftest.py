"""Tiny video pipelines built once per test run; tests run torch on one CPU thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.engine_calls import model_dir_fixture
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


def single_threaded(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
    """``build`` run on one torch thread."""

    def built(directory: Path) -> Path:
        with one_torch_thread():
            return build(directory)

    return built


tiny_ltx_dir = model_dir_fixture(single_threaded(build_tiny_ltx), "ltx-video")
tiny_wan_dir = model_dir_fixture(single_threaded(build_tiny_wan), "wan")
tiny_svd_dir = model_dir_fixture(single_threaded(build_tiny_svd), "svd")
