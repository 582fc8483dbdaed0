"""The ``hemicycle`` command: ``serve`` runs the server, ``invite`` mints a join link."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from config import Settings, load_settings

from .admin_cli import ADMIN_COMMANDS, add_admin_commands, run_admin_command
from .backup import BACKUP_COMMANDS, add_backup_commands, run_backup_command
from .journal_cli import add_journal_commands, run_journal_command
from .recordings_cli import add_recordings_command, run_recordings_command
from .revocation import add_revoke_command, run_revoke_command
from .tokens import ROLES, TokenSigner

if TYPE_CHECKING:
    import ssl

    from aiohttp import web

    from .front import Front
    from .hub import Hub

DEMO_MEMBERS = [
    ("Présidence de séance", "chair"),
    ("Camille Martin", "councillor"),
    ("Karim Benali", "councillor"),
    ("Sophie Lefèvre", "councillor"),
    ("Public", "public"),
]


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["bench"]:  # its own options, --help included, belong to bench.scenario
        return _bench(arguments[1:])
    parser = argparse.ArgumentParser(prog="hemicycle", description="Hemicycle videoconference server")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="TOML settings file (default: none, embedded defaults)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--secret-file", type=Path)
    serve.add_argument("--sitting", help="id of the sitting to open (default: demo)")
    serve.add_argument("--sitting-title", help="title of that sitting")
    serve.add_argument("--no-demo", action="store_true", help="print no demo links")
    serve.add_argument("--log-level", default="INFO")

    invite = commands.add_parser("invite", help="print a join link for one person")
    invite.add_argument("--config")
    invite.add_argument("--name", required=True)
    invite.add_argument("--role", choices=ROLES, default="councillor")
    invite.add_argument("--sitting", default=None)
    invite.add_argument("--base-url")
    invite.add_argument("--secret-file", type=Path)
    invite.add_argument("--hours", type=float, help="validity (default: token_lifetime_hours)")
    invite.add_argument("--seat", help="the member id of the roster (default: a new seat)")

    add_journal_commands(commands)
    add_admin_commands(commands)
    add_backup_commands(commands)
    add_revoke_command(commands)
    add_recordings_command(commands)
    commands.add_parser("bench", help="load-test scenarios: sitting, stress, broadcast, churn (bench/README.md)")
    args = parser.parse_args(argv)
    if args.command in BACKUP_COMMANDS:
        return run_backup_command(args)
    if args.command == "revoke":
        return run_revoke_command(args)
    if args.command == "recordings":
        return run_recordings_command(args)
    if args.command == "journal":
        return run_journal_command(args)
    if args.command in ADMIN_COMMANDS:
        return run_admin_command(args)
    settings = load_settings(args.config, secret_file=args.secret_file)
    if args.command == "invite":
        return _invite(settings, args)
    return _serve(settings, args)


def _invite(settings: Settings, args: argparse.Namespace) -> int:
    signer = TokenSigner.from_file(settings.secret_path)
    sitting = args.sitting or settings.sittings[0].id
    hours = args.hours if args.hours is not None else settings.token_lifetime_hours
    token = signer.mint(sitting, args.name, args.role, lifetime=hours * 3600, seat=args.seat)
    base = (args.base_url or settings.base_url).rstrip("/")
    print(f"{base}/join#token={token}")
    return 0


def setup_logging(level: str, prefix: str = "") -> None:
    """Standard error, one line per event; ``prefix`` names a worker process (``w1 ``)."""
    logging.basicConfig(level=level.upper(), format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if level.upper() != "DEBUG":  # aioice logs each candidate pair: participants' IP addresses
        logging.getLogger("aioice").setLevel(logging.WARNING)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    changes: dict[str, object] = {}
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    if args.sitting or args.sitting_title:
        sid = args.sitting or settings.sittings[0].id
        title = args.sitting_title or sid
        changes["sittings"] = [{"id": sid, "title": title}]
    if args.no_demo:
        changes["demo"] = False
    if changes:
        settings = Settings(**{**settings.model_dump(), **changes})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_run(settings))
    return 0


async def _run(settings: Settings) -> None:
    from . import memory, tls
    from .workers import Pool, worker_count

    pool = Pool(settings) if worker_count(settings) > 1 else None
    if pool is None:
        from .app import HUB, create_app  # the media stack loads only to serve

        app = create_app(settings)
        state: Hub | Front = app[HUB]
        hub: Hub | None = app[HUB]
    else:
        from .front import FRONT, create_front_app  # the front never loads the media stack

        app = create_front_app(settings, pool)
        state = app[FRONT]
        hub = None
    runner, port = await listen(app, settings.host, settings.port, tls.server_context(settings))
    if settings.port == 0:
        settings = state.settings = Settings(**{**settings.model_dump(), "port": port})
    if pool is not None:
        await pool.start(settings.base_url)  # the workers need the public URL: after binding
    base = settings.base_url
    if settings.demo:
        _print_demo_links(app, settings)
    gc.collect()
    gc.freeze()  # start-up objects never need scanning again: shorter GC pauses
    reclaimer = memory.start(hub) if hub is not None else None  # docs/operations.md, "Memory"
    print(f"HEMICYCLE READY {base}", flush=True)
    await until_stopped()
    if reclaimer is not None:
        await memory.stop(reclaimer)
    if pool is not None:
        await pool.stop()  # the workers close their sittings; the front relays their goodbyes
    await runner.cleanup()


async def listen(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port``; returns the runner and the port bound (``port`` 0: any)."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server = getattr(site, "_server", None)
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    return runner, port


async def until_stopped(stop: asyncio.Event | None = None) -> None:
    """Wait for SIGINT or SIGTERM (or ``stop``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _print_demo_links(app: web.Application, settings: Settings) -> None:
    from .web_base import DEMO_LINKS

    signer = TokenSigner.from_file(settings.secret_path)
    sitting = settings.sittings[0]
    links = []
    for name, role in DEMO_MEMBERS:
        token = signer.mint(sitting.id, name, role, lifetime=settings.token_lifetime_hours * 3600)  # type: ignore[arg-type]
        links.append({"name": name, "role": role, "url": f"{settings.base_url}/join#token={token}"})
    app[DEMO_LINKS] = links
    print(f"Séance « {sitting.title} » — liens de démonstration :", flush=True)
    for link in links:
        print(f"  {link['role']:<11} {link['name']:<22} {link['url']}", flush=True)
    print(f"  (aussi sur {settings.base_url}/ )", flush=True)


if __name__ == "__main__":
    sys.exit(main())


def _bench(rest: list[str]) -> int:
    """``hemicycle bench sitting|stress|broadcast|churn ...`` = ``python -m bench.scenario ...``."""
    import importlib

    try:
        scenario = importlib.import_module("bench.scenario")
    except ImportError:
        print("hemicycle bench runs from a source checkout (the bench/ folder is not installed)", file=sys.stderr)
        return 2
    return int(scenario.main(rest))
