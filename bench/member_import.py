"""Member CSV import on PostgreSQL: rows per second and memory for a 100,000-row file.

Baseline, measured in the same run on the same database: PostgreSQL's own COPY of the same file
into a plain table (no validation, no encryption) - the ceiling for getting rows into the database.
Run: DATABASE_URL=postgresql://... .venv/bin/python bench/member_import.py [--quick]  (BENCH_ROWS to change the
size; --quick or BENCH_QUICK=1: 5,000 rows)
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _support import PeakRss, knob, report  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

ROWS = knob("BENCH_ROWS", 100_000, 5_000)
SERVER = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def write_csv(path: Path, union_public_id: str) -> int:
    from members.validators import id_check_char

    with open(path, "w", encoding="utf-8") as fh:
        fh.write("name,id_number,phone,union_id,join_date\n")
        for i in range(ROWS):
            born = dt.date(1960, 1, 1) + dt.timedelta(days=i // 1000)
            body = f"640104{born:%Y%m%d}{i % 1000:03d}"
            fh.write(f"会员{i},{body}{id_check_char(body)},139{i:08d},{union_public_id},2020-01-01\n")
    return path.stat().st_size


def main() -> None:
    from core import create_app, migrate
    from core.auth import Actor, create_user
    from core.db import db
    from core.models import Role
    from members import service

    server = make_url(SERVER.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"uc_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    tmp = Path(tempfile.mkdtemp())
    try:
        migrate.upgrade(url)
        app = create_app({"DATABASE_URL": url, "REDIS_URL": None, "INSTANCE_PATH": str(tmp),
                          "UPLOAD_FOLDER": str(tmp / "uploads"), "SECRET_KEY": "bench", "DATA_KEY": "bench-data-key",
                          "JOBS_MODE": "sync"})
        with app.app_context():
            session = db.session
            user = create_user(session, username="bench-admin", password="bench-password", role=Role.UNION_ADMIN)
            session.commit()
            actor = Actor.of(user)
            union = service.create_union(session, actor, name="基准工会", parent_id=None, region="640000")
            csv_path = tmp / "members.csv"
            size = write_csv(csv_path, union.public_id)

            raw = db.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("CREATE TABLE copy_baseline (name text, id_number text, phone text, union_id text, "
                            "join_date date)")
                started = time.perf_counter()
                with open(csv_path, "rb") as fh, cur.copy(
                        "COPY copy_baseline FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                    while chunk := fh.read(1 << 16):
                        copy.write(chunk)
                raw.commit()
                copy_rate = ROWS / (time.perf_counter() - started)
            finally:
                raw.close()

            started = time.perf_counter()
            with PeakRss() as memory:
                with open(csv_path, "rb") as fh:
                    imp = service.start_import(session, actor, fh, "members.csv", str(tmp / "uploads"), ROWS)
                imp = service.run_import(session, app.extensions["cipher"], imp.public_id, str(tmp / "uploads"))
            elapsed = time.perf_counter() - started
            rss_growth = memory.growth
            assert imp.created_rows == ROWS, (imp.created_rows, imp.rejected_rows)
            again = time.perf_counter()
            with open(csv_path, "rb") as fh:
                imp2 = service.start_import(session, actor, fh, "members.csv", str(tmp / "uploads"), ROWS)
            imp2 = service.run_import(session, app.extensions["cipher"], imp2.public_id, str(tmp / "uploads"))
            reimport_rate = ROWS / (time.perf_counter() - again)
            assert imp2.unchanged_rows == ROWS and imp2.created_rows == 0
        db.engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    rate = ROWS / elapsed
    print(f"member import, {ROWS:,} rows ({size / 2**20:.1f} MiB CSV) on PostgreSQL")
    print(f"{'figure':<42}{'value':>14}{'baseline':>14}{'ratio':>8}  target")
    print(f"{'import rows/s (validate, encrypt, audit)':<42}{rate:>14,.0f}{copy_rate:>14,.0f}{rate / copy_rate:>8.3f}"
          f"  100k rows in < 5 min")
    print(f"{'re-import rows/s (all unchanged)':<42}{reimport_rate:>14,.0f}{copy_rate:>14,.0f}"
          f"{reimport_rate / copy_rate:>8.3f}  -")
    print(f"{'import wall time, s':<42}{elapsed:>14.1f}{'':>14}{'':>8}  < 300")
    print(f"{'RSS growth during import (peak), MiB':<42}{rss_growth:>14.1f}{size / 2**20:>14.1f}"
          f"{rss_growth / (size / 2**20):>8.2f}  flat as files grow (streamed)")
    print("(baseline: PostgreSQL COPY of the same file into a plain table, same run; RSS baseline: file size)")
    report(f"member import ({ROWS:,} rows: validate, encrypt, audit)", rate, "rows/s", "100k rows in < 5 min",
           met=rate * 300 >= 100_000, baseline=copy_rate, baseline_label="COPY")
    report("member re-import (all unchanged)", reimport_rate, "rows/s", baseline=copy_rate, baseline_label="COPY")
    report(f"member import of {ROWS:,} rows", elapsed, "s", "< 300")
    report("member import RSS growth (peak)", rss_growth, "MiB", "flat as files grow (streamed)",
           baseline=size / 2**20, baseline_label="the file's size")


if __name__ == "__main__":
    main()
