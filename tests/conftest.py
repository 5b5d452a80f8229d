"""Shared fixtures: a fresh database per run (PostgreSQL when DATABASE_URL is set, else SQLite),
each test inside a transaction rolled back at its end, and real Redis when REDIS_URL is set."""

from __future__ import annotations

import contextlib
import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core import create_app, migrate
from core.config import normalize_database_url
from core.db import db, make_engine
from tests.stripe_fixtures import stripe_app_config, stripe_server, stripe_server_session  # noqa: F401

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
ENV_DATABASE_URL = os.environ.get("DATABASE_URL", "")
ENV_REDIS_URL = os.environ.get("REDIS_URL") or None


def skip_or_fail(reason: str) -> None:
    """Skip a test that needs a missing service, or fail it when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


@contextlib.contextmanager
def scratch_database(tmp_path_factory, prefix: str = "uc_test"):
    """Yield the URL of a brand-new database migrated to head; drop it afterwards."""
    if REQUIRE_SERVICES and not is_postgres(normalize_database_url(ENV_DATABASE_URL)):
        pytest.fail("REQUIRE_SERVICES=1 needs DATABASE_URL pointing at PostgreSQL")
    if ENV_DATABASE_URL and is_postgres(normalize_database_url(ENV_DATABASE_URL)):
        server = make_url(normalize_database_url(ENV_DATABASE_URL))
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = server.set(database=name).render_as_string(hide_password=False)
        try:
            migrate.upgrade(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        path = tmp_path_factory.mktemp(prefix) / "test.sqlite3"
        url = f"sqlite:///{path}"
        migrate.upgrade(url)
        yield url


@contextlib.contextmanager
def app_of_its_own(config: dict):
    """Create an app with `config` for the length of the block. An app binds the process-wide database handle
    and job runner to itself; they are given back afterwards, so later tests keep the test database."""
    from core.jobs import jobs

    previous = (db.engine, db.factory, getattr(jobs, "mode", None))
    app = create_app(config)
    try:
        yield app
    finally:
        db.engine.dispose()
        db.engine, db.factory, jobs.mode = previous


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    """A fresh database for this run (PostgreSQL when DATABASE_URL is set, else SQLite)."""
    with scratch_database(tmp_path_factory) as url:
        yield url
        db.engine and db.engine.dispose()


@pytest.fixture(scope="session")
def engine(database_url):
    """An engine of its own on the test database, for tests that commit for real (concurrency)."""
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def postgres(database_url):
    """Skip (or fail under REQUIRE_SERVICES) a test that needs PostgreSQL."""
    if not is_postgres(database_url):
        skip_or_fail("this test needs PostgreSQL (set DATABASE_URL)")
    return database_url


@pytest.fixture
def redis_url():
    """Skip (or fail under REQUIRE_SERVICES) a test that needs a real Redis."""
    if not ENV_REDIS_URL:
        skip_or_fail("this test needs Redis (set REDIS_URL)")
    import redis

    try:
        redis.Redis.from_url(ENV_REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"REDIS_URL is set but Redis does not answer: {exc}")
    return ENV_REDIS_URL


@pytest.fixture(scope="session")
def app(database_url, tmp_path_factory):
    """The app, configured for tests: the test database, real Redis if given, inline jobs."""
    instance = tmp_path_factory.mktemp("instance")
    application = create_app({
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": database_url,
        "REDIS_URL": ENV_REDIS_URL,
        "REDIS_PREFIX": f"uctest:{uuid.uuid4().hex[:8]}:",
        "UPLOAD_FOLDER": str(instance / "uploads"),
        "SECRET_KEY": "test-secret-key",
        "DATA_KEY": "test-data-key-that-is-long-enough-for-tests",
        "JOBS_MODE": "sync",
        # Tests refresh the console's figures themselves (tests/stats); a view never does it behind their back.
        "STATS_REFRESH_AFTER": 0,
        # Cheap argon2id keeps the suite fast; test_password_hashing checks the production cost.
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_MEMORY_KIB": 1024,
        "TESTING": True,
    })
    if ENV_REDIS_URL and not application.extensions["kv"].ping() and REQUIRE_SERVICES:
        pytest.fail("REDIS_URL is set but Redis does not answer")
    yield application
    db.engine.dispose()


@pytest.fixture
def txn(app):
    """Run the test inside one outer transaction that is rolled back at the end."""
    kv = app.extensions["kv"]
    base_prefix = kv.prefix
    kv.prefix = f"{base_prefix}{uuid.uuid4().hex[:8]}:"
    conn = db.engine.connect()
    outer = conn.begin()
    original_factory = db.factory
    db.bind_to(conn)
    try:
        yield conn
    finally:
        db.factory = original_factory
        outer.rollback()
        conn.close()
        kv.prefix = base_prefix


@pytest.fixture
def session(app, txn):
    """A session in the test's transaction (no app context: requests must get their own)."""
    sess = db.new_session()
    yield sess
    sess.close()


@pytest.fixture
def client(app, txn):
    """A test client whose requests share the test's transaction."""
    return app.test_client()


@pytest.fixture
def cipher(app):
    return app.extensions["cipher"]
