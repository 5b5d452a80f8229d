"""Member payment codes on Redis and PostgreSQL: issue and redeem rates, and bulk card issuance.

Baselines, measured in the same run: for codes, the bare Redis commands one code costs (issue:
INCR + SET NX EX; redeem: GETDEL + SET) from the same client library, with no database and no
checks - the ceiling for a store-backed code; for bulk issuance, a plain multi-row INSERT of the
same number of rows into a table without encryption, ledger accounts or audit.

Run: DATABASE_URL=postgresql://... REDIS_URL=redis://... .venv/bin/python bench/codes.py [--quick]
Knobs (--quick or BENCH_QUICK=1 for the small sizes after the slash): BENCH_CODES (codes per measurement,
20000 / 2000), BENCH_MEMBERS (cards issued in bulk, 20000 / 2000), BENCH_THREADS (4).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _support import insert_members, knob, report, scratch_database
from sqlalchemy import text
from sqlalchemy.orm import Session

SERVER = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CODES = knob("BENCH_CODES", 20_000, 2_000)
MEMBERS = knob("BENCH_MEMBERS", 20_000, 2_000)
THREADS = knob("BENCH_THREADS", 4, 4)


def timed(fn, n: int) -> float:
    started = time.perf_counter()
    fn()
    return n / (time.perf_counter() - started)


def in_threads(work, threads: int) -> float:
    """Run work(thread_index) in threads at once; return total items per second (work returns a count)."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def run(i):
        barrier.wait()
        counts[i] = work(i)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    import redis

    from cards import service as cards
    from cards.models import Card, CardStatus
    from cards.numbers import looks_like_payment_code
    from core import create_app
    from core.auth import Actor, create_user
    from core.db import db
    from core.models import Role
    from members import service as members
    from sqlalchemy import select, update

    tmp = Path(tempfile.mkdtemp())
    prefix = f"ucbench:{uuid.uuid4().hex[:8]}:"
    raw_redis = redis.Redis.from_url(REDIS, decode_responses=True)
    with scratch_database(SERVER) as url:
        app = create_app({"DATABASE_URL": url, "REDIS_URL": REDIS, "REDIS_PREFIX": prefix, "INSTANCE_PATH": str(tmp),
                          "SECRET_KEY": "bench", "DATA_KEY": "bench-data-key", "JOBS_MODE": "sync",
                          "PAYMENT_CODES_PER_MINUTE": 10**9})
        with app.app_context():
            from cards.api import payment_codes

            session = db.session
            cipher = app.extensions["cipher"]
            user = create_user(session, username="bench-admin", password="bench-password", role=Role.UNION_ADMIN)
            session.commit()
            actor = Actor.of(user)
            union = members.create_union(session, actor, name="基准工会", parent_id=None, region="640000")
            insert_members(session, cipher, union, MEMBERS)

            # Bulk issuance against a plain INSERT of as many rows.
            session.execute(text("CREATE TABLE insert_baseline (number text, member_id bigint, created_at timestamptz)"))
            session.commit()

            def plain_insert():
                for start in range(0, MEMBERS, 1000):
                    session.execute(text("INSERT INTO insert_baseline VALUES (:n, :m, now())"),
                                    [{"n": f"{i:019d}", "m": i} for i in range(start, min(MEMBERS, start + 1000))])
                    session.commit()

            insert_rate = timed(plain_insert, MEMBERS)
            run = cards.start_bulk_issuance(session, actor, union.public_id)
            started = time.perf_counter()
            run = cards.run_bulk_issuance(session, cipher, run.public_id, prefix="880064")
            issue_cards_rate = run.issued / (time.perf_counter() - started)
            assert run.issued == MEMBERS, run.issued
            session.execute(update(Card).values(status=CardStatus.ACTIVE))
            session.commit()
            holders = session.execute(select(Card.public_id, Card.member_id)).all()
            users = {}
            from core.models import User
            from core.ids import new_public_id

            # Member accounts for the card holders the codes are issued to (argon2 not needed for this).
            for public_id, member_id in holders[:1000]:
                u = User(public_id=new_public_id("usr"), username=f"m{member_id}", password_hash="x",
                         role=Role.MEMBER, member_id=member_id, display_name="m")
                session.add(u)
                users[public_id] = u
            session.commit()
            owners = [(card_id, Actor.of(u)) for card_id, u in users.items()]
            codes = payment_codes()

            issued: list[str] = []

            def issue_all():
                for n in range(CODES):
                    card_id, who = owners[n % len(owners)]
                    issued.append(codes.issue(session, who, card_id).code)

            issue_rate = timed(issue_all, CODES)

            def redeem_all():
                for n, code in enumerate(issued):
                    codes.redeem(session, code, consumer=f"till:{n}")

            redeem_rate = timed(redeem_all, CODES)
            session.rollback()

            def threaded(i):
                done = 0
                with Session(db.engine) as own:
                    mine = owners[i::THREADS]
                    got = []
                    for n in range(CODES // THREADS):
                        card_id, who = mine[n % len(mine)]
                        got.append(codes.issue(own, who, card_id).code)
                    for n, code in enumerate(got):
                        codes.redeem(own, code, consumer=f"till:{i}:{n}")
                        done += 1
                return done

            threaded_rate = in_threads(threaded, THREADS)

            def verify_shape():
                for code in issued:
                    if looks_like_payment_code(code):
                        codes._slot(code)

            cpu_rate = timed(verify_shape, len(issued))

            def redis_issue_baseline():
                for n in range(CODES):
                    raw_redis.incr(f"{prefix}base:rate:{n % 1000}")
                    raw_redis.set(f"{prefix}base:{n}", "x", ex=60, nx=True)

            def redis_redeem_baseline():
                for n in range(CODES):
                    raw_redis.getdel(f"{prefix}base:{n}")
                    raw_redis.set(f"{prefix}base:used:{n}", "x", ex=600)

            base_issue = timed(redis_issue_baseline, CODES)
            base_redeem = timed(redis_redeem_baseline, CODES)
        db.engine.dispose()
    for key in raw_redis.scan_iter(f"{prefix}*", count=10_000):
        raw_redis.delete(key)

    print(f"payment codes and card issuance on PostgreSQL + Redis ({CODES:,} codes, {MEMBERS:,} cards)")
    print(f"{'figure':<46}{'value':>12}{'baseline':>12}{'ratio':>8}  target")
    rows = [
        ("code issue /s (1 client: DB owner check + Redis)", issue_rate, base_issue, "-"),
        ("code redeem /s (1 client: Redis take + DB card)", redeem_rate, base_redeem, "fast: >= 1,000/s"),
        (f"issue+redeem pairs /s ({THREADS} clients; base: 1)", threaded_rate,
         1 / (1 / issue_rate + 1 / redeem_rate), "scales with clients"),
        ("code shape + keyed hash /s (CPU only)", cpu_rate, None, "-"),
        ("bulk card issuance, cards/s", issue_cards_rate, insert_rate, "500k cards in < 5 min"),
    ]
    for label, value, baseline, target in rows:
        ratio = f"{value / baseline:>8.3f}" if baseline else f"{'':>8}"
        base = f"{baseline:>12,.0f}" if baseline else f"{'':>12}"
        print(f"{label:<46}{value:>12,.0f}{base}{ratio}  {target}")
    print("(code baselines: the bare Redis commands a code costs, same client, same run; the pairs baseline is one "
          "client issuing and redeeming; issuance baseline: plain multi-row INSERT of as many rows, same database)")
    report("payment code issue (1 client: DB owner check + Redis)", issue_rate, "codes/s", baseline=base_issue,
           baseline_label="bare Redis commands")
    report("payment code redeem (1 client: Redis take + DB card)", redeem_rate, "codes/s", ">= 1,000/s",
           baseline=base_redeem, baseline_label="bare Redis commands")
    report(f"payment code issue+redeem pairs ({THREADS} clients)", threaded_rate, "pairs/s",
           "ratio > 1 (scales with clients)", baseline=1 / (1 / issue_rate + 1 / redeem_rate),
           baseline_label="1 client")
    report("bulk card issuance", issue_cards_rate, "cards/s", "500k cards in < 5 min",
           met=issue_cards_rate * 300 >= 500_000, baseline=insert_rate, baseline_label="plain INSERT")


if __name__ == "__main__":
    main()
