"""The ledger on PostgreSQL: transfers per second between many accounts and through hot accounts.

Baseline, measured in the same run on the same database: pgbench's TPC-B-like transaction
(three updates, a select and an insert per transaction), a ceiling for small write transactions
from a client that costs almost nothing. Also: reads on an account with a million entries, and
verify() over the whole scratch database.

Run: DATABASE_URL=postgresql://... .venv/bin/python bench/ledger.py [--quick]
Knobs (--quick or BENCH_QUICK=1 for the small sizes after the slash): BENCH_SECONDS (per run, 8 / 2),
BENCH_THREADS (4), BENCH_BATCH (transfers per commit, 50), BENCH_CARDS (2000 / 200), BENCH_ENTRIES (entries on the
big account, 1000000 / 50000; 0 skips that part).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import sys
import threading
import time
import uuid

from _support import knob, pgbench, report
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

SERVER = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SECONDS = knob("BENCH_SECONDS", 8, 2, float)
THREADS = knob("BENCH_THREADS", 4, 4)
BATCH = knob("BENCH_BATCH", 50, 50)
CARDS = knob("BENCH_CARDS", 2000, 200)
ENTRIES = knob("BENCH_ENTRIES", 1_000_000, 50_000)
PGBENCH_SECONDS = knob("BENCH_PGBENCH_SECONDS", 10, 3)
PGBENCH_CLIENTS = 2
PGBENCH_SCALE = 10
SLICES = 16


def scratch_database():
    """Create an empty database for this run; return its URL and a function that drops it."""
    from core.config import normalize_database_url

    server = make_url(normalize_database_url(SERVER))
    if not server.drivername.startswith("postgresql"):
        sys.exit("bench/ledger.py needs PostgreSQL: set DATABASE_URL")
    name = f"ledger_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.set(database=name), drop


class Chart:
    """The accounts of the run: funded cards, a bank, a sliced budget and two hot accounts."""

    def __init__(self, engine):
        from payments import ledger

        self.cards = [f"card:{n}:general" for n in range(CARDS)]
        with Session(engine) as s:
            ledger.open_account(s, "union:bank", normal_side="debit", allow_negative=True)
            ledger.open_account(s, "program:1:budget", normal_side="credit", mode="sliced", slices=SLICES)
            ledger.open_account(s, "program:2:budget", normal_side="credit")
            ledger.open_account(s, "merchant:1:payable", normal_side="credit", mode="append_only",
                                allow_negative=True)
            for n, code in enumerate(self.cards):
                ledger.open_account(s, code, normal_side="credit", owner_kind="card", owner_id=n)
                if n % 500 == 499:
                    s.commit()
            s.commit()
            funding = [(code, 10**12) for code in self.cards]
            funding += [("program:1:budget", 10**13)] * SLICES + [("program:2:budget", 10**13)]
            for start in range(0, len(funding), 500):
                answers = ledger.post_many(s, [
                    ledger.Transfer("funding", f"funding:{start + i}", [
                        ledger.debit("union:bank", amount), ledger.credit(code, amount)])
                    for i, (code, amount) in enumerate(funding[start:start + 500])
                ])
                assert all(isinstance(a, ledger.Transaction) for a in answers), answers[:3]
                s.commit()


def transfers(kind: str, chart: Chart, rnd: random.Random, amount: int):
    """Return the legs of one transfer of the given shape."""
    from payments.ledger import credit, debit

    a, b = rnd.sample(chart.cards, 2)
    if kind == "distinct":
        return [debit(a, amount), credit(b, amount)]
    if kind == "hot payable":
        return [debit(a, amount), credit("merchant:1:payable", amount)]
    if kind == "hot budget":
        return [debit("program:1:budget", amount), credit(a, amount)]
    if kind == "unsliced budget":
        return [debit("program:2:budget", amount), credit(a, amount)]
    raise ValueError(kind)


def run(engine, chart: Chart, kind: str, batch: int, seconds: float) -> float:
    """Post transfers from THREADS threads for `seconds`; return transfers per second."""
    from payments import ledger

    counts = [0] * THREADS
    failures: list[BaseException] = []
    start = threading.Barrier(THREADS + 1)
    stop_at = [0.0]

    def worker(n: int) -> None:
        rnd = random.Random(n)
        run_id = uuid.uuid4().hex[:8]
        done = 0
        with Session(engine) as s:
            start.wait()
            try:
                while time.perf_counter() < stop_at[0]:
                    if batch == 1:
                        ledger.post(s, kind="transfer", idempotency_key=f"{run_id}:{n}:{done}",
                                    entries=transfers(kind, chart, rnd, 1 + done % 97))
                        done_now = 1
                    else:
                        answers = ledger.post_many(s, [
                            ledger.Transfer("transfer", f"{run_id}:{n}:{done + i}",
                                            transfers(kind, chart, rnd, 1 + (done + i) % 97))
                            for i in range(batch)
                        ])
                        bad = [a for a in answers if not isinstance(a, ledger.Transaction)]
                        if bad:
                            raise bad[0]
                        done_now = batch
                    s.commit()
                    done += done_now
            except BaseException as exc:  # noqa: BLE001 - reported after the run
                failures.append(exc)
        counts[n] = done

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    return sum(counts) / elapsed


def load_big_account(engine, entries: int) -> tuple[str, dt.datetime, dt.datetime]:
    """Bulk-load `entries` posted entries on one account, spread over a year, as a fixture."""
    # The loader writes the rows itself (far faster than posting a million transactions) with
    # the per-row triggers switched off for this session only; verify() afterwards checks it all.
    from payments import ledger

    code = "card:big:general"
    with Session(engine) as s:
        account_id = ledger.open_account(s, code, normal_side="credit").id
        source_id = ledger.open_account(s, "union:big-bank", normal_side="debit", allow_negative=True).id
        s.commit()
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=365)
    # One connection throughout, so the switched-off triggers never leak into the pool.
    with engine.connect() as conn:
        conn.execute(text("SET session_replication_role = replica"))
        step = 200_000
        for low in range(1, entries + 1, step):
            conn.execute(text("""
                WITH t AS (
                    INSERT INTO ledger_transactions (public_id, kind, status, is_hold, idempotency_key,
                        request_hash, metadata, created_at)
                    SELECT 'txn_big' || g, 'aid', 'posted', false, 'big:' || g, 'bench', '{}',
                           :start + (g * (:span / :n)) * interval '1 second'
                    FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint)) AS g
                    RETURNING id, created_at, idempotency_key
                )
                INSERT INTO ledger_entries (transaction_id, account_id, slice, amount, currency, is_hold, created_at)
                SELECT t.id, x.account_id, 0, x.sign * (1 + substr(t.idempotency_key, 5)::bigint % 1000), 'CNY',
                       false, t.created_at
                FROM t CROSS JOIN (VALUES (:account, -1), (:source, 1)) AS x(account_id, sign)
            """), {"start": start, "span": (end - start).total_seconds(), "n": entries, "low": low,
                   "high": min(entries, low + step - 1), "account": account_id, "source": source_id})
            conn.commit()
        conn.execute(text("SET session_replication_role = origin"))
        total = sum(1 + g % 1000 for g in range(1, entries + 1))
        conn.execute(text("UPDATE ledger_balances SET credits_posted = :t WHERE account_id = :a"),
                     {"t": total, "a": account_id})
        conn.execute(text("UPDATE ledger_balances SET debits_posted = :t WHERE account_id = :a"),
                     {"t": total, "a": source_id})
        conn.commit()
    vacuum(engine)
    # The snapshot job, run as it would have run through the year: at the end of every week.
    with Session(engine) as s:
        moment = start
        while moment < end:
            moment += dt.timedelta(days=7)
            ledger.take_snapshots(s, as_of=min(moment, end), min_entries=1_000)
            s.commit()
    return code, start, end


def vacuum(engine) -> None:
    """Vacuum and analyse, as autovacuum would have by now on a database in service."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))


