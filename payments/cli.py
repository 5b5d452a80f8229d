"""Commands: `ledger verify`, and the ledger's periodic jobs (`expire-holds`, `fold`, `snapshot`)."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from core.db import db
from payments import ledger

ledger_cli = AppGroup("ledger", help="The double-entry ledger.")
MAX_BATCHES = 1000  # a job run stops after this many batches even if work keeps arriving


@ledger_cli.command("verify")
@click.option("--max-problems", default=100, show_default=True, type=click.IntRange(1, 10_000))
def verify_command(max_problems: int) -> None:
    """Check every invariant of the books; exit 1 if any is broken."""
    with db.session_scope() as session:
        report = ledger.verify(session, max_problems=max_problems)
    counts = ", ".join(f"{n:,} {what}" for what, n in report.checked.items())
    if report.ok:
        click.echo(f"ledger ok: {counts}")
        return
    for problem in report.problems:
        click.echo(json.dumps(problem, ensure_ascii=False, default=str), err=True)
    raise click.exceptions.Exit(1)


@ledger_cli.command("expire-holds")
def expire_holds_command() -> None:
    """Void every hold whose time is up, a batch per transaction."""
    voided = 0
    with db.session_scope() as session:
        for _ in range(MAX_BATCHES):
            if not (batch := ledger.void_expired_holds(session)):
                break
            session.commit()
            voided += batch
    click.echo(f"voided {voided} expired holds")


@ledger_cli.command("fold")
def fold_command() -> None:
    """Fold the deltas of append-only accounts into their balance rows."""
    folded = 0
    with db.session_scope() as session:
        for _ in range(MAX_BATCHES):
            if not (batch := ledger.fold_deltas(session)):
                break
            session.commit()
            folded += batch
    click.echo(f"folded the deltas of {folded} accounts")


@ledger_cli.command("snapshot")
@click.option("--min-entries", default=1000, show_default=True, type=click.IntRange(1, 10**9))
def snapshot_command(min_entries: int) -> None:
    """Snapshot the posted totals of busy accounts (for fast balances at past moments)."""
    taken = 0
    with db.session_scope() as session:
        for _ in range(MAX_BATCHES):
            if not (batch := ledger.take_snapshots(session, min_entries=min_entries)):
                break
            session.commit()
            taken += batch
    click.echo(f"took {taken} snapshots")


def register(app: Flask) -> None:
    """Add the ledger commands to the app's CLI."""
    app.cli.add_command(ledger_cli)
