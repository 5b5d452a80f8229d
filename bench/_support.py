"""What the benchmarks share: their sizes (full or quick), a scratch PostgreSQL database, pgbench's TPC-B-like
baseline, a peak-RSS sampler, bulk-made members, and the figures each reports to the table bench/run.py prints."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402


# Small sizes, to try a benchmark (or all of them, through bench/run.py --quick) end to end in a few minutes.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0") or "--quick" in sys.argv[1:]
# Where report() writes the figures: a file of JSON lines the runner names.
RESULTS_ENV = "BENCH_RESULTS"
TARGET = re.compile(r"^\s*(ratio\s*)?(<=|>=|<|>)\s*(\d[\d,]*(?:\.\d+)?)")


def knob(name: str, full: float, quick: float, kind=int):
    """A size or a duration: the environment variable `name` if set, else the quick or the full default."""
    value = os.environ.get(name)
    return kind(value) if value not in (None, "") else kind(quick if QUICK else full)


@contextlib.contextmanager
def scratch_database(server_url: str, *, keep: bool = False, migrated: bool = True):
    """Create a database of its own on the server, migrated to head unless not `migrated`; drop it afterwards unless
    `keep`. Yields its URL."""
    from core import migrate

    server = make_url(server_url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"uc_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        if migrated:
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


def pgbench_binary() -> str:
    """The pgbench program: on the PATH or in PostgreSQL's own bin folder."""
    found = shutil.which("pgbench") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if not found:
        sys.exit("pgbench not found: apt-get install postgresql-client")
    return str(found)


def _pgbench_args(url: str) -> tuple[list[str], dict[str, str], str]:
    u = make_url(url)
    env = {**os.environ, **({"PGPASSWORD": u.password} if u.password else {})}
    return ["-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres"], env, u.database


def pgbench_init(url: str, scale: int) -> None:
    """Create and fill pgbench's tables in the database at `scale`."""
    conn, env, database = _pgbench_args(url)
    subprocess.run([pgbench_binary(), *conn, "-i", "-q", "-s", str(scale), database], check=True, env=env,
                   capture_output=True)


def pgbench_run(url: str, *, clients: int, threads: int, seconds: int) -> float:
    """Run pgbench's TPC-B-like transaction on tables pgbench_init made; return its transactions per second."""
    conn, env, database = _pgbench_args(url)
    out = subprocess.run([pgbench_binary(), *conn, "-c", str(clients), "-j", str(threads), "-T", str(seconds),
                          database], check=True, env=env, capture_output=True, text=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def pgbench(url: str, *, scale: int, clients: int, threads: int, seconds: int) -> float:
    """Initialise pgbench's tables in the database and run TPC-B-like; return its transactions per second."""
    pgbench_init(url, scale)
    return pgbench_run(url, clients=clients, threads=threads, seconds=seconds)


def meets(target: str, value: float, ratio: float | None = None) -> bool | None:
    """Whether a target such as ">= 1,000/s", "< 10 ms" or ">= 1,000/s; ratio >= 0.8" is met: each part that starts
    with a comparison is checked against the value (or, after "ratio", the ratio); None when no part does."""
    verdicts = []
    for part in target.split(";"):
        found = TARGET.match(part)
        if not found:
            continue
        on_ratio, op, bound = found.group(1), found.group(2), float(found.group(3).replace(",", ""))
        subject = ratio if on_ratio else value
        if subject is None or not math.isfinite(subject):
            verdicts.append(False)
            continue
        verdicts.append({"<": subject < bound, "<=": subject <= bound, ">": subject > bound,
                         ">=": subject >= bound}[op])
    return all(verdicts) if verdicts else None


def figure(name: str, value: float, unit: str, target: str = "-", *, met: bool | None = None,
           baseline: float | None = None, baseline_label: str = "", ratio: float | None = None) -> dict:
    """One row of the table: the figure, its own baseline if it has one (ratio value / baseline unless given), the
    target as the benchmark states it, and whether it is met (worked out from the target unless given)."""
    value = float(value)
    if baseline is not None:
        baseline = float(baseline)
        if ratio is None:
            ratio = value / baseline if baseline else math.inf
    if met is None:
        met = meets(target, value, ratio)
    return {"figure": name, "value": value, "unit": unit, "target": target, "met": met, "baseline": baseline,
            "baseline_label": baseline_label, "ratio": None if ratio is None else float(ratio)}


def report(name: str, value: float, unit: str, target: str = "-", **kwargs) -> dict:
    """Record a figure for bench/run.py's table: a JSON line appended to the file BENCH_RESULTS names (nothing is
    written when it is not set, as when a benchmark runs on its own). Returns the row."""
    row = figure(name, value, unit, target, **kwargs)
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return row


def time_parts(module, names) -> dict[str, float]:
    """Wrap module.name for each name it has to add up the seconds spent in it; return the running totals."""
    spent = {}
    for name in names:
        real = getattr(module, name, None)
        if real is None:
            continue
        spent[name] = 0.0

        def wrapper(*args, _real=real, _name=name, **kwargs):
            started = time.perf_counter()
            try:
                return _real(*args, **kwargs)
            finally:
                spent[_name] += time.perf_counter() - started

        setattr(module, name, wrapper)
    return spent
