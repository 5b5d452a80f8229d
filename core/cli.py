"""Commands: `db upgrade|downgrade`, `create-user`, `worker`, `purge`."""

from __future__ import annotations

import datetime as dt

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import delete, or_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core import audit, migrate
from core.auth import SYSTEM, create_user, resolve_public_id
from core.db import db, utcnow
from core.errors import DomainError
from core.models import ApiToken, IdempotencyKey, Role

db_cli = AppGroup("db", help="Database schema migrations.")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    migrate.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


@db_cli.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Migrate the database down to REVISION."""
    migrate.downgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


def _resolve(session, table: str, public_id: str | None) -> int | None:
    try:
        return resolve_public_id(session, table, public_id)
    except DBAPIError:
        raise click.UsageError(f"There are no {table} in this database yet.") from None
    except DomainError as exc:
        raise click.UsageError(exc.message) from None


@click.command("create-user")
@with_appcontext
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--username", required=True)
@click.option("--password", required=True)
@click.option("--display-name", default="")
@click.option("--member-id", default=None, help="mem_... for a member account")
@click.option("--merchant-id", default=None, help="mch_... for merchant staff")
@click.option("--union-id", default=None, help="uni_...; a union admin without one runs the whole platform")
def create_user_command(role, username, password, display_name, member_id, merchant_id, union_id):
    """Create a user with a role and its scope."""
    with db.session_scope() as session:
        try:
            user = create_user(
                session, username=username, password=password, role=Role(role), display_name=display_name,
                union_id=_resolve(session, "unions", union_id),
                member_id=_resolve(session, "members", member_id),
                merchant_id=_resolve(session, "merchants", merchant_id),
            )
            audit.record(session, SYSTEM, "user.created", "user", user.public_id,
                         after={"username": user.username, "role": user.role.value})
            session.commit()
        except DomainError as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in (exc.errors or {}).items())
            raise click.UsageError(exc.message + (f" ({details})" if details else "")) from None
        click.echo(f"created {user.role.value} {user.username} ({user.public_id})")


@click.command("worker")
@with_appcontext
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
def worker_command(burst: bool) -> None:
    """Run background jobs from the Redis queue (RQ)."""
    from rq import Worker

    from core.jobs import jobs

    if jobs.mode != "rq":
        raise click.UsageError("No REDIS_URL is configured: jobs run inside the web process, no worker needed.")
    queue = jobs.queue()
    Worker([queue], connection=queue.connection).work(burst=burst, with_scheduler=False)


def purge(session: Session, *, idempotency_age: dt.timedelta, token_age: dt.timedelta,
          now: dt.datetime | None = None) -> dict[str, int]:
    """Delete idempotency keys older than `idempotency_age` and tokens dead (expired or revoked) for `token_age`."""
    now = now or utcnow()
    keys = session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - idempotency_age))
    dead_since = now - token_age
    tokens = session.execute(delete(ApiToken).where(or_(ApiToken.expires_at < dead_since,
                                                        ApiToken.revoked_at < dead_since)))
    counts = {"idempotency_keys": keys.rowcount, "api_tokens": tokens.rowcount}
    audit.record(session, SYSTEM, "system.purged", "system", "purge", after=counts)
    session.commit()
    return counts


@click.command("purge")
@with_appcontext
@click.option("--idempotency-hours", default=24, show_default=True, type=click.IntRange(min=1),
              help="Keep Idempotency-Key answers this long.")
@click.option("--token-days", default=30, show_default=True, type=click.IntRange(min=1),
              help="Keep expired or revoked API tokens this long (the audit log names them meanwhile).")
def purge_command(idempotency_hours: int, token_days: int) -> None:
    """Delete old Idempotency-Key records and long-dead API tokens (run it daily)."""
    with db.session_scope() as session:
        counts = purge(session, idempotency_age=dt.timedelta(hours=idempotency_hours),
                       token_age=dt.timedelta(days=token_days))
    click.echo(f"deleted {counts['idempotency_keys']} idempotency keys and {counts['api_tokens']} API tokens")


def register(app: Flask) -> None:
    """Add the core commands to the app's CLI."""
    app.cli.add_command(db_cli)
    app.cli.add_command(create_user_command)
    app.cli.add_command(worker_command)
    app.cli.add_command(purge_command)
