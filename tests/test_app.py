"""The composition root: a server process freezes what its start-up made, then collects
with a young generation sized for its requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpubridge.app import GC_YOUNG_THRESHOLD

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import asyncio, gc, sys
from pathlib import Path
from gpubridge.app import create_app
from tests.support.gateway_app import settings_for, write_catalog

async def main(tmp, freeze):
    url = f"sqlite+aiosqlite:///{tmp / 'gpubridge.db'}"
    settings = settings_for(url, tmp, write_catalog(tmp / "catalog.yaml"), auto_migrate=True)
    app = create_app(settings, freeze=freeze)
    gc.disable()  # as the command line loads the program
    async with app.router.lifespan_context(app):
        print(gc.isenabled(), gc.get_freeze_count(), gc.get_threshold()[0])

asyncio.run(main(Path(sys.argv[1]), sys.argv[2] == "freeze"))
"""


@pytest.mark.parametrize("freeze", [True, False])
def test_a_server_freezes_its_start_up_objects_and_nothing_else_does(
    tmp_path: Path, freeze: bool
) -> None:
    argv = [sys.executable, "-c", SCRIPT, str(tmp_path), "freeze" if freeze else "no"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    enabled, frozen, young = done.stdout.split()[-3:]
    assert int(frozen) > 50_000 if freeze else int(frozen) == 0
    assert enabled == str(freeze)  # a server turns the collector on once started
    # ...with a young generation sized for requests; nothing else changes the collector
    assert int(young) == (GC_YOUNG_THRESHOLD if freeze else 700)


STARTED = """
import asyncio, sys
from pathlib import Path
from gpubridge.app import create_app
from gpubridge.settings import Settings

async def main(tmp):
    url = f"sqlite+aiosqlite:///{tmp / 'gpubridge.db'}"
    settings = Settings(
        database_url=url, data_dir=tmp, starter=False, worker_mode="remote", auto_migrate=True
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        print(" ".join(sorted(m for m in LAZY if m in sys.modules)) or "none")

LAZY = (
    "alembic", "asyncpg", "httpx", "jinja2", "jsonschema", "jsonschema_rs", "rich", "sse_starlette"
)
asyncio.run(main(Path(sys.argv[1])))
"""


def test_a_started_server_on_sqlite_has_not_imported_what_requests_may_never_need(
    tmp_path: Path,
) -> None:
    """Migrations (the schema is current or created), PostgreSQL's driver, the outbound HTTP
    client (media, webhooks, x402 facilitator), the dashboard's templates, the event streams
    and the JSON Schema validator (the catalog's own schemas are proven already) load on first
    use."""
    argv = [sys.executable, "-c", STARTED, str(tmp_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "none"
