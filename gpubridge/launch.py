"""The ``gpubridge`` command's entry point: what it loads, and how.

The garbage collector stays off while the program loads. Loading the gateway makes some
400,000 objects and next to no garbage, and with the collector on, it walks them again and
again while they are made: about a tenth of a start. The command turns it back on when its
work begins: ``serve`` once it has started (after freezing what the start made, see
``create_app``), every other command at once.

SQLAlchemy's asyncio package loads without its ORM session (``load_async_engine``).
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import sys
from importlib.machinery import PathFinder
from types import ModuleType
from typing import Any

ASYNCIO = "sqlalchemy.ext.asyncio"

ENGINE_NAMES = {
    "engine": (
        "AsyncConnection",
        "AsyncEngine",
        "AsyncTransaction",
        "async_engine_from_config",
        "create_async_engine",
        "create_async_pool_from_url",
    ),
    "result": ("AsyncMappingResult", "AsyncResult", "AsyncScalarResult", "AsyncTupleResult"),
}
"""The names ``sqlalchemy.ext.asyncio`` takes from its engine and result modules."""


def load_async_engine() -> None:
    """Import ``sqlalchemy.ext.asyncio`` with its engine and results only.

    Its ``__init__`` also imports its ORM session, and so ``sqlalchemy.orm``: about 40 ms of
    a start, for a program that uses SQLAlchemy Core only. Here the package holds the engine's
    and the results' names, and the first other name asked of it (``AsyncSession``, say) runs
    the package's own ``__init__``, so that every name it has is there as before. Nothing is
    done once the package is loaded.
    """
    if ASYNCIO in sys.modules:
        return
    spec = importlib.util.find_spec(ASYNCIO)
    if spec is None or spec.loader is None:
        return
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)

    def load_the_rest(name: str) -> Any:
        # A dunder, or a submodule that ``from . import exc`` is about to import.
        if (
            name.startswith("__")
            or PathFinder.find_spec(f"{ASYNCIO}.{name}", package.__path__) is not None
        ):
            raise AttributeError(f"module {ASYNCIO!r} has no attribute {name!r}")
        del package.__getattr__
        loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = load_the_rest  # type: ignore[method-assign]
    sys.modules[ASYNCIO] = package
    try:
        for module_name, names in ENGINE_NAMES.items():
            module = importlib.import_module(f"{ASYNCIO}.{module_name}")
            for name in names:
                setattr(package, name, getattr(module, name))
        from sqlalchemy.util import concurrency

        concurrency._concurrency_shim._initialize()  # as the package's __init__ does
    except BaseException:
        del sys.modules[ASYNCIO]
        raise
    parent: ModuleType = sys.modules[ASYNCIO.rpartition(".")[0]]
    setattr(parent, ASYNCIO.rpartition(".")[2], package)


def main() -> int:
    gc.disable()
    try:
        load_async_engine()
        from gpubridge.cli import main as cli_main
    except BaseException:
        gc.enable()
        raise
    return cli_main()
