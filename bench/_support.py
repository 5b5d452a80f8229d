"""What the benchmarks share: a scratch PostgreSQL database, a peak-RSS sampler, and bulk-made members."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import threading
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402


@contextlib.contextmanager
def scratch_database(server_url: str, *, keep: bool = False):
    """Create a database of its own on the server, migrated to head; drop it afterwards unless `keep`. Yields its
    URL."""
    from core import migrate

    server = make_url(server_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"uc_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        migrate.upgrade(url)
        yield url
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def rss_mib() -> float:
    """Return the current resident set size in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Sample the resident set size in the background and keep the peak."""

    def __enter__(self):
        self.start = self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.growth = self.peak - self.start


def id_number(i: int) -> str:
    """The i-th of a run of valid, distinct ID numbers."""
    from members.validators import id_check_char

    born = dt.date(1960, 1, 1) + dt.timedelta(days=i // 1000)
    body = f"640104{born:%Y%m%d}{i % 1000:03d}"
    return body + id_check_char(body)


def insert_members(session, cipher, union, n: int, *, start: int = 0, chunk: int = 5000) -> None:
    """Insert members straight into the table (the registry's own import is measured in member_import.py)."""
    from members.models import Member

    today = dt.date(2020, 1, 1)
    now = dt.datetime.now(dt.timezone.utc)
    for first in range(start, start + n, chunk):
        rows = []
        for i in range(first, min(start + n, first + chunk)):
            ident, phone = id_number(i), f"139{i:08d}"
            rows.append({"public_id": f"mem_bench{i:09d}", "name": f"会员{i}",
                         "id_number_enc": cipher.encrypt(ident, "member.id_number"),
                         "id_number_index": cipher.blind_index(ident, "member.id_number"),
                         "id_number_masked": ident[:4] + "**********" + ident[-4:],
                         "phone_enc": cipher.encrypt(phone, "member.phone"),
                         "phone_index": cipher.blind_index(phone, "member.phone"),
                         "phone_masked": "139****" + phone[-4:], "union_id": union.id, "status": "active",
                         "join_date": today, "created_at": now, "updated_at": now})
        session.execute(Member.__table__.insert(), rows)
        session.commit()
