"""Commands: `payouts send` (send the Stripe payouts that are due; run after `settle`)."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from core.db import db
from payments.payouts import service
from payments.payouts.provider import payout_provider

payouts_cli = AppGroup("payouts", help="Payouts to merchants.")


@payouts_cli.command("send")
def send_command() -> None:
    """Send every Stripe payout that is ready and due; those Stripe refuses stay ready with the error."""
    with db.session_scope() as session:
        report = service.send_due(session, payout_provider(current_app.config), today=service.business_today())
    click.echo(f"{report.sent} sent, {report.failed} not sent")
    for result in report.results:
        if result.error:
            click.echo(f"  {result.payout_id}: {result.error}", err=True)


def register(app: Flask) -> None:
    app.cli.add_command(payouts_cli)
