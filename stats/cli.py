"""Commands: `stats refresh` (run every few minutes, or after loading data)."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask
from flask.cli import AppGroup

from core.db import db
from stats import service

stats_cli = AppGroup("stats", help="The union console's figures.")


@stats_cli.command("refresh")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Recompute from this business day on (default: the day before the last refresh).")
@click.option("--full", is_flag=True, help="Recompute everything from the oldest record.")
def refresh_command(since: dt.datetime | None, full: bool) -> None:
    """Recompute the console's pre-aggregated figures; safe to run at any time, and again."""
    with db.session_scope() as session:
        done = service.refresh(session, since=since.date() if since else None, full=full)
        session.commit()
    click.echo(f"figures refreshed from {done.first_day} to {done.through} ({done.days} days): "
               f"{done.day_rows:,} union-days, {done.month_rows:,} union-months, {done.union_rows:,} unions, "
               f"{done.program_rows:,} program-days in {done.seconds:.1f} s")


def register(app: Flask) -> None:
    """Add the console's commands to the app's CLI."""
    app.cli.add_command(stats_cli)
