"""Commands of the member registry: `members resume-imports`."""

from __future__ import annotations

import datetime as dt

import click
from flask import current_app
from flask.cli import AppGroup

from core.auth import SYSTEM
from core.db import db
from core.errors import DomainError
from members import service
from members.jobs import run_import_guarded
from members.models import ImportStatus

cli = AppGroup("members", help="The member registry.")


@cli.command("resume-imports")
@click.option("--older-than", "older_than", default=int(service.IMPORT_STALE_AFTER.total_seconds() // 60),
              show_default=True, type=click.IntRange(min=1),
              help="Minutes since a queued or running import was started before it counts as stalled.")
@click.option("--include-failed", is_flag=True, help="Also resume imports that stopped on an error.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1, max=10_000),
              help="Resume at most this many imports in one go.")
def resume_imports_command(older_than: int, include_failed: bool, limit: int) -> None:
    """Resume member imports whose run died (and, with --include-failed, failed ones) from where they stopped."""
    stale_after = dt.timedelta(minutes=older_than)
    cipher, upload_dir = current_app.extensions["cipher"], current_app.config["UPLOAD_FOLDER"]
    with db.session_scope() as session:
        found = service.resumable_imports(session, include_failed=include_failed, stale_after=stale_after,
                                          limit=limit)
    if not found:
        click.echo("no imports to resume")
        return
    failed = 0
    for public_id in found:
        with db.session_scope() as session:
            try:
                service.resume_import(session, SYSTEM, public_id, upload_dir, stale_after=stale_after)
            except DomainError as exc:  # it finished, was resumed elsewhere meanwhile, or lost its file
                session.rollback()
                click.echo(f"{public_id}: skipped ({exc.code}: {exc.message})")
                continue
            imp = run_import_guarded(session, cipher, public_id, upload_dir)
            if imp.status != ImportStatus.COMPLETED:
                failed += 1
            click.echo(f"{public_id}: {imp.status.value}, {imp.processed_rows}/{imp.total_rows} rows "
                       f"(created {imp.created_rows}, unchanged {imp.unchanged_rows}, rejected {imp.rejected_rows})"
                       + (f": {imp.error}" if imp.error else ""))
    if failed:
        raise click.ClickException(f"{failed} import(s) failed again; see the log.")
