"""The ``gpubridge`` command line: serve, mcp, catalog, credits, db, ledger."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from gpubridge.db.engine import printable_url, sqlite_file
from gpubridge.errors import ConfigurationError, GpubridgeError
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
    except (OSError, SQLAlchemyError) as exc:
        # Most often the database (named above) is unreachable or refuses us: say why,
        # without a traceback.
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {reason}", file=sys.stderr)
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
    _create_option(mcp)
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
    _create_option(grant)
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
    return parser


def _create_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--create",
        action="store_true",
        help="start a new, empty SQLite database when there is none (off: such a command "
        "refuses, so that it never works on a database the server does not use)",
    )


def open_database(settings: Settings, command: str, *, create: bool | None = None) -> str:
    """The database URL ``command`` works on, said on stderr (its password masked).

    A SQLite file that does not exist is refused unless ``create`` (None: the command has no
    ``--create``): run from the wrong folder, a command would otherwise make an empty
    database there and, say, grant credits that the server never sees.
    """
    url = settings.resolved_database_url()
    print(f"gpubridge {command}: database {printable_url(url)}", file=sys.stderr)
    path = sqlite_file(url)
    if path is None or path.exists() or create:
        return url
    data_dir = str(settings.data_dir)
    if not settings.data_dir.is_absolute():
        data_dir += f" in {Path.cwd()}"
    url_now = repr(settings.database_url) if settings.database_url else "unset"
    lines = [
        f"there is no database at {path.resolve()},",
        f"  and `gpubridge {command}` does not create one. To use the server's database, run",
        "  this in the folder where `gpubridge serve` runs, or set what the server has:",
        f"    GPUBRIDGE_DATA_DIR      the folder of gpubridge.db (now {data_dir})",
        f"    GPUBRIDGE_DATABASE_URL  a database URL, which wins over it (now {url_now})",
        "  To start a new, empty database there, add --create."
        if create is not None
        else "  `gpubridge db upgrade` creates a new, empty database there.",
    ]
    raise ConfigurationError("\n".join(lines))


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
    open_database(settings, "serve", create=True)
    host = args.host or settings.host
    port = args.port or settings.port
    app = create_app(settings)
    server = uvicorn.Server(server_config(app, host, port))
    server.run()
    return 0 if server.started else STARTUP_FAILURE


def _mcp(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.remote:
        from gpubridge.mcp_server.remote import serve_remote

        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        asyncio.run(serve_remote(args.remote, api_key))
        return 0
    from gpubridge.app import serve_mcp_stdio

    open_database(settings, "mcp", create=args.create)
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

    settings = Settings()
    open_database(settings, "credits grant", create=args.create)

    async def grant() -> int:
        components = build_components(settings)
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

    settings = Settings()
    open_database(settings, "ledger check")

    async def check() -> tuple[bool, str]:
        components = build_components(settings)
        try:
            await prepare_database(components)
            report = await components.gateway.check_ledger()
            return report.ok, report.summary()
        finally:
            await components.close()

    ok, summary = asyncio.run(check())
    print(summary)
    return 0 if ok else 1


def _upgrade(args: argparse.Namespace) -> int:
    from gpubridge.db.migrate import upgrade_to_head

    upgrade_to_head(open_database(Settings(), "db upgrade", create=True))
    print("database is at the newest schema")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
