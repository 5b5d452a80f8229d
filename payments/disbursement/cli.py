"""Commands: `disbursement run DSB` (run or resume a batch here), `disbursement resume-stalled` (every few minutes)
and `disbursement sweep-expired` (daily)."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from core.db import db
from payments.disbursement import service

disbursement_cli = AppGroup("disbursement", help="Aid disbursement batches.")


@disbursement_cli.command("run")
@click.argument("batch_id")
def run_command(batch_id: str) -> None:
    """Run an approved batch, or go on with one that stopped, in this process."""
    cfg = current_app.config
    with db.session_scope() as session:
        batch = service.run_batch(session, batch_id, chunk=cfg["DISBURSEMENT_CHUNK"],
                                  pause=cfg["DISBURSEMENT_CHUNK_PAUSE"])
        click.echo(f"{batch.public_id}: {batch.status.value}, {batch.done_lines:,} paid, "
                   f"{batch.failed_lines:,} failed, {batch.returned_amount:,} fen back to the budget")


@disbursement_cli.command("resume-stalled")
@click.option("--older-than", "older_than", default=int(service.STALE_AFTER.total_seconds() // 60), show_default=True,
              type=click.IntRange(min=1), help="Minutes without progress before a running batch counts as stalled.")
def resume_stalled_command(older_than: int) -> None:
    """Go on with every approved or running batch whose run died (a killed worker), in this process."""
    cfg = current_app.config
    with db.session_scope() as session:
        found = service.stalled_batches(session, stale_after=dt.timedelta(minutes=older_than))
    if not found:
        click.echo("no stalled batches")
        return
    for batch_id in found:
        with db.session_scope() as session:
            batch = service.run_batch(session, batch_id, chunk=cfg["DISBURSEMENT_CHUNK"],
                                      pause=cfg["DISBURSEMENT_CHUNK_PAUSE"])
            click.echo(f"{batch.public_id}: {batch.status.value}, {batch.done_lines:,} paid, "
                       f"{batch.failed_lines:,} failed")


@disbursement_cli.command("sweep-expired")
def sweep_command() -> None:
    """Move what is left in expired restricted purses back to their programs (run daily)."""
    with db.session_scope() as session:
        swept = service.sweep_expired(session)
    click.echo(f"swept {swept:,} expired purses")


def register(app: Flask) -> None:
    app.cli.add_command(disbursement_cli)
