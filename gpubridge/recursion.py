"""Keeping the interpreter's recursion limit where Python set it.

Some third-party packages raise ``sys.setrecursionlimit`` for the whole process when imported
(``py_ecc``, pulled in by ``eth_account``, sets it to 100,000). The C stack overflows long
before that, so from then on any deep recursion (a parser, a ``repr``) crashes the process
instead of raising ``RecursionError``. Import such packages inside `keep_recursion_limit`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def keep_recursion_limit() -> Iterator[None]:
    """Restore the recursion limit on leaving, whatever the code inside set it to."""
    limit = sys.getrecursionlimit()
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)