def timed(fn, repeat: int) -> float:
    """Return the mean milliseconds of `repeat` calls."""
    began = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - began) / repeat * 1000


def big_account_reads(engine, code, start, end) -> dict[str, float]:
    from payments import ledger

    rnd = random.Random(7)
    span = (end - start).total_seconds()
    with Session(engine) as s:
        page = ledger.statement(s, code, limit=50, since=start + dt.timedelta(days=200))
        cursor = page.next_cursor
        return {
            "balance": timed(lambda: ledger.balance(s, code), 50),
            "balance_as_of": timed(
                lambda: ledger.balance_as_of(s, code, start + dt.timedelta(seconds=rnd.uniform(0, span))), 50),
            "statement": timed(lambda: ledger.statement(s, code, limit=50, newest_first=True), 20),
            "statement_deep": timed(lambda: ledger.statement(s, code, limit=50, cursor=cursor), 20),
        }


def main() -> int:
    from core import migrate
    from core.db import make_engine
    from payments import ledger

    url, drop = scratch_database()
    rendered = url.render_as_string(hide_password=False)
    try:
        migrate.upgrade(rendered)
        engine = make_engine(rendered, pool_size=THREADS + 2, max_overflow=0)
        print(f"setting up {CARDS} funded card accounts ...", flush=True)
        chart = Chart(engine)
        vacuum(engine)

        figures = {}
        plan = [
            ("distinct", BATCH), ("hot payable", BATCH), ("hot budget", BATCH),
            ("distinct", 1), ("hot payable", 1), ("hot budget", 1), ("unsliced budget", 1),
        ]
        for kind, batch in plan:
            run(engine, chart, kind, batch, 1.0)  # warm up: caches, prepared statements
            figures[(kind, batch)] = run(engine, chart, kind, batch, SECONDS)
            print(f"  {kind}, {batch} per commit: {figures[(kind, batch)]:,.0f} transfers/s", flush=True)

        print("running pgbench ...", flush=True)
        tps = pgbench(rendered, scale=PGBENCH_SCALE, clients=PGBENCH_CLIENTS, threads=PGBENCH_CLIENTS,
                      seconds=PGBENCH_SECONDS)

        reads = {}
        if ENTRIES:
            print(f"loading {ENTRIES:,} entries on one account ...", flush=True)
            began = time.perf_counter()
            code, start, end = load_big_account(engine, ENTRIES)
            print(f"  loaded and snapshotted in {time.perf_counter() - began:.0f} s", flush=True)
            reads = big_account_reads(engine, code, start, end)

        with Session(engine) as s:
            ledger.fold_deltas(s)
            s.commit()
            began = time.perf_counter()
            verified = ledger.verify(s)
            verify_s = time.perf_counter() - began
            entries = verified.checked["entries"]
        engine.dispose()
    finally:
        drop()

    distinct, distinct_one = figures[("distinct", BATCH)], figures[("distinct", 1)]
    rows = [
        (f"transfers/s, distinct accounts ({BATCH} per commit, {THREADS} threads)", distinct,
         f"{tps:,.0f} pgbench tps", distinct / tps, ">= 2,000/s"),
        ("transfers/s, every one into one hot payable (append-only)", figures[("hot payable", BATCH)],
         "distinct", figures[("hot payable", BATCH)] / distinct, ">= 0.8"),
        (f"transfers/s, every one from one hot budget ({SLICES} slices)", figures[("hot budget", BATCH)],
         "distinct", figures[("hot budget", BATCH)] / distinct, ">= 0.8"),
        (f"transfers/s, distinct accounts (1 per commit, {THREADS} threads)", distinct_one,
         f"{tps:,.0f} pgbench tps", distinct_one / tps, "-"),
        ("transfers/s, hot payable (1 per commit)", figures[("hot payable", 1)],
         "distinct, 1 per commit", figures[("hot payable", 1)] / distinct_one, ">= 0.8"),
        ("transfers/s, hot budget (1 per commit)", figures[("hot budget", 1)],
         "distinct, 1 per commit", figures[("hot budget", 1)] / distinct_one, ">= 0.8"),
        ("transfers/s, one unsliced budget (1 per commit; contrast)", figures[("unsliced budget", 1)],
         "distinct, 1 per commit", figures[("unsliced budget", 1)] / distinct_one, "-"),
        (f"pgbench TPC-B tps (scale {PGBENCH_SCALE}, {PGBENCH_CLIENTS} clients, {PGBENCH_SECONDS} s)", tps,
         "", None, ""),
    ]
    if reads:
        rows += [
            (f"ms, balance now ({ENTRIES:,}-entry account)", reads["balance"], "", None, "< 10 ms"),
            ("ms, balance as of a random moment (weekly snapshots)", reads["balance_as_of"], "", None, "< 50 ms"),
            ("ms, statement page of 50, newest first", reads["statement"], "", None, "< 50 ms"),
            ("ms, statement page of 50, deep in the history", reads["statement_deep"], "", None, "< 50 ms"),
        ]
    rows.append((f"s, verify() over {entries:,} entries: {'ok' if verified.ok else 'PROBLEMS'}", verify_s, "",
                 None, "ok"))

    print()
    print(f"{'figure':<68} {'value':>10}  {'baseline':<24} {'ratio':>6}  target")
    for figure, value, baseline, ratio, target in rows:
        shown = f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
        print(f"{figure:<68} {shown:>10}  {baseline:<24} {'' if ratio is None else f'{ratio:.2f}':>6}  {target}")

    for kind, batch, label in (("distinct", BATCH, f"distinct accounts, {BATCH} per commit"),
                               ("hot payable", BATCH, f"into one append-only payable, {BATCH} per commit"),
                               ("hot budget", BATCH, f"from one {SLICES}-slice budget, {BATCH} per commit"),
                               ("distinct", 1, "distinct accounts, 1 per commit"),
                               ("hot payable", 1, "into one append-only payable, 1 per commit"),
                               ("hot budget", 1, f"from one {SLICES}-slice budget, 1 per commit"),
                               ("unsliced budget", 1, "from one unsliced budget, 1 per commit (contrast)")):
        if kind == "distinct":
            target, own = (">= 2,000/s" if batch == BATCH else "-"), {}
        else:
            target = "-" if kind == "unsliced budget" else "ratio >= 0.8"
            own = {"baseline": figures[("distinct", batch)], "baseline_label": f"distinct, {batch} per commit"}
        report(f"ledger transfers, {label} ({THREADS} threads)", figures[(kind, batch)], "transfers/s", target,
               **own)
    report(f"pgbench TPC-B-like on this database (-s {PGBENCH_SCALE} -c {PGBENCH_CLIENTS} -T {PGBENCH_SECONDS})",
           tps, "tps")
    for key, label, target in (("balance", "balance now", "< 10 ms"),
                               ("balance_as_of", "balance as of a random moment", "< 50 ms"),
                               ("statement", "statement page of 50, newest first", "< 50 ms"),
                               ("statement_deep", "statement page of 50, deep in the history", "< 50 ms")):
        if key in reads:
            report(f"ledger {label} ({ENTRIES:,}-entry account)", reads[key], "ms", target)
    report(f"ledger verify() over {entries:,} entries", verify_s, "s", "ok", met=verified.ok)
    if not verified.ok:
        print(verified.problems[:10])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
