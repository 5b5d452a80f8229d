"""The union console's overview of the whole province on PostgreSQL: 500,000 members, 5,000 merchants and 10,000,000
card payments. Target: the overview in under one second, read from pre-aggregated figures.

Made first (timed apart, see bench/seed_scale.py): the province's data set, into a scratch database (or use one
already seeded with --database-url). Then the figures as the platform keeps them: `stats.service.refresh(full=True)`
once (the first refresh, or after loading data) and an incremental refresh (the scheduled job's work: the day
before the last refresh and today), each with where its time went. Then the overview of the federation's whole
subtree, each measured --runs times after two warm-up calls: the service call `stats.service.overview`, GET
/api/v1/stats/overview with the bearer token of the federation's union admin, and the console page GET /console/
signed in as that admin (through the Flask test client: no network, no web server). The page reads the trends of
the last twelve months too.

Baseline, measured in the same run on the same database: the live queries the pre-aggregation saves a page view
from - the cards of the province's members that paid in the last 30 days (count distinct over the payments), and
the province's payments and their sum since the start (the payments joined to their members and unions), and,
as a floor, a plain sum over the payments table. The overview's own figures are checked against them.

Run: .venv/bin/python bench/console.py [--members N --merchants N --payments N --months N] [--runs 20]
     [--database-url URL (already seeded) | --keep] [--quick]
--quick (or BENCH_QUICK=1): --members 20000 --merchants 200 --payments 200000 --runs 5 (under a minute).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import statistics
import tempfile
import time
import uuid

import seed_scale
from _support import knob, report, scratch_database, time_parts
from sqlalchemy import select, text

SERVER = seed_scale.SERVER
TARGET_MS = 1000
WARM_UP = 2
BASELINE_RUNS = 3

NAIVE_USED_30D = """
    SELECT count(DISTINCT p.card_id) FROM payments p
    JOIN members m ON m.id = p.member_id JOIN unions u ON u.id = m.union_id JOIN cards c ON c.id = p.card_id
    WHERE u.path LIKE :subtree AND p.created_at >= :since AND c.status = 'active'"""
NAIVE_TOTALS = """
    SELECT count(*), coalesce(sum(p.charged), 0), coalesce(sum(p.discount), 0) FROM payments p
    JOIN members m ON m.id = p.member_id JOIN unions u ON u.id = m.union_id
    WHERE u.path LIKE :subtree"""
NAIVE_SUM = "SELECT coalesce(sum(charged), 0) FROM payments"
# The parts of stats.service.refresh whose time is added up and shown (any it no longer has are left out).
REFRESH_PARTS = {"_day_rows": "days: grouped sums by union and day", "_month_rows": "months: cards used and in use",
                 "_now_rows": "counts now", "program_days": "aid programs by day (the ledger)",
                 "_insert": "writing the rows"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def timed(call, runs: int) -> list[float]:
    """Call it WARM_UP times, then `runs` times; return each timed call's milliseconds."""
    for _ in range(WARM_UP):
        call()
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        spent.append((time.perf_counter() - started) * 1000)
    return spent


