"""The `points-ledger` command."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app import embedded, migrate
from app.config import get_settings
from app.db import Database, resolve_database_url
from app.demo import DEMO_SLUG, DemoKey, demo_key
from app.events import importer
from app.ledger.commit import Committer, GroupCommit
from app.ledger.rebuild import rebuild as rebuild_projections
from app.ledger.verify import verify as verify_ledger
from app.logging import configure_logging
from app.points.service import Ledger
from app.programs import repository as programs
from app.programs import service as program_service
from app.programs.auth import AuthCaches
from app.programs.service import CreatedKey, ProgramSetupError
from app.tiers import checks as tier_checks
from app.worker import jobs

# the features' own checks and rebuilds of their projections, for verify and rebuild
FEATURE_CHECKS = (tier_checks,)

cli = typer.Typer(help="points-ledger: a headless loyalty-points service.", no_args_is_help=True)
program_cli = typer.Typer(help="Manage programs (tenants).", no_args_is_help=True)
keys_cli = typer.Typer(help="Manage API keys.", no_args_is_help=True)
cli.add_typer(program_cli, name="program")
cli.add_typer(keys_cli, name="keys")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def _run_with_database(work: Callable[[Database], Awaitable[T]], *, migrate_first: bool) -> T:
    settings = get_settings()
    url = resolve_database_url(settings)
    if migrate_first:
        migrate.upgrade(url)

    async def main() -> T:
        database = await Database.connect(url, settings)
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(main())


def _decimal(value: str, name: str) -> Decimal:
    try:
        parsed = Decimal(value)
    except InvalidOperation as exc:
        raise typer.BadParameter(f"{name} must be a decimal number") from exc
    if not parsed.is_finite() or parsed < 0:
        raise typer.BadParameter(f"{name} must be a non-negative number")
    return parsed


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@cli.command("migrate")
def migrate_database() -> None:
    """Apply all database migrations (alembic upgrade head)."""
    url = resolve_database_url(get_settings())
    migrate.upgrade(url)
    console.print("database is at the latest revision")


_PendingDays = Annotated[
    int | None, typer.Option(help="Return window: days an order's points stay pending.")
]
_HoldTtl = Annotated[int | None, typer.Option(help="Default hold lifetime in seconds.")]
_ReturnPolicy = Annotated[str | None, typer.Option(help="cap_at_zero (default) or allow_negative.")]
_Transfers = Annotated[
    bool | None,
    typer.Option("--member-transfers/--no-member-transfers", help="Allow redeem-scope transfers."),
]
_Backdate = Annotated[int | None, typer.Option(help="Oldest accepted occurred_at, in days.")]


@program_cli.command("create")
def program_create(
    slug: Annotated[str, typer.Option(help="Short unique name, e.g. 'acme'.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency of orders.")] = "EUR",
    base_rate: Annotated[str, typer.Option(help="Points per whole currency unit.")] = "1",
    point_value: Annotated[
        str, typer.Option(help="Money value of one point, in minor units (e.g. 1 = one cent).")
    ] = "1",
    pending_days: _PendingDays = None,
    hold_ttl_seconds: _HoldTtl = None,
    return_policy: _ReturnPolicy = None,
    member_transfers: _Transfers = None,
    max_backdate_days: _Backdate = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create a program and print its id and a first admin API key (shown once)."""
    rate = _decimal(base_rate, "--base-rate")
    value = _decimal(point_value, "--point-value")
    settings = {
        "pending_days": pending_days,
        "hold_ttl_seconds": hold_ttl_seconds,
        "return_policy": return_policy,
        "member_transfers": member_transfers,
        "max_backdate_days": max_backdate_days,
    }

    async def work(database: Database) -> CreatedKey:
        async with database.transaction() as session:
            return await program_service.create_program(
                session,
                slug=slug,
                name=name,
                currency=currency,
                base_rate=rate,
                point_value=value,
                **settings,
            )

    try:
        created = _run_with_database(work, migrate_first=True)
    except ProgramSetupError as exc:
        _fail(str(exc))
        return
    _print_key(created, as_json)


