"""The ``gpubridge`` command line: serve, mcp, catalog, credits, db, ledger."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gpubridge.errors import GpubridgeError
from gpubridge.money import micros_to_usd, usd_to_micros
from gpubridge.settings import Settings

STARTUP_FAILURE = 3
"""The exit status when the server could not start (uvicorn's own)."""

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        result: int = args.handler(args)
    except GpubridgeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpubridge", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the HTTP API")
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument(
        "--starter",
        action="store_true",
        help="serve llm-4090, embedding-l4 and whisper-l4 with the starter extra's small models",
    )
    serve.set_defaults(handler=_serve)

    mcp = commands.add_parser(
        "mcp", help="serve MCP over stdio (for desktop agents); bills GPUBRIDGE_API_KEY"
    )
    mcp.add_argument(
        "--remote",
        metavar="URL",
        default=None,
        help="forward to a remote gpubridge's /mcp instead of running jobs here",
    )
    mcp.set_defaults(handler=_mcp)

    catalog = commands.add_parser("catalog", help="print the services and their prices")
    catalog.add_argument(
        "--yaml", action="store_true", help="print the packaged catalog.yaml to start your own"
    )
    catalog.set_defaults(handler=_catalog)

    credits = commands.add_parser("credits", help="operator credit operations")
    credit_commands = credits.add_subparsers(required=True, metavar="ACTION")
    grant = credit_commands.add_parser("grant", help="add credits to an account")
    grant.add_argument("email")
    grant.add_argument("usd", help="amount in USD, e.g. 10 or 2.50")
    grant.set_defaults(handler=_grant)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    upgrade = db_commands.add_parser("upgrade", help="apply migrations")
    upgrade.set_defaults(handler=_upgrade)

    ledger = commands.add_parser("ledger", help="ledger audits")
    ledger_commands = ledger.add_subparsers(required=True, metavar="ACTION")
    check = ledger_commands.add_parser(
        "check",
        help="prove the ledger: balanced postings, balances, job holds, house accounts "
        "against payment records (exit 1 with the offending rows)",
    )
    check.set_defaults(handler=_ledger_check)

    worker = commands.add_parser(
        "worker",
        help="run models for a gateway (serve starts these itself, one per GPU or one on CPU)",
    )
    worker.add_argument(
        "--fd", type=int, required=True, help="socket inherited from the gateway that started it"
    )
    worker.add_argument("--name", default="worker", help="name shown in logs and listings")
    worker.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device to use")
    worker.add_argument(
        "--memory-budget-bytes",
        type=int,
        default=None,
        help="resident model budget (0: 80%% of the device's memory; default: no limit)",
    )
    worker.set_defaults(handler=_worker)

    workers = commands.add_parser(
        "workers",
        help="list the running gateways' worker processes: devices, models, memory, jobs",
    )
    workers.add_argument("--json", action="store_true", help="print JSON")
    workers.set_defaults(handler=_workers)
    return parser


def server_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    """How ``gpubridge serve`` runs uvicorn.

    uvicorn's proxy headers are off: left on, it takes the client address from
    ``X-Forwarded-For`` on any connection from loopback before gpubridge sees it, so a client
    on this machine (or a proxy that passes the header through) would pick the address the
    per-IP rate limit counts. Only ``GPUBRIDGE_TRUSTED_PROXIES`` decides whose header is read.
    """
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="info",
        proxy_headers=False,
        forwarded_allow_ips="",
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gpubridge.app import create_app

    settings = Settings()
    if args.starter:
        settings = settings.model_copy(update={"starter": True})
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    server = uvicorn.Server(server_config(app, host, port))
    server.run()
    return 0 if server.started else STARTUP_FAILURE


def _worker(args: argparse.Namespace) -> int:
    from gpubridge.engines.workers.process import run_worker

    run_worker(
        args.fd, name=args.name, device=args.device, memory_budget_bytes=args.memory_budget_bytes
    )
    return 0


def _mcp(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.remote:
        from gpubridge.mcp_server.remote import serve_remote

        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        asyncio.run(serve_remote(args.remote, api_key))
        return 0
    from gpubridge.app import serve_mcp_stdio

    asyncio.run(serve_mcp_stdio(settings))
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from gpubridge.catalog import Catalog
    from gpubridge.catalog.loader import packaged_catalog_text

    if args.yaml:
        print(packaged_catalog_text(), end="")
        return 0
    settings = Settings()
    catalog = Catalog.load(settings.catalog, starter=settings.starter)
    print(f"{'service':<16} {'category':<8} {'mode':<5} {'from':>9}  {'unit':<12} models")
    for service in catalog.services.values():
        price = service.price
        models = ", ".join(m.id for m in service.models)
        print(
            f"{service.key:<16} {service.category:<8} {service.mode:<5} "
            f"${micros_to_usd(price.minimum_micros):>8.3f}  {price.unit:<12} {models}"
        )
    return 0


def _grant(args: argparse.Namespace) -> int:
    from gpubridge.app import build_components, prepare_database

    try:
        micros = usd_to_micros(args.usd)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if micros <= 0:
        print("error: the amount must be positive", file=sys.stderr)
        return 2

    async def grant() -> int:
        components = build_components(Settings())
        try:
            await prepare_database(components)
            return await components.gateway.grant(args.email, micros)
        finally:
            await components.close()

    balance = asyncio.run(grant())
    granted, total = micros_to_usd(micros), micros_to_usd(balance)
    print(f"granted ${granted:.2f} to {args.email}; balance ${total:.6f}")
    return 0


def _ledger_check(args: argparse.Namespace) -> int:
    from gpubridge.app import build_components, prepare_database

    async def check() -> tuple[bool, str]:
        components = build_components(Settings())
        try:
            await prepare_database(components)
            report = await components.gateway.check_ledger()
            return report.ok, report.summary()
        finally:
            await components.close()

    ok, summary = asyncio.run(check())
    print(summary)
    return 0 if ok else 1


def _workers(args: argparse.Namespace) -> int:
    import json

    from gpubridge.db import Database
    from gpubridge.jobs import leases

    async def read() -> list[dict[str, object]]:
        db = Database(Settings().resolved_database_url())
        try:
            async with db.connect() as conn:
                return await leases.live(conn)
        finally:
            await db.dispose()

    replicas = asyncio.run(read())
    if args.json:
        print(json.dumps(replicas, default=str, indent=2))
        return 0
    if not replicas:
        print("no gateway is running on this database")
        return 0
    for lease in replicas:
        info = lease["info"] if isinstance(lease.get("info"), dict) else {}
        print(f"{lease['holder']}  host {info.get('host')}  pid {info.get('pid')}")
        for w in info.get("workers") or []:
            state = "ready" if w.get("ready") else "starting"
            memory = _mib(w.get("rss_bytes"))
            device_memory = (w.get("device_memory") or {}).get("allocated_bytes")
            if device_memory is not None:
                memory += f", {_mib(device_memory)} on the GPU"
            print(
                f"  {w['name']:<10} {w['device']:<7} {state:<8} pid {w.get('pid')}  "
                f"starts {w.get('starts')}  jobs {len(w.get('running_jobs') or [])}  "
                f"memory {memory}"
            )
            for model in w.get("models") or []:
                print(f"      model {model}")
    return 0


def _mib(size: object) -> str:
    return f"{int(size) // 2**20} MiB" if isinstance(size, int) else "?"


def _upgrade(args: argparse.Namespace) -> int:
    from gpubridge.db.migrate import upgrade_to_head

    upgrade_to_head(Settings().resolved_database_url())
    print("database is at the newest schema")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