def measure(url: str, runs: int) -> dict:
    """Refresh the figures, time the overview three ways and the naive queries; return what was measured."""
    from core import create_app
    from core.auth import create_user, issue_token
    from core.db import db
    from core.models import Role
    from members.models import Union
    from stats import service

    app = create_app({"DATABASE_URL": url, "REDIS_URL": None, "INSTANCE_PATH": tempfile.mkdtemp(),
                      "SECRET_KEY": seed_scale.SECRET_KEY, "DATA_KEY": seed_scale.DATA_KEY, "JOBS_MODE": "sync",
                      # The page would otherwise queue a refresh when it finds the figures old: not what is timed.
                      "STATS_REFRESH_AFTER": 0,
                      "PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_KIB": 1024})
    out: dict = {}
    username = f"console-{uuid.uuid4().hex[:8]}"
    with app.app_context():
        session = db.session
        federation = session.scalar(select(Union).where(Union.parent_id.is_(None), Union.region == "640000")
                                    .order_by(Union.id))
        assert federation is not None, "no federation of region 640000: seed the database first"
        fed_id, fed_public, fed_name, subtree = federation.id, federation.public_id, federation.name, federation.path
        user = create_user(session, username=username, password=seed_scale.PASSWORD, role=Role.UNION_ADMIN,
                           union_id=federation.id)
        token, _token = issue_token(session, user, 4 * 3600)
        session.commit()
        out["counts"] = {table: session.scalar(text(f"SELECT count(*) FROM {table}"))
                         for table in ("unions", "members", "cards", "merchants", "stores", "offers", "payments",
                                       "refunds")}
        session.rollback()

    parts = time_parts(service, REFRESH_PARTS)

    def refresh(**kwargs):
        for name in parts:
            parts[name] = 0.0
        with app.app_context(), db.session_scope() as s:
            started = time.perf_counter()
            done = service.refresh(s, **kwargs)
            s.commit()
            return done, time.perf_counter() - started, dict(parts)

    print("refreshing the figures: in full ...", flush=True)
    out["full"], out["full_s"], out["full_parts"] = refresh(full=True)
    print(f"  {out['full_s']:.1f} s; incremental ...", flush=True)
    out["incremental"], out["incremental_s"], out["incremental_parts"] = refresh()
    print(f"  {out['incremental_s']:.1f} s", flush=True)

    def overview():
        with app.app_context(), db.session_scope() as s:
            figures = service.overview(s, s.get(Union, fed_id))
            out["overview"] = figures
            return figures

    out["service"] = timed(overview, runs)

    client = app.test_client()
    api_url = f"/api/v1/stats/overview?union_id={fed_public}"

    def api():
        resp = client.get(api_url, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True)[:300])
        out["api_body"] = resp.get_json()

    out["api"] = timed(api, runs)

    login = client.get("/login")
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', login.get_data(as_text=True)).group(1)
    signed_in = client.post("/login", data={"username": username, "password": seed_scale.PASSWORD,
                                            "csrf_token": csrf})
    assert signed_in.status_code == 302, signed_in.status_code
    page_url = f"/console/?union_id={fed_public}"

    def page():
        resp = client.get(page_url)
        assert resp.status_code == 200, (resp.status_code, resp.get_data(as_text=True)[:300])
        out["page_bytes"] = len(resp.data)
        assert fed_name in resp.get_data(as_text=True)

    out["page"] = timed(page, runs)

    with app.app_context():
        session = db.session
        refreshed_at = service.state(session).refreshed_at
        params = {"subtree": subtree + "%", "since": refreshed_at - dt.timedelta(days=service.USAGE_DAYS)}
        naive = {}
        for name, sql in (("used_30d", NAIVE_USED_30D), ("totals", NAIVE_TOTALS), ("sum", NAIVE_SUM)):
            spent = []
            for _ in range(BASELINE_RUNS):
                started = time.perf_counter()
                naive[name] = session.execute(text(sql), params).one()
                spent.append((time.perf_counter() - started) * 1000)
            out[f"naive_{name}"] = spent
        session.rollback()
        out["naive"] = naive
        out["sizes"] = session.execute(text("""
            SELECT pg_database_size(current_database()), pg_total_relation_size('payments'),
                   pg_total_relation_size('stats_union_days') + pg_total_relation_size('stats_union_months')
                   + pg_total_relation_size('stats_union_figures') + pg_total_relation_size('stats_program_days')""")
                                       ).one()
        session.rollback()
    db.engine.dispose()

    o = out["overview"]
    used, (count, charged, _discount) = naive["used_30d"][0], naive["totals"]
    assert o.counts.cards_used_30d == used, (o.counts.cards_used_30d, used)
    assert (o.total.payments, o.total.charged) == (count, charged), (o.total, count, charged)
    body = out["api_body"]
    assert (body["cards_used_30d"], body["payments"]["charged"]) == (used, charged), body["payments"]
    return out


