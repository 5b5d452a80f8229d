"""Commands: `db upgrade|downgrade|current`, `create-user`."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import DBAPIError

from core import audit, migrate
from core.auth import SYSTEM, create_user, resolve_public_id
from core.db import db
from core.errors import DomainError
from core.models import Role

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


def register(app: Flask) -> None:
    """Add the core commands to the app's CLI."""
    app.cli.add_command(db_cli)
    app.cli.add_command(create_user_command)
    app.cli.add_command(worker_command)
