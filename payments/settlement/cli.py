"""Commands: `settle --date` (run daily after the cut-off)."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from core.auth import SYSTEM
from core import i18n
from core.db import db
from core.errors import DomainError
from core.money import format_amount
from payments.settlement import service


@click.command("settle")
@with_appcontext
@click.option("--date", "business_date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The business day to settle (Asia/Shanghai); yesterday by default.")
def settle_command(business_date: dt.datetime | None) -> None:
    """Settle every merchant for a closed business day; safe to run again."""
    day = business_date.date() if business_date else i18n.business_date() - dt.timedelta(days=1)
    with db.session_scope() as session:
        try:
            run = service.settle_day(session, SYSTEM, day, terms=service.Terms.from_config(current_app.config))
        except DomainError as exc:
            raise click.ClickException(exc.message) from exc
        for settlement in run.created:
            click.echo(f"{settlement.public_id}  {settlement.merchant.public_id}  {settlement.status.value:<15}  "
                       f"net {format_amount(settlement.net)}")
        total = sum(x.net for x in run.created)
        click.echo(f"{day.isoformat()}: {len(run.created)} settled now (net {format_amount(total)}), "
                   f"{len(run.existing)} settled before")


def register(app: Flask) -> None:
    """Add the settlement commands to the app's CLI."""
    app.cli.add_command(settle_command)
