"""The worker commands: run a worker, list the workers, and create their tokens."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

from gpubridge.settings import Settings

Command = Callable[..., argparse.ArgumentParser]


def add_worker_commands(commands: Any, command: Command) -> None:
    """Add ``worker``, ``workers`` and ``worker-token`` (``command`` makes a subcommand)."""
    worker = command(
        commands,
        "worker",
        "run models for a gateway",
        "Joins a gateway on another machine with --gateway and a worker token, dialling out\n"
        "only (a GPU box behind NAT can serve). 'gpubridge serve' starts its local workers\n"
        "itself, one per GPU or one on the CPU.",
    )
    where = worker.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--gateway", metavar="URL", help="the gateway to join, e.g. https://gpu.example.com"
    )
    where.add_argument("--fd", type=int, help=argparse.SUPPRESS)  # set by serve for its children
    worker.add_argument(
        "--token",
        default=os.environ.get("GPUBRIDGE_WORKER_TOKEN"),
        help="the worker token (default: $GPUBRIDGE_WORKER_TOKEN; see 'worker-token')",
    )
    worker.add_argument("--name", default="worker", help="name shown in logs and listings")
    worker.add_argument(
        "--device", default=None, choices=["cpu", "cuda"], help="device (default: cuda if any)"
    )
    worker.add_argument(
        "--memory-budget-bytes",
        type=int,
        default=None,
        help="resident model budget (0: 80%% of the device's memory; default: no limit)",
    )
    worker.set_defaults(handler=_worker)

    workers = command(
        commands,
        "workers",
        "list the running gateways' workers: devices, models, memory and jobs",
    )
    workers.add_argument("--json", action="store_true", help="print JSON")
    workers.set_defaults(handler=_workers)

    token = command(
        commands,
        "worker-token",
        "create a token for a worker on another machine (printed once), or revoke one",
    )
    token.add_argument("name", help="the worker's name, e.g. gpu-box-1")
    token.add_argument(
        "--services",
        default="*",
        help="comma-separated service patterns it may serve (default: all), e.g. 'llm-*,image-*'",
    )
    token.add_argument("--revoke", action="store_true", help="revoke the worker's tokens")
    token.set_defaults(handler=_worker_token)


def _worker(args: argparse.Namespace) -> int:
    from gpubridge.engines.workers.process import WorkerServer, run_worker
    from gpubridge.engines.workers.remote_client import RemoteGateway

    gateway = None
    if args.gateway is not None:
        if not args.token:
            print("error: --token (or GPUBRIDGE_WORKER_TOKEN) is required", file=sys.stderr)
            return 2
        gateway = RemoteGateway(args.gateway, args.token)
    device = args.device or _default_device()
    server = WorkerServer(
        name=args.name, device=device, memory_budget_bytes=args.memory_budget_bytes
    )
    run_worker(server, fd=args.fd, gateway=gateway)
    return 0


def _default_device() -> str:
    from gpubridge.engines.workers.placement import visible_gpus

    return "cuda" if visible_gpus() else "cpu"


def _worker_token(args: argparse.Namespace) -> int:
    from gpubridge.cli import open_database
    from gpubridge.db import Database
    from gpubridge.jobs import worker_tokens

    async def act() -> str:
        db = Database(open_database(Settings(), "worker-token"))
        try:
            async with db.begin() as conn:
                if args.revoke:
                    count = await worker_tokens.revoke(conn, args.name)
                    return f"revoked {count} token(s) of {args.name}"
                services = [s.strip() for s in args.services.split(",") if s.strip()]
                return await worker_tokens.create(conn, args.name, services or ["*"])
        finally:
            await db.dispose()

    print(asyncio.run(act()))
    return 0


def _workers(args: argparse.Namespace) -> int:
    import json

    from gpubridge.cli import open_database
    from gpubridge.db import Database
    from gpubridge.jobs import leases

    async def read() -> list[dict[str, Any]]:
        db = Database(open_database(Settings(), "workers"))
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
        info: dict[str, Any] = lease["info"] if isinstance(lease.get("info"), dict) else {}
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
