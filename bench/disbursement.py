"""A disbursement batch paying 500,000 members' cards on PostgreSQL: lines per second and peak memory.

Made first (and timed apart): 500,000 members inserted straight into the registry, a card each by the
bulk issuance, a funded program. Then the batch as finance runs it: a CSV of ID numbers uploaded and
checked line by line (set-based), approved (the total reserved from the budget), and run in chunks,
each a ledger transaction. Target: the whole batch (check + run) in at most 60 s, peak RSS under 300 MB.

Baseline, measured in the same run on the same database: INSERT ... SELECT of as many rows of the
ledger entries' shape into a plain table with no index - the floor cost of writing one row per line.
Run: DATABASE_URL=postgresql://... .venv/bin/python bench/disbursement.py [--quick]  (BENCH_LINES to change the
size; --quick or BENCH_QUICK=1: 20,000 lines)
"""

from __future__ import annotations

import io
import os
import tempfile
import time

from _support import PeakRss, id_number, insert_members, knob, report, rss_mib, scratch_database
from sqlalchemy import text

SERVER = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
LINES = knob("BENCH_LINES", 500_000, 20_000)
AMOUNT = 50_000  # ¥500 each


def main() -> None:
    from cards import service as cards
    from core import create_app
    from core.auth import Actor, create_user
    from core.db import db
    from core.models import Role
    from members import service as members
    from payments import ledger
    from payments.disbursement import service
    from payments.disbursement.models import ProgramKind, PursePolicy

    with scratch_database(SERVER) as url:
        app = create_app({"DATABASE_URL": url, "REDIS_URL": None, "INSTANCE_PATH": tempfile.mkdtemp(),
                          "SECRET_KEY": "bench", "DATA_KEY": "bench-data-key", "JOBS_MODE": "sync"})
        with app.app_context():
            session, cipher = db.session, app.extensions["cipher"]
            admin = Actor.of(create_user(session, username="bench-admin", password="bench-password",
                                         role=Role.UNION_ADMIN))
            maker = Actor.of(create_user(session, username="bench-maker", password="bench-password",
                                         role=Role.FINANCE_MAKER))
            approver = Actor.of(create_user(session, username="bench-approver", password="bench-password",
                                            role=Role.FINANCE_APPROVER))
            session.commit()
            union = members.create_union(session, admin, name="基准总工会", parent_id=None, region="640000")
            started = time.perf_counter()
            insert_members(session, cipher, union, LINES)
            members_s = time.perf_counter() - started
            started = time.perf_counter()
            run = cards.start_bulk_issuance(session, admin, union.public_id)
            run = cards.run_bulk_issuance(session, cipher, run.public_id, prefix="880064", chunk=5000)
            cards_s = time.perf_counter() - started
            assert run.issued == LINES, run.issued
            program = service.create_program(session, maker, name="送温暖", kind=ProgramKind.HARDSHIP_AID,
                                             purse=PursePolicy.GENERAL, union_id=union.public_id)
            funding = service.create_funding(session, maker, program.public_id, amount=LINES * AMOUNT,
                                             currency="CNY", reference="BENCH")
            service.approve_funding(session, approver, funding.public_id)
            csv_bytes = ("id_number,amount,note\n" + "".join(f"{id_number(i)},{AMOUNT},冬季送温暖\n"
                                                             for i in range(LINES))).encode()
            session.execute(text("CREATE TABLE insert_baseline (transaction_id bigint, account_id bigint, "
                                 "amount bigint, currency text, created_at timestamptz)"))
            session.commit()
            started = time.perf_counter()
            session.execute(text("INSERT INTO insert_baseline SELECT 1, g, 50000, 'CNY', now() "
                                 "FROM generate_series(1, :n) AS g"), {"n": LINES})
            session.commit()
            baseline = LINES / (time.perf_counter() - started)
            session.expunge_all()

            rss_before = rss_mib()
            with PeakRss() as memory:
                started = time.perf_counter()

                batch = service.create_batch_from_csv(session, cipher, maker, program.public_id,
                                                      io.BytesIO(csv_bytes), "bench.csv", max_lines=LINES)
                checked = time.perf_counter()
                assert batch.valid_lines == LINES, (batch.valid_lines, batch.invalid_lines)
                service.approve_batch(session, approver, batch.public_id, second_approval_above=10**15)
                approved = time.perf_counter()
                batch = service.run_batch(session, batch.public_id, chunk=app.config["DISBURSEMENT_CHUNK"])
                finished = time.perf_counter()
            assert batch.done_lines == LINES and batch.done_amount == LINES * AMOUNT, batch.done_lines
            sample = cards.live_card_of(session, session.scalar(text("SELECT id FROM members ORDER BY id DESC LIMIT 1")))
            assert ledger.balance(session, cards.general_account(sample.public_id)).posted == AMOUNT
            verify_started = time.perf_counter()
            verified = ledger.verify(session)
            verify_s = time.perf_counter() - verify_started
            assert verified.ok, verified.problems[:3]
        db.engine.dispose()

    check_s, approve_s, run_s = checked - started, approved - checked, finished - approved
    whole = finished - started
    print(f"disbursement of {LINES:,} lines of ¥{AMOUNT / 100:.0f} on PostgreSQL (chunk "
          f"{app.config['DISBURSEMENT_CHUNK']:,})")
    print(f"{'figure':<44}{'value':>12}{'baseline':>12}{'ratio':>8}  target")
    print(f"{'run: lines paid /s':<44}{LINES / run_s:>12,.0f}{baseline:>12,.0f}{LINES / run_s / baseline:>8.3f}  -")
    print(f"{'whole batch: lines /s (check+approve+run)':<44}{LINES / whole:>12,.0f}{baseline:>12,.0f}"
          f"{LINES / whole / baseline:>8.3f}  -")
    print(f"{'whole batch, s':<44}{whole:>12.1f}{'':>12}{'':>8}  <= 60")
    print(f"{'  of which: upload + line checks, s':<44}{check_s:>12.1f}")
    print(f"{'  of which: approval (reserve), s':<44}{approve_s:>12.1f}")
    print(f"{'  of which: run, s':<44}{run_s:>12.1f}")
    print(f"{'peak RSS during the batch, MB':<44}{memory.peak * 1.048576:>12.0f}{'':>12}{'':>8}  < 300")
    print(f"{'  RSS before the batch, MB':<44}{rss_before * 1.048576:>12.0f}")
    print(f"{'ledger verify afterwards, s':<44}{verify_s:>12.1f}")
    print(f"{'setup: members inserted /s':<44}{LINES / members_s:>12,.0f}")
    print(f"{'setup: cards issued in bulk /s':<44}{LINES / cards_s:>12,.0f}")
    print("(baseline: INSERT ... SELECT of as many entry-shaped rows into a plain table, same database, same run)")
    report(f"disbursement run: lines paid ({LINES:,} lines)", LINES / run_s, "lines/s", baseline=baseline,
           baseline_label="INSERT ... SELECT")
    report("disbursement whole batch (check + approve + run)", LINES / whole, "lines/s", baseline=baseline,
           baseline_label="INSERT ... SELECT")
    report(f"disbursement whole batch of {LINES:,} lines", whole, "s", "<= 60")
    report("disbursement peak RSS during the batch", memory.peak * 1.048576, "MB", "< 300")
    report("ledger verify after the batch", verify_s, "s")


if __name__ == "__main__":
    main()
