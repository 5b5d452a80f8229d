"""The backup and restore of docs/operations.md, run for real: ops/backup.sh, then ops/restore.sh into a new
database, and the copy is the original, table by table, with a ledger that verifies and sealed fields that open."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from core.db import db
from tests.conftest import ENV_DATABASE_URL, app_of_its_own, is_postgres, scratch_database, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).parent / "flask")
KEYS = {"SECRET_KEY": "restore-test-secret", "DATA_KEY": "restore-test-data-key-long-enough",
        "PASSWORD_HASH_TIME_COST": "1", "PASSWORD_HASH_MEMORY_KIB": "1024"}


def run(*args, url: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, **KEYS, "DATABASE_URL": url, "FLASK": FLASK}
    env.pop("REDIS_URL", None)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=check, timeout=300)


def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    """Each table's row count and a digest of all its rows, in an order that does not depend on storage."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            return {t: tuple(conn.execute(text(
                f'SELECT count(*), coalesce(md5(string_agg(md5(x::text), \'\' ORDER BY md5(x::text))), \'\') '
                f'FROM "{t}" x')).one()) for t in tables}
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    if not is_postgres(ENV_DATABASE_URL or ""):
        skip_or_fail("the backup and restore test needs PostgreSQL (set DATABASE_URL)")
    with scratch_database(tmp_path_factory, "uc_backup") as url:
        run(FLASK, "--app", "wsgi", "demo", "--members-per-union", "3", url=url)
        yield url


@pytest.fixture
def empty_database(source):
    server = make_url(source)
    name = f"uc_restored_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def backup(source, tmp_path):
    out = tmp_path / "unioncard.dump"
    result = run("ops/backup.sh", source, str(out), url=source)
    assert out.exists() and (tmp_path / "unioncard.dump.sha256").read_text().strip() in result.stdout
    return out


def test_a_backup_restores_into_a_new_database_as_the_same_data_with_a_ledger_that_verifies(
        source, backup, empty_database):
    result = run("ops/restore.sh", str(backup), empty_database, url=empty_database)
    assert "ledger ok" in result.stdout, result.stdout + result.stderr
    original, copy = fingerprint(source), fingerprint(empty_database)
    assert copy == original
    assert {"members", "cards", "ledger_entries", "ledger_transactions", "payments", "alembic_version"} <= set(copy)
    assert copy["payments"][0] > 0 and copy["ledger_entries"][0] > 0


def test_the_restored_copy_serves_with_the_same_keys(source, backup, empty_database, tmp_path):
    run("ops/restore.sh", str(backup), empty_database, url=empty_database)
    config = {"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": empty_database, "REDIS_URL": None,
              "JOBS_MODE": "sync", "TESTING": True, "SECRET_KEY": KEYS["SECRET_KEY"], "DATA_KEY": KEYS["DATA_KEY"]}
    with app_of_its_own(config) as app:
        client = app.test_client()
        assert client.get("/healthz").json["database"] == "ok"
        token = client.post("/api/v1/auth/tokens", json={"username": "admin", "password": "demo-pass-2026"})
        assert token.status_code in (200, 201) and token.json["token"], token.json
        with app.app_context():
            from members.models import Member

            sealed = db.session.scalars(select(Member.id_number_enc).limit(5)).all()
            opened = [app.extensions["cipher"].decrypt(v, "member.id_number") for v in sealed]
        assert len(opened) == 5 and all(len(v) == 18 for v in opened)


def test_a_restore_refuses_a_database_that_already_has_tables(source, backup):
    result = run("ops/restore.sh", str(backup), source, url=source, check=False)
    assert result.returncode == 2 and "already has" in result.stderr


def test_a_restore_refuses_a_backup_that_does_not_match_its_checksum(backup, empty_database):
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0xFF
    backup.write_bytes(bytes(data))
    result = run("ops/restore.sh", str(backup), empty_database, url=empty_database, check=False)
    assert result.returncode == 2 and "SHA-256" in result.stderr
    assert fingerprint(empty_database) == {}
