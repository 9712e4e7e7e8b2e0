"""The ``gpubridge`` command line: serve, mcp, catalog, models, credits, db, ledger."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from gpubridge.cli_models import add_model_commands
from gpubridge.cli_workers import add_worker_commands
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.handler is not _serve:
        gc.enable()  # off while the program loaded (see gpubridge.launch); serve turns it on
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        result: int = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left early (`gpubridge catalog | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
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


DESCRIPTION = """\
gpubridge: a self-hostable GPU inference gateway. One HTTP API (and MCP, and
OpenAI-compatible routes) for the services of its catalog, paid with prepaid
credits or x402."""

EPILOG = """\
first steps:
  gpubridge serve                             serve http://127.0.0.1:8000
  gpubridge credits grant you@example.com 10  give an account $10 of credit
  gpubridge catalog                           list the services and prices
  gpubridge models list                       which models' weights are on this machine

Settings come from GPUBRIDGE_* environment variables. The database is
./.gpubridge/gpubridge.db unless GPUBRIDGE_DATA_DIR or GPUBRIDGE_DATABASE_URL
says otherwise: give every command the same ones as the server.
'gpubridge COMMAND --help' describes a command."""


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    details: str = "",
) -> argparse.ArgumentParser:
    """A subcommand whose own --help starts with ``summary`` (and ``details``) as written."""
    description = summary[0].upper() + summary[1:] + "." + (f"\n\n{details}" if details else "")
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpubridge",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND", title="commands")

    serve = _command(
        commands,
        "serve",
        "serve the HTTP API, MCP at /mcp and the OpenAI-compatible routes",
        "Migrates the database at start-up and runs jobs on this machine's runtimes.",
    )
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument(
        "--processes",
        type=_positive,
        default=1,
        metavar="N",
        help="gateway processes sharing the port, for more than one core's worth of requests "
        "(default 1). More than one needs PostgreSQL and a catalog of remote backends only "
        "(see docs/scaling.md)",
    )
    _starter_option(serve)
    serve.set_defaults(handler=_serve)

    mcp = _command(
        commands,
        "mcp",
        "serve MCP over stdio, for desktop agents",
        "Runs jobs on this machine with the database and settings of 'gpubridge serve',\n"
        "billed to the account of GPUBRIDGE_API_KEY (or forwards to a remote server).",
    )
    mcp.add_argument(
        "--remote",
        metavar="URL",
        default=None,
        help="forward to a remote gpubridge's /mcp instead of running jobs here",
    )
    _starter_option(mcp)
    _create_option(mcp)
    mcp.set_defaults(handler=_mcp)

    catalog = _command(commands, "catalog", "print the services, their prices and models")
    catalog.add_argument(
        "--yaml", action="store_true", help="print the packaged catalog.yaml to start your own"
    )
    _starter_option(catalog)
    catalog.set_defaults(handler=_catalog)

    credits = _command(commands, "credits", "operator credit operations")
    credit_commands = credits.add_subparsers(required=True, metavar="ACTION", title="actions")
    grant = _command(
        credit_commands,
        "grant",
        "add credits to an account, without a payment provider",
        "Works on the server's database: run it where 'gpubridge serve' runs, or with\n"
        "the same GPUBRIDGE_DATA_DIR or GPUBRIDGE_DATABASE_URL.",
    )
    grant.add_argument("email", help="the account's email")
    grant.add_argument("usd", help="amount in USD, e.g. 10 or 2.50")
    _create_option(grant)
    grant.set_defaults(handler=_grant)

    db = _command(commands, "db", "database maintenance")
    db_commands = db.add_subparsers(required=True, metavar="ACTION", title="actions")
    upgrade = _command(
        db_commands,
        "upgrade",
        "apply migrations",
        "Brings the database to the newest schema, creating it when there is none\n"
        "('gpubridge serve' does this at start-up too).",
    )
    upgrade.set_defaults(handler=_upgrade)

    ledger = _command(commands, "ledger", "ledger audits")
    ledger_commands = ledger.add_subparsers(required=True, metavar="ACTION", title="actions")
    check = _command(
        ledger_commands,
        "check",
        "prove the ledger",
        "Checks balanced postings, balances, job holds and the house accounts against\n"
        "the payment records; exits 1 listing the offending rows.",
    )
    check.set_defaults(handler=_ledger_check)

    add_worker_commands(commands, _command)
    add_model_commands(commands, _command, _starter_option)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _starter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--starter",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="overlay the starter profile: llm-4090, embedding-l4 and whisper-l4 default to the "
        "starter extra's small CPU models, unless the catalog gives them backends of its own "
        "(default: GPUBRIDGE_STARTER, which is true)",
    )


def command_settings(args: argparse.Namespace) -> Settings:
    """The settings from the environment, with what the command line says on top: the same
    for every command, so that ``serve``, ``mcp`` and ``catalog`` see one catalog."""
    settings = Settings()
    starter: bool | None = getattr(args, "starter", None)
    if starter is not None:
        settings = settings.model_copy(update={"starter": starter})
    return settings


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


def server_config(app: ASGIApp | str, host: str, port: int, **options: Any) -> uvicorn.Config:
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
        **options,
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gpubridge.app import create_app

    settings = command_settings(args)
    open_database(settings, "serve", create=True)
    host = args.host or settings.host
    port = args.port or settings.port
    if args.processes > 1:
        from gpubridge.catalog import Catalog
        from gpubridge.serving import refusal, serve_processes

        catalog = Catalog.load(settings.catalog, starter=settings.starter)
        reason = refusal(settings, catalog, args.processes)
        if reason is not None:
            raise ConfigurationError(reason)
        return serve_processes(settings, host, port, args.processes)
    app = create_app(settings, freeze=True)
    server = uvicorn.Server(server_config(app, host, port))
    server.run()
    return 0 if server.started else STARTUP_FAILURE


def _mcp(args: argparse.Namespace) -> int:
    settings = command_settings(args)
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
    settings = command_settings(args)
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
