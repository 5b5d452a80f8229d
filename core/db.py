"""Database engine, one session per request or job, and the declarative base every model uses."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Annotated, Iterator

from flask import Flask, g, has_app_context
from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Date
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Return the current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Store aware datetimes as UTC; SQLite keeps them naive, so re-attach UTC on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use aware UTC datetimes")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntType = BigInteger().with_variant(Integer(), "sqlite")
BigIntPK = Annotated[int, mapped_column(BigIntType, primary_key=True)]
Timestamp = Annotated[dt.datetime, mapped_column(UTCDateTime())]


# JSON everywhere, stored as JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {int: BigInteger(), dt.datetime: UTCDateTime()}


def _configure_sqlite(engine: Engine) -> None:
    """Make pysqlite transactional (savepoints work) and enforce foreign keys."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine with the project's settings for the given URL."""
    # Bound values are ID numbers, phones and hardship reasons: errors and logs must never show them.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


class Database:
    """Own the engine and hand out sessions: one per app context (request, CLI command or job)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.factory: sessionmaker | None = None

    def init_app(self, app: Flask) -> None:
        self.engine = make_engine(app.config["DATABASE_URL"])
        self.factory = sessionmaker(self.engine, expire_on_commit=False)
        app.extensions["db"] = self
        app.teardown_appcontext(self._teardown)

    def bind_to(self, connection: Connection) -> None:
        """Run every session inside an outer transaction on `connection` (used by tests)."""
        self.factory = sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    @property
    def session(self) -> Session:
        """Return the session of the current app context, creating it on first use."""
        if not has_app_context():
            raise RuntimeError("db.session needs an app context; use db.new_session() outside one")
        sess = g.get("_db_session")
        if sess is None:
            sess = g._db_session = self.factory()
        return sess

    def new_session(self) -> Session:
        """Return a fresh session the caller closes."""
        return self.factory()

    @contextlib.contextmanager
    def session_scope(self) -> Iterator[Session]:
        """Yield a session that rolls back on leaving unless the block committed."""
        sess = self.factory()
        try:
            yield sess
        finally:
            sess.rollback()
            sess.close()

    def _teardown(self, _exc) -> None:
        sess = g.pop("_db_session", None)
        if sess is not None:
            # Whatever the handler did not commit is dropped: views never commit half a change.
            sess.rollback()
            sess.close()


db = Database()


# --- business days in SQL -------------------------------------------------------------------------

class business_day(FunctionElement):
    """SQL: the business day (Asia/Shanghai) a UTC timestamp column falls on, as a DATE."""

    type = Date()
    inherit_cache = True
    name = "business_day"


class business_month(FunctionElement):
    """SQL: the first day of the business month a UTC timestamp column falls in, as a DATE."""

    type = Date()
    inherit_cache = True
    name = "business_month"


def _zone() -> tuple[str, int]:
    from core.i18n import BUSINESS_TZ

    offset = BUSINESS_TZ.utcoffset(dt.datetime(2000, 1, 1))
    return BUSINESS_TZ.key, int(offset.total_seconds() // 3600)


@compiles(business_day, "postgresql")
def _business_day_pg(element, compiler, **kw):
    return "CAST(timezone('%s', %s) AS DATE)" % (_zone()[0], compiler.process(element.clauses, **kw))


@compiles(business_month, "postgresql")
def _business_month_pg(element, compiler, **kw):
    return "CAST(date_trunc('month', timezone('%s', %s)) AS DATE)" % (
        _zone()[0], compiler.process(element.clauses, **kw))


# SQLite keeps naive UTC text and has no time zones; Asia/Shanghai has kept UTC+8 without summer time since 1991.
@compiles(business_day, "sqlite")
def _business_day_sqlite(element, compiler, **kw):
    return "date(%s, '%+d hours')" % (compiler.process(element.clauses, **kw), _zone()[1])


@compiles(business_month, "sqlite")
def _business_month_sqlite(element, compiler, **kw):
    return "date(%s, '%+d hours', 'start of month')" % (compiler.process(element.clauses, **kw), _zone()[1])


def dialect_insert(session: Session, entity):
    """Return an INSERT for `entity` that understands ON CONFLICT on this session's database."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(entity)


def enum_type(enum_cls, name: str):
    """Store a Python enum by its value, as a checked VARCHAR on every database."""
    from sqlalchemy import Enum

    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in enum_cls),
        values_callable=lambda cls: [m.value for m in cls],
        validate_strings=True,
    )
