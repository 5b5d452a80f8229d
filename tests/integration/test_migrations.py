import uuid

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

import core.model_registry  # noqa: F401
from core import migrate
from core.db import Base, make_engine

CORE_TABLES = {"users", "api_tokens", "audit_events", "unions", "members", "hardship_records",
               "member_imports", "member_import_rows"}


def _round_trip(url):
    migrate.upgrade(url)
    eng = make_engine(url)
    with eng.connect() as conn:
        assert CORE_TABLES <= set(inspect(conn).get_table_names())
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    migrate.downgrade(url, "base")
    with eng.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(url)
    eng.dispose()


def test_migrations_build_the_whole_schema_from_empty_on_sqlite(tmp_path):
    _round_trip(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")


def test_migrations_build_the_whole_schema_from_empty_on_postgres(postgres):
    server = make_url(postgres)
    name = f"uc_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        _round_trip(server.set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_models_match_the_migrated_test_database(engine):
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
