"""The ``gpubridge`` console script, run as a real subprocess on a data directory of its own."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml
from alembic.script import ScriptDirectory

from gpubridge.app import create_app
from gpubridge.catalog.loader import packaged_catalog_text
from gpubridge.cli import build_parser, command_settings, main, server_config
from gpubridge.db import Database
from gpubridge.db.migrate import alembic_config, upgrade_to_head
from gpubridge.db.tables import metadata
from gpubridge.payments.accounts import Accounts
from tests.support.gateway_app import packaged_catalog, settings_for, write_catalog

CONSOLE_SCRIPT = Path(sys.executable).with_name("gpubridge")
COMMAND_TIMEOUT_S = 60
SERVE_REFUSAL_TIMEOUT_S = 20
SERVE_READY_TIMEOUT_S = 30
SHUTDOWN_TIMEOUT_S = 15
EMAIL = "operator-test@example.com"


def command() -> list[str]:
    """The installed console script, or the module when the script is not installed."""
    if CONSOLE_SCRIPT.exists():
        return [str(CONSOLE_SCRIPT)]
    return [sys.executable, "-m", "gpubridge"]


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any GPUBRIDGE_ setting, pointed at ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUBRIDGE_")}
    env.update(
        GPUBRIDGE_DATA_DIR=str(data_dir),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def gpubridge(
    data_dir: Path, *args: str, timeout: float = COMMAND_TIMEOUT_S, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), *args],
        cwd=data_dir,
        env=cli_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def database_file(data_dir: Path) -> Path:
    return data_dir / "gpubridge.db"


def database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{database_file(data_dir)}"


def query(data_dir: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database_file(data_dir)) as conn:
        return conn.execute(sql, params).fetchall()


def table_names(data_dir: Path) -> set[str]:
    rows = query(data_dir, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def balance_micros(data_dir: Path, email: str = EMAIL) -> int:
    rows = query(data_dir, "SELECT balance_micros FROM accounts WHERE email = ?", email)
    assert len(rows) == 1, rows
    value: int = rows[0][0]
    return value


def ledger_of(data_dir: Path, email: str = EMAIL) -> list[tuple[Any, ...]]:
    return query(
        data_dir,
        "SELECT kind, available_delta, held_delta FROM ledger_entries "
        "JOIN accounts ON accounts.id = ledger_entries.account_id "
        "WHERE accounts.email = ? ORDER BY ledger_entries.id",
        email,
    )


@pytest.fixture
def registered(tmp_path: Path) -> Path:
    """A data directory whose migrated SQLite database holds one account (EMAIL)."""
    url = database_url(tmp_path)
    upgrade_to_head(url)

    async def register() -> None:
        db = Database(url)
        try:
            await Accounts(db, default_daily_limit_micros=50_000_000, cache_s=0).register(EMAIL)
        finally:
            await db.dispose()

    asyncio.run(register())
    return tmp_path


# -- help -----------------------------------------------------------------------------------

COMMANDS = [
    ["serve"],
    ["mcp"],
    ["catalog"],
    ["credits"],
    ["credits", "grant"],
    ["db"],
    ["db", "upgrade"],
    ["ledger"],
    ["ledger", "check"],
    ["models"],
    ["models", "list"],
    ["models", "pull"],
    ["models", "rm"],
]
MARKUP = re.compile(r"``|`[^`\s]+`_|:[a-z]+:`|^\s*\.\. ", re.MULTILINE)
"""reStructuredText that a terminal would show raw: literals, links, roles, directives."""


def help_text(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    out: str = capsys.readouterr().out
    return out


def test_help_is_plain_text_naming_every_command_and_the_first_steps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = help_text(capsys)
    assert MARKUP.search(text) is None, text
    assert text.startswith("usage: gpubridge")
    for name in ("serve", "mcp", "catalog", "models", "credits", "db", "ledger"):
        assert re.search(rf"^    {name} +\S", text, re.MULTILINE), (name, text)
    assert "gpubridge credits grant you@example.com 10" in text
    assert "GPUBRIDGE_DATA_DIR" in text and "GPUBRIDGE_DATABASE_URL" in text


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_each_commands_help_is_plain_text_that_says_what_it_does(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    text = help_text(capsys, *args)
    assert MARKUP.search(text) is None, text
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: gpubridge {' '.join(args)}")
    assert not rest.startswith("options:"), f"no description:\n{text}"


# -- catalog --------------------------------------------------------------------------------

LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+\$\s*(\d+\.\d{3})\s+(\S+)\s+(.+)$")


def parse_catalog_table(stdout: str) -> list[tuple[str, ...]]:
    lines = stdout.splitlines()
    assert lines[0].split()[:2] == ["service", "category"], lines[0]
    rows = []
    for line in lines[1:]:
        match = LINE.match(line)
        assert match is not None, f"unexpected catalog line: {line!r}"
        rows.append(match.groups())
    return rows


def expected_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (
            key,
            service["category"],
            service["mode"],
            f"{Decimal(service['price']['minimum_usd']):.3f}",
            service["price"]["unit"],
            ", ".join(model["id"] for model in service["models"]),
        )
        for key, service in data["services"].items()
    ]


def test_catalog_prints_every_service_with_its_price_unit_and_models(tmp_path: Path) -> None:
    result = gpubridge(tmp_path, "catalog", "--no-starter")
    assert result.returncode == 0, result.stderr
    rows = parse_catalog_table(result.stdout)
    assert len(rows) == 26
    assert rows == expected_rows(packaged_catalog())
    off = gpubridge(tmp_path, "catalog", GPUBRIDGE_STARTER="false")
    assert parse_catalog_table(off.stdout) == rows


def test_a_reader_that_leaves_early_stops_the_command_quietly(tmp_path: Path) -> None:
    reader, writer = os.pipe()
    os.close(reader)  # as `gpubridge catalog | head` once head has its lines
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gpubridge", "catalog"],
            cwd=tmp_path,
            env=cli_env(tmp_path, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (128 + signal.SIGPIPE, "")


STARTER_DEFAULTS = {
    "llm-4090": "smollm2-135m-instruct",
    "embedding-l4": "all-minilm-l6-v2",
    "whisper-l4": "whisper-tiny-en",
}


def first_models(stdout: str) -> dict[str, str]:
    return {row[0]: row[5].split(", ")[0] for row in parse_catalog_table(stdout)}


def test_catalog_shows_the_starter_profile_by_default_as_serve_runs_it(tmp_path: Path) -> None:
    result = gpubridge(tmp_path, "catalog")
    assert result.returncode == 0, result.stderr
    first = first_models(result.stdout)
    assert {key: first[key] for key in STARTER_DEFAULTS} == STARTER_DEFAULTS
    assert first["caption"] == "blip-large"


def test_the_starter_profile_stays_on_over_an_operator_catalog(tmp_path: Path) -> None:
    def own_llm_backend(data: dict[str, Any]) -> None:
        data["services"]["caption"]["price"]["minimum_usd"] = "0.005"
        data["services"]["llm-4090"]["backends"] = [
            {"name": "my-vllm", "type": "openai", "options": {"base_url": "http://127.0.0.1:9/v1"}}
        ]

    catalog = write_catalog(tmp_path / "operator.yaml", own_llm_backend)
    result = gpubridge(tmp_path, "catalog", GPUBRIDGE_CATALOG=str(catalog))
    assert result.returncode == 0, result.stderr
    first = first_models(result.stdout)
    assert first["embedding-l4"] == "all-minilm-l6-v2"
    assert first["whisper-l4"] == "whisper-tiny-en"
    assert first["llm-4090"] == "llama-3.3-70b-versatile"  # its own backends: left as written
    rows = {row[0]: row for row in parse_catalog_table(result.stdout)}
    assert rows["caption"][3] == "0.005"
    off = gpubridge(tmp_path, "catalog", "--no-starter", GPUBRIDGE_CATALOG=str(catalog))
    assert first_models(off.stdout)["embedding-l4"] == "bge-large-en-v1.5"


@pytest.mark.parametrize(
    ("flags", "env", "starter"),
    [
        ([], {}, True),
        (["--no-starter"], {}, False),
        ([], {"GPUBRIDGE_STARTER": "false"}, False),
        (["--starter"], {"GPUBRIDGE_STARTER": "false"}, True),
    ],
)
def test_serve_mcp_and_catalog_take_the_starter_profile_from_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], env: dict[str, str], starter: bool
) -> None:
    monkeypatch.delenv("GPUBRIDGE_STARTER", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = build_parser()
    for command_name in ("serve", "mcp", "catalog"):
        args = parser.parse_args([command_name, *flags])
        assert command_settings(args).starter is starter, command_name


def test_catalog_prints_the_operator_catalog_when_one_is_configured(tmp_path: Path) -> None:
    def cheaper_caption(data: dict[str, Any]) -> None:
        data["services"]["caption"]["price"]["minimum_usd"] = "0.005"

    catalog = write_catalog(tmp_path / "operator.yaml", cheaper_caption)
    result = gpubridge(tmp_path, "catalog", GPUBRIDGE_CATALOG=str(catalog))
    assert result.returncode == 0, result.stderr
    rows = {row[0]: row for row in parse_catalog_table(result.stdout)}
    assert rows["caption"][3] == "0.005"


def test_catalog_yaml_prints_the_packaged_catalog_as_parseable_yaml(tmp_path: Path) -> None:
    result = gpubridge(tmp_path, "catalog", "--yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == packaged_catalog_text()
    data = yaml.safe_load(result.stdout)
    assert data["version"] == 1
    assert len(data["services"]) == 26


# -- db upgrade -----------------------------------------------------------------------------


def test_db_upgrade_creates_the_sqlite_database_with_every_table(tmp_path: Path) -> None:
    assert not database_file(tmp_path).exists()
    result = gpubridge(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "newest schema" in result.stdout
    assert database_file(tmp_path).is_file()
    assert table_names(tmp_path) == set(metadata.tables) | {"alembic_version"}
    assert query(tmp_path, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


def test_db_upgrade_twice_leaves_the_schema_as_it_was(tmp_path: Path) -> None:
    assert gpubridge(tmp_path, "db", "upgrade").returncode == 0
    before = query(tmp_path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    again = gpubridge(tmp_path, "db", "upgrade")
    assert again.returncode == 0, again.stderr
    assert query(tmp_path, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == before
    assert query(tmp_path, "SELECT version_num FROM alembic_version") == [(head_revision(),)]


# -- credits grant --------------------------------------------------------------------------


def test_granting_credits_to_an_unknown_email_fails_with_a_clear_message(registered: Path) -> None:
    result = gpubridge(registered, "credits", "grant", "nobody@example.com", "12.5")
    assert result.returncode != 0
    assert "no account for nobody@example.com" in result.stderr
    assert "Traceback" not in result.stderr
    assert "granted" not in result.stdout


def test_granting_credits_adds_the_exact_amount_in_micro_usd(registered: Path) -> None:
    result = gpubridge(registered, "credits", "grant", EMAIL, "12.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"granted $12.50 to {EMAIL}; balance $12.500000"
    assert balance_micros(registered) == 12_500_000
    assert ledger_of(registered) == [("grant", 12_500_000, 0)]

    # The email is matched case-insensitively; a single micro-USD is added exactly.
    again = gpubridge(registered, "credits", "grant", EMAIL.upper(), "0.000001")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith("balance $12.500001")
    assert balance_micros(registered) == 12_500_001
    assert ledger_of(registered) == [("grant", 12_500_000, 0), ("grant", 1, 0)]


def test_credits_grant_says_which_database_it_opened(registered: Path) -> None:
    result = gpubridge(registered, "credits", "grant", EMAIL, "1")
    assert result.returncode == 0, result.stderr
    opened = f"gpubridge credits grant: database {database_file(registered).resolve()}"
    assert opened in result.stderr.splitlines()
    assert opened not in result.stdout


def test_credits_grant_away_from_the_servers_folder_creates_no_database(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The default data directory, relative to wherever the command runs.
    result = gpubridge(elsewhere, "credits", "grant", EMAIL, "10", GPUBRIDGE_DATA_DIR=".gpubridge")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr, result.stderr
    assert "granted" not in result.stdout
    missing = elsewhere / ".gpubridge" / "gpubridge.db"
    assert f"there is no database at {missing.resolve()}" in result.stderr
    for hint in ("GPUBRIDGE_DATA_DIR", "GPUBRIDGE_DATABASE_URL", "--create", str(elsewhere)):
        assert hint in result.stderr, (hint, result.stderr)
    assert list(elsewhere.iterdir()) == []

    created = gpubridge(
        elsewhere, "credits", "grant", EMAIL, "10", "--create", GPUBRIDGE_DATA_DIR=".gpubridge"
    )
    assert missing.is_file()
    assert created.returncode == 2  # a new database has no account yet
    assert f"no account for {EMAIL}" in created.stderr


def test_ledger_check_and_mcp_refuse_a_database_that_is_not_there(tmp_path: Path) -> None:
    check = gpubridge(tmp_path, "ledger", "check")
    assert check.returncode == 2
    assert "there is no database at" in check.stderr
    assert "gpubridge db upgrade" in check.stderr
    mcp = gpubridge(tmp_path, "mcp", GPUBRIDGE_API_KEY="gpub_anything")
    assert mcp.returncode == 2
    assert "there is no database at" in mcp.stderr and "--create" in mcp.stderr
    assert not database_file(tmp_path).exists()


def test_a_database_url_is_shown_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://gpubridge:pw-not-shown@127.0.0.1:{free_port()}/gpubridge"
    result = gpubridge(tmp_path, "ledger", "check", GPUBRIDGE_DATABASE_URL=url)
    assert result.returncode == 2
    assert "gpubridge ledger check: database postgresql+asyncpg://gpubridge:***@127.0.0.1" in (
        result.stderr
    )
    assert "pw-not-shown" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr, result.stderr


def test_ledger_check_passes_on_a_sound_ledger_and_names_what_breaks_it(
    registered: Path,
) -> None:
    assert gpubridge(registered, "credits", "grant", EMAIL, "3").returncode == 0
    sound = gpubridge(registered, "ledger", "check")
    assert sound.returncode == 0, sound.stderr
    assert sound.stdout.startswith("ledger check: ok (2 entries, 1 accounts, 0 jobs)")

    query(registered, "UPDATE accounts SET balance_micros = 5 WHERE email = ?", EMAIL)
    broken = gpubridge(registered, "ledger", "check")
    assert broken.returncode == 1
    assert "balance_mismatch" in broken.stdout
    assert "'balance_micros': 5, 'entries': 3000000" in broken.stdout
    assert "Traceback" not in broken.stderr


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1.0000001", "more than 6 decimals"),
        ("-5", "must be positive"),
        ("0", "must be positive"),
        ("ten", "not a USD amount"),
        ("Infinity", "not a USD amount"),
        ("sNaN", "not a USD amount"),
    ],
)
def test_granting_an_amount_that_is_not_positive_whole_micro_usd_is_refused(
    registered: Path, amount: str, message: str
) -> None:
    result = gpubridge(registered, "credits", "grant", EMAIL, amount)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr
    assert balance_micros(registered) == 0
    assert ledger_of(registered) == []


# -- serve ----------------------------------------------------------------------------------


def set_price_unit(data: dict[str, Any]) -> None:
    data["services"]["caption"]["price"]["unit"] = "bogus"


def set_model_price(data: dict[str, Any]) -> None:
    data["services"]["llm-4090"]["models"][1]["price"]["micros"] = -1


def set_estimated_seconds(data: dict[str, Any]) -> None:
    data["services"]["video"]["estimated_seconds"] = 0


def set_minimum(data: dict[str, Any]) -> None:
    data["services"]["caption"]["price"]["minimum_usd"] = "Infinity"


@pytest.mark.parametrize(
    ("edit", "service", "field"),
    [
        (set_price_unit, "caption", "price.unit"),
        (set_model_price, "llm-4090", "models.1.price.micros"),
        (set_estimated_seconds, "video", "estimated_seconds"),
        (set_minimum, "caption", "price.minimum_usd"),
    ],
)
def test_serve_refuses_to_start_on_a_broken_catalog_naming_the_service_and_field(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], service: str, field: str
) -> None:
    catalog = write_catalog(tmp_path / "broken.yaml", edit)
    result = gpubridge(
        tmp_path,
        "serve",
        "--port",
        str(free_port()),
        timeout=SERVE_REFUSAL_TIMEOUT_S,
        GPUBRIDGE_CATALOG=str(catalog),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert f"service {service!r}, field {field}" in result.stderr, result.stderr
    assert str(catalog) in result.stderr


def test_serve_answers_healthz_on_the_given_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command(), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=cli_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        response = None
        deadline = time.monotonic() + SERVE_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, (
            f"no answer in {SERVE_READY_TIMEOUT_S}s\n{log_path.read_text()}"
        )
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        # The server migrated its default SQLite database at start-up.
        assert set(metadata.tables) <= table_names(tmp_path)
        # Which services can run now is told once the model cache is read, after start-up.
        while "services ready now" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)

        process.terminate()
        returncode = process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        assert returncode in (0, -signal.SIGTERM), log_path.read_text()
        logged = log_path.read_text()
        assert "Application shutdown complete" in logged
        # It said what it serves: where the data is, where models run, which services.
        assert f"data in {tmp_path.resolve()}, database" in logged
        assert "workers: worker-0 on cpu for *" in logged
        assert re.search(r"\d+ services configured: .*llm-4090 \(", logged), logged
        assert re.search(r"\d+ services ready now: .*llm-4090 \(", logged), logged
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)


def test_serve_counts_the_socket_peer_against_the_ip_limit_whatever_x_forwarded_for_says(
    tmp_path: Path,
) -> None:
    upgrade_to_head(database_url(tmp_path))
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(
        database_url(tmp_path), tmp_path, catalog, rate_limit_per_ip_per_second=5
    )
    port = free_port()
    server = uvicorn.Server(server_config(create_app(settings), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, name="gpubridge-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + SERVE_READY_TIMEOUT_S
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            statuses = [
                client.get("/nowhere", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n in range(20)
            ]
    finally:
        server.should_exit = True
        thread.join(timeout=SHUTDOWN_TIMEOUT_S)
    # The window opens at the first request: five pass, then this one peer is over its limit.
    assert statuses[:5] == [404] * 5
    assert 429 in statuses


def test_workers_lists_each_running_gateways_worker_processes(registered: Path) -> None:
    assert gpubridge(registered, "workers").stdout == "no gateway is running on this database\n"

    async def heartbeat() -> None:
        from gpubridge.jobs import leases

        db = Database(database_url(registered))
        worker = {
            "name": "worker-0",
            "device": "cuda:0",
            "ready": True,
            "pid": 4242,
            "starts": 2,
            "running_jobs": ["job-1"],
            "rss_bytes": 3 * 2**30,
            "device_memory": {"allocated_bytes": 20 * 2**30},
            "models": ["local-llm:Qwen/Qwen2.5-7B-Instruct"],
        }
        async with db.begin() as conn:
            await leases.renew(
                conn, "gateway-a", 30, {"host": "gpu-1", "pid": 7, "workers": [worker]}
            )
        await db.dispose()

    asyncio.run(heartbeat())
    listed = gpubridge(registered, "workers")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "gateway-a  host gpu-1  pid 7"
    assert lines[1].split() == [
        *("worker-0", "cuda:0", "ready", "pid", "4242", "starts", "2", "jobs", "1"),
        *("memory", "3072", "MiB,", "20480", "MiB", "on", "the", "GPU"),
    ]
    assert lines[2].split() == ["model", "local-llm:Qwen/Qwen2.5-7B-Instruct"]
    as_json = gpubridge(registered, "workers", "--json")
    assert '"holder": "gateway-a"' in as_json.stdout