def show(out: dict, runs: int, scale: str, seed_s: float | None) -> None:
    o = out["overview"]
    naive_ms = statistics.median(out["naive_used_30d"]) + statistics.median(out["naive_totals"])
    print()
    print(f"union console: the overview of the whole province on PostgreSQL ({scale}); "
          f"{runs} timed calls each after {WARM_UP} warm-up")
    print(f"{'figure':<48}{'value':>12}{'baseline':>12}{'ratio':>9}  target")
    for label, key in (("overview, service call", "service"), ("GET /api/v1/stats/overview", "api"),
                       ("GET /console/ (the page)", "page")):
        for stat, value in (("median", statistics.median(out[key])), ("p95", percentile(out[key], 95))):
            print(f"{label + ', ' + stat + ' ms':<48}{value:>12,.1f}{naive_ms:>12,.0f}{naive_ms / value:>9,.1f}"
                  f"  < {TARGET_MS:,}")
    print(f"{'refresh in full, s':<48}{out['full_s']:>12,.1f}{'':>12}{'':>9}  -")
    print(f"{'refresh, incremental (the job), s':<48}{out['incremental_s']:>12,.2f}{'':>12}{'':>9}  -")
    for name, label in REFRESH_PARTS.items():
        if name in out["full_parts"]:
            print(f"{'  of which ' + label + ', s':<48}{out['full_parts'][name]:>12,.1f}"
                  f"{out['incremental_parts'][name]:>12,.2f}  (in full, incremental)")
    for label, key in (("naive: cards used in 30 days, live, ms", "naive_used_30d"),
                       ("naive: payments and sum since start, live, ms", "naive_totals"),
                       ("naive: SELECT sum(charged) FROM payments, ms", "naive_sum")):
        print(f"{label:<48}{statistics.median(out[key]):>12,.0f}")
    database, payments, figures = out["sizes"]
    print(f"{'database size (pg_database_size), MB':<48}{database / 2**20:>12,.0f}")
    print(f"{'  of which payments with indexes, MB':<48}{payments / 2**20:>12,.0f}")
    print(f"{'  of which the console figures, MB':<48}{figures / 2**20:>12,.1f}")
    full, inc = out["full"], out["incremental"]
    print(f"{'refresh in full: days, union-days, union-months':<48}{full.days:>12,}{full.day_rows:>12,}"
          f"{full.month_rows:>9,}")
    print(f"{'refresh, incremental: days, union-days, unions':<48}{inc.days:>12,}{inc.day_rows:>12,}"
          f"{inc.union_rows:>9,}")
    if seed_s is not None:
        print(f"{'setup: seeded in, s':<48}{seed_s:>12,.0f}")
    for name, value in out["counts"].items():
        print(f"{'  ' + name:<48}{value:>12,}")
    c = o.counts
    usage = f"{c.usage_rate:.1%}" if c.usage_rate is not None else "none"
    print(f"the overview says: {c.members:,} members, {c.cards_active:,} active cards, usage rate "
          f"{usage} ({c.cards_used_30d:,} used in 30 days), {o.merchants:,} merchants, {o.stores:,} stores, "
          f"{o.offers} offers, {len(o.programs)} programs, {o.total.payments:,} payments "
          f"(¥{o.total.charged / 100:,.0f} by card), page {out['page_bytes'] / 1024:,.0f} KiB; "
          "checked equal to the live queries")
    print("(baseline: the two live queries the overview would need without the figures - cards used in 30 days and "
          "the payments since the start, for the province's members - medians of "
          f"{BASELINE_RUNS}, same database, same run; ratio = baseline / value)")
    for label, key in (("union console overview, service call", "service"),
                       ("union console overview, GET /api/v1/stats/overview", "api"),
                       ("union console overview, GET /console/ (the page)", "page")):
        for stat, value in (("median", statistics.median(out[key])), ("p95", percentile(out[key], 95))):
            report(f"{label}, {stat}", value, "ms", f"< {TARGET_MS:,}", baseline=naive_ms,
                   baseline_label="the live queries")
    report("union console figures: refresh in full", out["full_s"], "s")
    report("union console figures: refresh, incremental (the job)", out["incremental_s"], "s")
    if seed_s is not None:
        report("province data set seeded (bench/seed_scale.py)", seed_s, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the union console's overview of a province-scale data set.")
    parser.add_argument("--members", type=int, default=knob("BENCH_MEMBERS", 500_000, 20_000))
    parser.add_argument("--merchants", type=int, default=knob("BENCH_MERCHANTS", 5_000, 200))
    parser.add_argument("--payments", type=int, default=knob("BENCH_PAYMENTS", 10_000_000, 200_000))
    parser.add_argument("--months", type=int, default=knob("BENCH_MONTHS", 12, 12))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--runs", type=int, default=knob("BENCH_RUNS", 20, 5))
    parser.add_argument("--database-url", help="a database seeded by bench/seed_scale.py (default: seed a scratch one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database and print its URL")
    parser.add_argument("--quick", action="store_true", help="small default sizes (BENCH_QUICK=1 does the same)")
    args = parser.parse_args()
    if args.database_url:
        url = args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        out = measure(url, args.runs)
        show(out, args.runs, "an already seeded database", None)
        return
    scale = f"{args.members:,} members, {args.merchants:,} merchants, {args.payments:,} payments, {args.months} months"
    with scratch_database(SERVER, keep=args.keep) as url:
        started = time.perf_counter()
        seed_scale.seed(url, members=args.members, merchants=args.merchants, payments=args.payments,
                        months=args.months, seed=args.seed)
        seed_s = time.perf_counter() - started
        out = measure(url, args.runs)
    show(out, args.runs, scale, seed_s)
    if args.keep:
        print(f"kept: {url}")


if __name__ == "__main__":
    main()
