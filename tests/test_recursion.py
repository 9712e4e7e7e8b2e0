"""Imports that raise the interpreter's recursion limit do not keep it raised."""

from __future__ import annotations

import sys

import pytest

from gpubridge.recursion import keep_recursion_limit


def test_the_recursion_limit_is_restored_after_code_that_raised_it() -> None:
    before = sys.getrecursionlimit()
    with keep_recursion_limit():
        sys.setrecursionlimit(before + 12_345)
    assert sys.getrecursionlimit() == before


def test_the_recursion_limit_is_restored_when_the_code_inside_fails() -> None:
    before = sys.getrecursionlimit()
    with pytest.raises(ImportError), keep_recursion_limit():
        sys.setrecursionlimit(before + 1)
        raise ImportError("no such package")
    assert sys.getrecursionlimit() == before
