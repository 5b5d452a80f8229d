"""A bank statement of 1,000,000 lines reconciled against 1,000,000 payouts and 20,000 fundings on PostgreSQL:
the time to import and match it, and the peak memory.

Made first (timed apart, not part of the figure): 1,000 merchants, 1,000,000 settlements and their
1,000,000 paid bank payouts over 28 days (10,000 of them carried by 1,000 bank transfer files of ten) and
20,000 approved fundings, all inserted straight in SQL; then the statement, written to a CSV file of
1,000,000 lines: one line per bank file, one per payout (with a few missing, a few paid in two parts, a
few with the wrong amount, a few a day late), one per funding (by its id, by the bank reference it
was entered with, or by nothing: matched on amount and date), and unknown lines to make up the million.
Then the reconciliation as finance runs it: the file imported through the service (parsed, COPY into a
staging table, matched set-based, its lines and match groups written) and checked against the counts the
statement was built to give. Target: import + match in at most 30 s.

Baseline, measured in the same run on the same database: COPY of the same file into a plain table of text
columns with no index - the floor cost of getting a million lines into PostgreSQL at all.
Run: DATABASE_URL=postgresql://... .venv/bin/python bench/reconcile.py [--quick]  (BENCH_LINES to change the size;
--quick or BENCH_QUICK=1: 20,000 lines)
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import shutil
import tempfile
import time

from _support import PeakRss, knob, report, rss_mib, scratch_database, time_parts
from sqlalchemy import text

SERVER = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
LINES = knob("BENCH_LINES", 1_000_000, 20_000)
PAYOUTS = LINES
FUNDINGS = max(LINES // 50, 10)
MERCHANTS = 1_000
FILES, PER_FILE = max(LINES // 1000, 1), 10
FIRST_DAY = dt.date(2026, 10, 1)
DAYS = 28
WINDOW = 3


def payout_amount(g: int) -> int:
    return 1_000 + (g * 7_919) % 500_000


def payout_day(g: int) -> dt.date:
    return FIRST_DAY + dt.timedelta(days=g % DAYS)


def funding_amount(g: int) -> int:
    return 100_000 + (g * 104_729) % 5_000_000


def seed(session) -> None:
    """Merchants, settlements, payouts, bank files and fundings, straight in SQL."""
    session.execute(text("""
        INSERT INTO merchants (public_id, name, uscc, legal_representative, contact_phone_enc, contact_phone_masked,
                               category, region, address, status, settlement_method, bank_name, bank_account_name,
                               bank_account_enc, bank_account_masked, payable_account, created_at, status_changed_at)
        SELECT 'mch_bench' || lpad(g::text, 11, '0'), '商户' || g, 'BENCH' || lpad(g::text, 13, '0'), '王', 'x',
               '139****0000', 'dining', '640104', '银川', 'active', 'bank', '宁夏银行', '商户' || g, 'x',
               '****0000', 'merchant:mch_bench' || lpad(g::text, 11, '0') || ':' || 'payable', now(), now()
        FROM generate_series(1, :n) AS g"""), {"n": MERCHANTS})
    session.execute(text("""
        INSERT INTO settlements (public_id, merchant_id, business_date, currency, payments_count, amount, discount,
                                 charged, union_subsidy, refunds_count, refunded, union_refunded, fee, carried_in, net,
                                 status, payout_due_on, created_at)
        SELECT 'stl_bench' || lpad(g::text, 11, '0'), m.id, DATE '2020-01-01' + (g / :m), 'CNY', 1,
               1000 + (g::bigint * 7919) % 500000, 0, 1000 + (g::bigint * 7919) % 500000, 0, 0, 0, 0, 0, 0,
               1000 + (g::bigint * 7919) % 500000, 'settled', DATE '2026-10-01', now()
        FROM generate_series(1, :n) AS g
        JOIN merchants m ON m.public_id = 'mch_bench' || lpad((1 + g % :m)::text, 11, '0')"""),
                    {"n": PAYOUTS, "m": MERCHANTS})
    session.execute(text("""
        INSERT INTO payout_bank_files (public_id, payouts_count, total, currency, created_at)
        SELECT 'pbf_bench' || lpad(g::text, 11, '0'), :per, 0, 'CNY', now() FROM generate_series(1, :files) AS g"""),
                    {"files": FILES, "per": PER_FILE})
    session.execute(text("""
        INSERT INTO payouts (public_id, merchant_id, settlement_id, amount, currency, method, status, due_on,
                             requires_approval, submitted_at, paid_at, attempts, bank_file_id, created_at)
        SELECT 'po_bench' || lpad(s.g::text, 12, '0'), s.merchant_id, s.id, s.net, 'CNY', 'bank', 'paid',
               DATE '2026-10-01' + (s.g % :days), false,
               (DATE '2026-10-01' + (s.g % :days))::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '10 hours',
               (DATE '2026-10-01' + (s.g % :days))::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '10 hours',
               1, CASE WHEN s.g <= :in_files THEN (SELECT b.id FROM payout_bank_files b
                                                   WHERE b.public_id = 'pbf_bench' || lpad(((s.g - 1) / :per + 1)::text,
                                                                                           11, '0')) END,
               now()
        FROM (SELECT id, merchant_id, net, substr(public_id, 10)::int AS g FROM settlements) s"""),
                    {"days": DAYS, "in_files": FILES * PER_FILE, "per": PER_FILE})
    session.execute(text("""
        INSERT INTO program_fundings (public_id, program_id, amount, currency, reference, note, status, decided_at,
                                      created_at)
        SELECT 'fnd_bench' || lpad(g::text, 11, '0'), p.id, 100000 + (g::bigint * 104729) % 5000000, 'CNY',
               'BANKREF' || g, '', 'approved',
               (DATE '2026-10-01' + (g % :days))::timestamp AT TIME ZONE 'Asia/Shanghai' + interval '9 hours', now()
        FROM generate_series(1, :n) AS g, aid_programs p"""), {"n": FUNDINGS, "days": DAYS})
    session.execute(text("ANALYZE"))
    session.commit()


def write_statement(path: str) -> dict[str, int]:
    """Write the bank statement CSV of exactly LINES lines; return the counts matching must find."""
    expect = {"matched": 0, "mismatched": 0, "unmatched_external": 0, "unmatched_internal": 0, "lines": LINES}
    extra = max(LINES // 1000, 1)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        write = fh.write
        write("date,reference,amount,currency,description\n")
        for k in range(1, FILES + 1):  # a line per bank file; every 200th file short by one fen
            members = range((k - 1) * PER_FILE + 1, k * PER_FILE + 1)
            total = sum(payout_amount(g) for g in members) - (1 if k % 200 == 0 else 0)
            write(f"{payout_day(members[0]).isoformat()},pbf_bench{k:011d},{total},CNY,代发文件\n")
            expect["mismatched" if k % 200 == 0 else "matched"] += 1
        fundings = []
        for g in range(1, FUNDINGS + 1):  # every 200th missing; by id, by bank reference, or by nothing
            if g % 200 == 0:
                expect["unmatched_internal"] += 1
                continue
            reference = f"fnd_bench{g:011d}" if g % 3 == 0 else f"BANKREF{g}" if g % 3 == 1 else ""
            day = FIRST_DAY + dt.timedelta(days=g % DAYS + (1 if reference == "" else 0))
            fundings.append(f"{day.isoformat()},{reference},{-funding_amount(g)},CNY,拨款到账\n")
            expect["matched"] += 1
        left = LINES - FILES - len(fundings) - extra
        g = FILES * PER_FILE
        while left > 0:
            g += 1
            if g % 97 == 0:  # missing from the statement
                continue
            amount, day = payout_amount(g), payout_day(g)
            if g % 89 == 0:  # a day late, still found by its reference
                day += dt.timedelta(days=1)
            if g % 101 == 0 and left >= 2:  # paid in two parts
                write(f"{day.isoformat()},po_bench{g:012d},{amount // 2},CNY,结算款1/2\n")
                write(f"{day.isoformat()},po_bench{g:012d},{amount - amount // 2},CNY,结算款2/2\n")
                expect["matched"] += 2
                left -= 2
                continue
            wrong = g % 211 == 0
            write(f"{day.isoformat()},po_bench{g:012d},{amount + 100 if wrong else amount},CNY,结算款\n")
            expect["mismatched" if wrong else "matched"] += 1
            left -= 1
        # Every payout not on the statement (the missing ones, and those after the last line) is ours alone.
        expect["unmatched_internal"] += g // 97 - (FILES * PER_FILE) // 97
        expect["unmatched_internal"] += PAYOUTS - g
        for line in fundings:
            write(line)
        for n in range(1, extra + 1):  # unknown to us: bank charges
            write(f"{(FIRST_DAY + dt.timedelta(days=n % DAYS)).isoformat()},BANKFEE{n},{13 + n % 50},CNY,手续费\n")
            expect["unmatched_external"] += 1
    return expect


def main() -> None:
    from core import create_app
    from core.auth import Actor, create_user
    from core.db import db
    from core.models import Role
    from members import service as members
    from payments.disbursement import service as disbursement
    from payments.disbursement.models import ProgramKind, PursePolicy
    from payments.reconciliation import matching, service
    from payments.reconciliation.models import Source

    with scratch_database(SERVER) as url:
        app = create_app({"DATABASE_URL": url, "REDIS_URL": None, "INSTANCE_PATH": tempfile.mkdtemp(),
                          "SECRET_KEY": "bench", "DATA_KEY": "bench-data-key", "JOBS_MODE": "sync"})
        with app.app_context():
            session = db.session
            admin = Actor.of(create_user(session, username="bench-admin", password="bench-password",
                                         role=Role.UNION_ADMIN))
            maker = Actor.of(create_user(session, username="bench-maker", password="bench-password",
                                         role=Role.FINANCE_MAKER))
            session.commit()
            union = members.create_union(session, admin, name="基准总工会", parent_id=None, region="640000")
            disbursement.create_program(session, maker, name="送温暖", kind=ProgramKind.HARDSHIP_AID,
                                        purse=PursePolicy.GENERAL, union_id=union.public_id)
            started = time.perf_counter()
            seed(session)
            seed_s = time.perf_counter() - started
            folder = tempfile.mkdtemp()
            path = os.path.join(folder, "statement.csv")
            started = time.perf_counter()
            expect = write_statement(path)
            write_s = time.perf_counter() - started
            size_mib = os.path.getsize(path) / 2**20

            session.execute(text("CREATE TABLE copy_baseline (date text, reference text, amount text, currency text, "
                                 "description text)"))
            session.commit()
            started = time.perf_counter()
            with open(path, "rb") as fh:
                raw = session.connection().connection.cursor()
                with raw.copy("COPY copy_baseline FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                    while chunk := fh.read(1 << 20):
                        copy.write(chunk)
            session.commit()
            baseline_s = time.perf_counter() - started
            session.expunge_all()

            phases = time_parts(matching, ("stage", "match"))
            rss_before = rss_mib()
            with PeakRss() as memory, open(path, "rb") as fh:
                started = time.perf_counter()
                rec, created = service.import_file(session, maker, source=Source.BANK, fileobj=fh,
                                                   filename="statement.csv", window_days=WINDOW,
                                                   limits=service.Limits(max_lines=LINES, max_bytes=1 << 30))
                import_s = time.perf_counter() - started
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            got = {"matched": rec.matched, "mismatched": rec.mismatched, "unmatched_external": rec.unmatched_external,
                   "unmatched_internal": rec.unmatched_internal, "lines": rec.lines_count}
            assert created and got == expect, (got, expect)
            started = time.perf_counter()
            with open(path, "rb") as fh:
                again, created_again = service.import_file(session, maker, source=Source.BANK, fileobj=fh,
                                                           filename="statement.csv", window_days=WINDOW,
                                                           limits=service.Limits(max_lines=LINES, max_bytes=1 << 30))
            reimport_s = time.perf_counter() - started
            assert not created_again and again.id == rec.id
            started = time.perf_counter()
            page = service.list_lines(session, rec, state="mismatched", limit=50, cursor=None)
            page_ms = (time.perf_counter() - started) * 1000
            assert len(page.items) == 50 and all(line.items for line in page.items)
        db.engine.dispose()
    shutil.rmtree(folder)

    print(f"bank statement of {LINES:,} lines ({size_mib:.0f} MiB) against {PAYOUTS:,} payouts and {FUNDINGS:,} "
          f"fundings on PostgreSQL (date window {WINDOW} days)")
    print(f"{'figure':<46}{'value':>12}{'baseline':>12}{'ratio':>8}  target")
    print(f"{'import + match, s':<46}{import_s:>12.1f}{baseline_s:>12.1f}{import_s / baseline_s:>8.1f}  <= 30")
    print(f"{'lines /s':<46}{LINES / import_s:>12,.0f}{LINES / baseline_s:>12,.0f}"
          f"{baseline_s / import_s:>8.3f}  -")
    print(f"{'  of which: parse + COPY into the stage, s':<46}{phases['stage']:>12.1f}")
    print(f"{'  of which: match + write lines and groups, s':<46}{phases['match']:>12.1f}")
    print(f"{'peak RSS of the process (getrusage), MB':<46}{peak_mib * 1.048576:>12.0f}")
    print(f"{'  peak RSS during the import (sampled), MB':<46}{memory.peak * 1.048576:>12.0f}")
    print(f"{'  RSS before the import, MB':<46}{rss_before * 1.048576:>12.0f}")
    print(f"{'re-import of the same file (answered by SHA-256), s':<46}{reimport_s:>12.2f}")
    print(f"{'a page of 50 mismatched lines with items, ms':<46}{page_ms:>12.1f}")
    for name in ("matched", "mismatched", "unmatched_internal", "unmatched_external"):
        print(f"{'  ' + name:<46}{got[name]:>12,}")
    print(f"{'setup: payouts, fundings, files seeded in SQL, s':<46}{seed_s:>12.1f}")
    print(f"{'setup: statement written, s':<46}{write_s:>12.1f}")
    print("(baseline: COPY of the same file into a plain table of text columns, same database, same run)")
    report(f"bank statement of {LINES:,} lines: import + match", import_s, "s", "<= 30", baseline=baseline_s,
           baseline_label="COPY")
    report("bank statement import + match", LINES / import_s, "lines/s", baseline=LINES / baseline_s,
           baseline_label="COPY")
    report("bank statement import: peak RSS (sampled)", memory.peak * 1.048576, "MB")


if __name__ == "__main__":
    main()