@program_cli.command("set")
def program_set(
    slug: Annotated[str, typer.Option(help="The program to change.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    base_rate: Annotated[str | None, typer.Option(help="Points per whole currency unit.")] = None,
    point_value: Annotated[
        str | None, typer.Option(help="Money value of one point, in minor units.")
    ] = None,
    pending_days: _PendingDays = None,
    hold_ttl_seconds: _HoldTtl = None,
    return_policy: _ReturnPolicy = None,
    member_transfers: _Transfers = None,
    max_backdate_days: _Backdate = None,
) -> None:
    """Change a program's settings (running services see them within the cache TTL)."""
    settings: dict[str, object] = {
        "name": name,
        "base_rate": _decimal(base_rate, "--base-rate") if base_rate is not None else None,
        "point_value": _decimal(point_value, "--point-value") if point_value is not None else None,
        "pending_days": pending_days,
        "hold_ttl_seconds": hold_ttl_seconds,
        "return_policy": return_policy,
        "member_transfers": member_transfers,
        "max_backdate_days": max_backdate_days,
    }

    async def work(database: Database) -> None:
        async with database.transaction() as session:
            await program_service.configure_program(session, slug=slug, settings=settings)

    try:
        _run_with_database(work, migrate_first=False)
    except ProgramSetupError as exc:
        _fail(str(exc))
        return
    console.print(f"program {slug} updated")


def _print_key(created: CreatedKey, as_json: bool) -> None:
    payload: dict[str, Any] = {
        "program_id": created.program_id,
        "program": created.program_slug,
        "api_key": created.api_key,
        "key_prefix": created.prefix,
        "scopes": created.scopes,
    }
    if as_json:
        sys.stdout.write(json.dumps(payload) + "\n")
        return
    console.print(f"program [bold]{created.program_slug}[/bold] (id {created.program_id})")
    console.print(
        f"API key ({', '.join(created.scopes)}), shown once: [bold]{created.api_key}[/bold]"
    )


@keys_cli.command("create")
def keys_create(
    program: Annotated[str, typer.Option(help="Program slug.")],
    scopes: Annotated[
        list[str], typer.Option(help="earn, redeem, read, admin (repeat or comma-separate).")
    ],
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Create an API key for a program (shown once)."""

    async def work(database: Database) -> CreatedKey:
        async with database.transaction() as session:
            return await program_service.create_key(
                session, program_slug=program, scopes=scopes, name=name
            )

    try:
        created = _run_with_database(work, migrate_first=False)
    except ProgramSetupError as exc:
        _fail(str(exc))
        return
    _print_key(created, as_json)


@keys_cli.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's prefix, or the whole key.")],
) -> None:
    """Revoke an API key. Running services stop accepting it within the cache TTL."""
    parts = key.split("_")
    prefix = parts[1] if len(parts) >= 3 and parts[0] == "plk" else key

    async def work(database: Database) -> bool:
        async with database.single() as db:
            return await programs.revoke_key(db, prefix)

    if not _run_with_database(work, migrate_first=False):
        _fail(f"no active key with prefix {prefix!r}")
    console.print(f"revoked key {prefix}")


@cli.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run one pass and exit.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between passes.")] = 5.0,
) -> None:
    """Release due pending points and expired holds, and expire due points (safe to run several
    at once)."""
    configure_logging(get_settings().log_level, get_settings().log_json)

    async def work(database: Database) -> None:
        if once:
            outcome = await jobs.run_pass(database)
            console.print(
                f"released work for {outcome.members} member(s): {outcome.postings} posting(s),"
                f" {outcome.skipped} skipped (busy), {outcome.failed} failed"
            )
            if outcome.failed:
                raise typer.Exit(code=1)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await jobs.run_forever(database, interval, stop)

    _run_with_database(work, migrate_first=False)


@cli.command("import")
def import_events(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV of events.")],
    program: Annotated[str, typer.Option(help="Program slug.")],
    rejects: Annotated[
        Path | None, typer.Option(help="Where to write rejected rows (default FILE.rejected.csv).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per batch.")] = 500,
) -> None:
    """Import earn/redeem events from CSV through the batch path; re-running posts nothing new."""
    rows = list(importer.read_rows(file))
    rejects_path = rejects or file.with_suffix(".rejected.csv")

    async def work(database: Database) -> importer.ImportSummary:
        async with database.single() as db:
            found = await programs.program_by_slug(db, program)
        if found is None:
            raise ProgramSetupError(f"no program with slug {program!r}")
        fieldnames = [*(rows[0].keys() if rows else importer.COLUMNS), "error_code", "error_detail"]
        with (
            rejects_path.open("w", newline="", encoding="utf-8") as handle,
            Progress(
                TextColumn("importing"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
            ) as progress,
        ):
            writer = csv.DictWriter(handle, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            task = progress.add_task("import", total=len(rows))
            # one engine call per batch, no group commit: each batch brings its own events
            ledger = Ledger(
                database, Committer(database, GroupCommit(enabled=False)), AuthCaches.with_ttl(0)
            )
            return await importer.import_rows(
                ledger,
                found,
                rows,
                batch_size=batch_size,
                rejects=writer,
                on_batch=lambda n: progress.advance(task, n),
            )

    try:
        summary = _run_with_database(work, migrate_first=False)
    except ProgramSetupError as exc:
        _fail(str(exc))
        return
    console.print(
        f"posted {summary.posted}, duplicate {summary.duplicate}, rejected {summary.rejected}"
    )
    for code, count in sorted(summary.reasons.items()):
        console.print(f"  rejected {count} x {code}")
    if summary.rejected:
        console.print(f"rejected rows written to {rejects_path}")
    else:
        rejects_path.unlink(missing_ok=True)


@cli.command()
def verify() -> None:
    """Check every ledger invariant and that projections equal a fold of the entries."""

    async def work(database: Database) -> bool:
        report = await verify_ledger(database)
        table = Table("check", "result", "detail")
        for result in report.results:
            detail = (
                result.description if result.ok else json.dumps(result.offending[:5], default=str)
            )
            table.add_row(
                result.name, "[green]ok[/green]" if result.ok else "[red]DRIFT[/red]", detail
            )
        console.print(table)
        return report.ok

    if not _run_with_database(work, migrate_first=False):
        err_console.print("[red]verify failed:[/red] the ledger has drifted (see above)")
        raise typer.Exit(1)
    console.print("all invariants hold")


@cli.command()
def rebuild() -> None:
    """Recompute every projection (member balances, lots, tier statuses) from the ledger."""

    async def work(database: Database) -> int:
        return await rebuild_projections(database)

    corrected = _run_with_database(work, migrate_first=False)
    console.print(f"projections rebuilt; {corrected} row(s) corrected")


def _print_demo(host: str, port: int, demo: DemoKey) -> None:
    base = f"http://{host}:{port}"
    key = demo.api_key
    auth = f'-H "Authorization: Bearer {key}"'
    if demo.reused:
        about_key = f"the same key as last time, kept in {demo.path}"
    else:
        about_key = f"a new key, kept in {demo.path} and printed again on the next start"
        if demo.revoked:
            about_key += f"; {demo.revoked} earlier demo key(s) revoked"
    console.print(
        f"\n[bold]points-ledger[/bold] is starting at {base}  (API docs: {base}/docs)\n"
        f"demo program: [bold]{DEMO_SLUG}[/bold] (EUR, 1 point per euro)\n"
        f"admin API key: [bold]{key}[/bold]\n  ({about_key})\n\n"
        "try:\n"
        f"  curl -s {base}/v1/earn {auth} -H 'Idempotency-Key: demo-1' -H 'Content-Type: "
        'application/json\' -d \'{"member": "alice", "order": {"id": "o-1", '
        '"amount": 4250, "currency": "EUR"}}\'\n'
        f"  curl -s {base}/v1/redeem {auth} -H 'Idempotency-Key: demo-2' -H 'Content-Type: "
        'application/json\' -d \'{"member": "alice", "points": 10}\'\n'
        f"  curl -s {base}/v1/members/alice {auth}\n",
        highlight=False,
        soft_wrap=True,
    )


@cli.command()
def serve(
    demo: Annotated[bool, typer.Option(help="Create a demo program and print an API key.")] = False,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Migrate the database and serve the API (embedded PostgreSQL unless a URL is set).

    SIGTERM and SIGINT stop it cleanly, with exit status 0: uvicorn finishes the requests in
    flight and stops its workers, then this process stops the embedded PostgreSQL it started or
    adopted (unless another live process still uses it).
    """
    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    with embedded.stop_on_signals():
        url = resolve_database_url(settings)  # also exported to worker processes
        migrate.upgrade(url)
        if demo:

            async def setup(database: Database) -> DemoKey:
                return await demo_key(database, settings.data_dir)

            _print_demo(host, port, _run_with_database(setup, migrate_first=False))
        uvicorn.run(
            "app.main:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
        )


def main() -> None:
    cli()
