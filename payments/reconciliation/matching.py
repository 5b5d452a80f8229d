"""Matching a staged statement against payouts, fundings and top-ups, set-based in SQL.

The statement's lines sit in a temporary table (COPY on PostgreSQL). Then, each step one statement over
all lines at once:

1. references: every line is joined to the items its reference (or a platform id in a Stripe description)
   names: a payout's id, the bank file that carried several payouts, a Stripe transfer, a funding's id or
   the bank reference it was entered with, a top-up's PaymentIntent;
2. groups: lines and items linked by references form groups (connected components): a line and its payout,
   a bank-file line and every payout in the file, split lines and the payout they add up to. Nearly every
   group is one line and one item; only the few others are labelled by propagation, a handful of rounds;
3. a group is `matched` when its lines add up to what its items should show (and in one currency),
   `mismatched` otherwise;
4. lines naming nothing are paired with items nothing named, same kind, amount and currency, within the
   date window: first on the same day, then by rank in date order;
5. items of the statement's period that are still unanswered (and not matched by another reconciliation
   of the account) become `unmatched_internal` lines; lines still unanswered are `unmatched_external`.

The results are written once: lines with their state (a one-to-one group's item on its line), and the
items of the bigger groups.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from sqlalchemy import Date, bindparam, text
from sqlalchemy.orm import Session

from core.db import UTCDateTime
from core.i18n import BUSINESS_TZ
from payments.reconciliation.importers import STAGE_COLUMNS
from payments.reconciliation.models import Reconciliation, Source

log = logging.getLogger(__name__)

STAGE = "reconciliation_stage"
INSERT_CHUNK = 5000
# Groups bigger than one line and one item need this many propagation rounds at most (a bank-file line,
# the file's payouts, their own lines: three hops); the bound only guards against a surprise.
MAX_ROUNDS = 50
# Pairing by amount and date: the same day first, then these many rounds by rank.
PAIRING_ROUNDS = 3
TEMP_TABLES = ("reconciliation_stage", "rec_edges", "rec_multi", "rec_multi_lines", "rec_groups", "rec_loose_lines",
               "rec_loose_items", "rec_pairs", "rec_missing")


class _Dialect:
    """The few expressions PostgreSQL and SQLite write differently."""

    def __init__(self, session: Session):
        self.postgres = session.get_bind().dialect.name == "postgresql"

    def local_day(self, column: str) -> str:
        # Asia/Shanghai keeps one offset all year; SQLite stores UTC without a zone.
        if self.postgres:
            return f"CAST(({column} AT TIME ZONE 'Asia/Shanghai') AS date)"
        return f"date({column}, '+8 hours')"

    def days_apart(self, a: str, b: str) -> str:
        return f"abs({a} - {b})" if self.postgres else f"abs(julianday({a}) - julianday({b}))"

    def shift(self, day: str, days: str) -> str:
        return f"({day} + {days})" if self.postgres else f"date({day}, ({days}) || ' days')"

    def temp(self, name: str, columns: str) -> str:
        return (f"CREATE TEMPORARY TABLE {name} ({columns})" + (" ON COMMIT DROP" if self.postgres else ""))

    def temp_as(self, name: str, query: str) -> str:
        return (f"CREATE TEMPORARY TABLE {name}" + (" ON COMMIT DROP" if self.postgres else "") + f" AS {query}")


def drop_temp_tables(session: Session) -> None:
    """Drop what an import left in this connection's temporary schema."""
    conn = session.connection()
    for name in TEMP_TABLES:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def stage(session: Session, rows: Iterable[tuple]) -> None:
    """Load parsed lines into the temporary stage table (COPY on PostgreSQL, batched INSERTs on SQLite)."""
    sql = _Dialect(session)
    conn = session.connection()
    drop_temp_tables(session)
    conn.exec_driver_sql(sql.temp(STAGE, "line_no integer, value_date date, reference varchar(255), amount bigint, "
                                         "fee bigint, currency varchar(3), description varchar(500), "
                                         "external_id varchar(255), type varchar(40), hint varchar(40), "
                                         "wants varchar(8)"))
    if sql.postgres:
        with conn.connection.cursor() as cursor:
            with cursor.copy(f"COPY {STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        conn.exec_driver_sql(f"ANALYZE {STAGE}")
        return
    insert = f"INSERT INTO {STAGE} ({', '.join(STAGE_COLUMNS)}) VALUES ({', '.join('?' * len(STAGE_COLUMNS))})"
    chunk: list[tuple] = []
    for row in rows:
        chunk.append((row[0], row[1].isoformat(), *row[2:]))
        if len(chunk) >= INSERT_CHUNK:
            conn.exec_driver_sql(insert, chunk)
            chunk = []
    if chunk:
        conn.exec_driver_sql(insert, chunk)


def staged_summary(session: Session) -> tuple[int, int, dt.date | None, dt.date | None, int, int, int]:
    """Return the staged lines' count, last line number, first and last day, money out, in and fees."""
    row = session.execute(text(f"""
        SELECT count(*), max(line_no), min(value_date), max(value_date),
               coalesce(sum(CASE WHEN amount > 0 THEN amount ELSE 0 END), 0),
               coalesce(sum(CASE WHEN amount < 0 THEN -amount ELSE 0 END), 0),
               coalesce(sum(fee), 0)
        FROM {STAGE}""")).one()
    first, last = row[2], row[3]
    if isinstance(first, str):
        first, last = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return int(row[0]), int(row[1] or 0), first, last, int(row[4]), int(row[5]), int(row[6])


def start_of(day: dt.date) -> dt.datetime:
    """Return the UTC moment a business day (Asia/Shanghai) starts."""
    return dt.datetime.combine(day, dt.time(0), BUSINESS_TZ).astimezone(dt.timezone.utc)


def _expected(source: Source) -> dict[str, str]:
    """SQL per kind of item: what the statement should show for it, in the statement's sign. A payout sent
    through this statement's channel leaves (+); one that failed or was never sent should show nothing (0).
    A funding or a top-up that came in arrives (-)."""
    method = "'bank'" if source is Source.BANK else "'stripe'"
    return {"payout": f"CASE WHEN p.method = {method} AND p.status IN ('submitted', 'paid') THEN p.amount ELSE 0 END",
            "funding": "CASE WHEN f.status = 'approved' THEN -f.amount ELSE 0 END",
            "top_up": "CASE WHEN t.status = 'succeeded' THEN -t.amount ELSE 0 END"}


def _edges_sql(source: Source) -> str:
    """Select (line, item, what the item should show, its currency) for every item a line's reference names."""
    x = _expected(source)
    payout = f"s.line_no, 'payout', p.id, {x['payout']}, p.currency"
    funding = f"s.line_no, 'funding', f.id, {x['funding']}, f.currency"
    top_up = f"s.line_no, 'top_up', t.id, {x['top_up']}, t.currency"
    if source is Source.BANK:
        return f"""
        SELECT {payout} FROM {STAGE} s JOIN payouts p ON p.public_id = s.reference
        UNION ALL
        SELECT {payout} FROM {STAGE} s JOIN payout_bank_files b ON b.public_id = s.reference
                                  JOIN payouts p ON p.bank_file_id = b.id
        UNION ALL
        SELECT {funding} FROM {STAGE} s JOIN program_fundings f ON f.public_id = s.reference
        UNION ALL
        SELECT {funding} FROM {STAGE} s JOIN program_fundings f ON f.reference = s.reference
        WHERE f.public_id <> f.reference"""
    # A Stripe line may name the same item by its source and in its description: once is enough.
    return f"""
        SELECT {payout} FROM {STAGE} s JOIN payouts p ON p.stripe_transfer_id = s.reference
        UNION
        SELECT {payout} FROM {STAGE} s JOIN payouts p ON p.public_id = s.hint
        UNION
        SELECT {top_up} FROM {STAGE} s JOIN top_ups t ON t.payment_intent_id = s.reference
        UNION
        SELECT {top_up} FROM {STAGE} s JOIN top_ups t ON t.public_id = s.hint"""


def _loose_items_sql(sql: _Dialect, source: Source) -> str:
    """Select the items the statement should show in its (widened) period that no line names and no other
    reconciliation of the account has matched, with their ids, business days and labels."""
    method = "'bank'" if source is Source.BANK else "'stripe'"
    unnamed = "NOT EXISTS (SELECT 1 FROM rec_edges e WHERE e.kind = '{kind}' AND e.item_id = {alias}.id)"
    payout_time = "coalesce(p.paid_at, p.submitted_at)"
    payouts = f"""
        SELECT 'payout', p.id, p.public_id, NULL, p.amount, p.currency, {sql.local_day(payout_time)}
        FROM payouts p
        WHERE p.method = {method} AND p.status IN ('submitted', 'paid')
          AND {payout_time} >= :t0 AND {payout_time} < :t1
          AND {unnamed.format(kind='payout', alias='p')} AND NOT {_matched_elsewhere('payout', 'p.id')}"""
    if source is Source.BANK:
        other = f"""
        SELECT 'funding', f.id, f.public_id, f.reference, -f.amount, f.currency, {sql.local_day('f.decided_at')}
        FROM program_fundings f
        WHERE f.status = 'approved' AND f.decided_at >= :t0 AND f.decided_at < :t1
          AND {unnamed.format(kind='funding', alias='f')} AND NOT {_matched_elsewhere('funding', 'f.id')}"""
    else:
        other = f"""
        SELECT 'top_up', t.id, t.public_id, NULL, -t.amount, t.currency, {sql.local_day('t.created_at')}
        FROM top_ups t
        WHERE t.status = 'succeeded' AND t.created_at >= :t0 AND t.created_at < :t1
          AND {unnamed.format(kind='top_up', alias='t')} AND NOT {_matched_elsewhere('top_up', 't.id')}"""
    return payouts + "\n        UNION ALL" + other


def _matched_elsewhere(kind: str, item: str) -> str:
    """SQL: the item is matched by another reconciliation, alone on a line or in a bigger group."""
    column = {"payout": "payout_id", "funding": "funding_id", "top_up": "top_up_id"}[kind]
    return f"""(EXISTS (SELECT 1 FROM reconciliation_lines ml
                    WHERE ml.{column} = {item} AND ml.state = 'matched' AND ml.reconciliation_id <> :rec)
             OR EXISTS (SELECT 1 FROM reconciliation_items ri JOIN reconciliation_lines rl
                          ON rl.reconciliation_id = ri.reconciliation_id AND rl.line_no = ri.group_no
                        WHERE ri.{column} = {item} AND rl.state = 'matched' AND ri.reconciliation_id <> :rec))"""


_ITEM_COLUMNS = ("CASE WHEN {k} = 'payout' THEN {i} END, CASE WHEN {k} = 'funding' THEN {i} END, "
                 "CASE WHEN {k} = 'top_up' THEN {i} END")


def _item_columns(kind: str, item_id: str) -> str:
    return _ITEM_COLUMNS.format(k=kind, i=item_id)


LINE_COLUMNS = ("reconciliation_id, line_no, origin, value_date, reference, amount, fee, currency, description, "
                "external_id, type, state, rule, group_no, difference, payout_id, funding_id, top_up_id")


def match(session: Session, rec: Reconciliation, *, window_days: int, last_line_no: int) -> None:
    """Match the staged lines of `rec` and write its lines and items (see the module's docstring)."""
    sql = _Dialect(session)
    conn = session.connection()

    def run(statement: str, **params) -> int:
        return session.execute(text(statement).bindparams(*_typed(params)), params).rowcount

    def analyze(*tables: str) -> None:
        # Temporary tables are never analysed by autovacuum: without statistics the planner guesses badly.
        if sql.postgres:
            for table in tables:
                conn.exec_driver_sql(f"ANALYZE {table}")

    if sql.postgres:
        conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
    source = rec.source
    window = int(window_days)

    # 1. references: (line, item) pairs, each item with what the statement should show for it
    conn.exec_driver_sql(sql.temp("rec_edges", "line_no integer, kind varchar(8), item_id bigint, amount bigint, "
                                               "currency varchar(3)"))
    run(f"INSERT INTO rec_edges (line_no, kind, item_id, amount, currency) {_edges_sql(source)}")
    analyze("rec_edges")

    # 2. groups: a line with several items, or an item with several lines, is part of a bigger group; only
    #    those edges are labelled, by propagating the smallest line number through them
    conn.exec_driver_sql(sql.temp_as("rec_multi", """
        SELECT e.line_no, e.kind, e.item_id, e.amount, e.currency, e.line_no AS grp
        FROM rec_edges e
        WHERE e.line_no IN (SELECT line_no FROM rec_edges GROUP BY line_no HAVING count(*) > 1)
           OR EXISTS (SELECT 1 FROM (SELECT kind, item_id FROM rec_edges GROUP BY kind, item_id
                                     HAVING count(*) > 1) m
                      WHERE m.kind = e.kind AND m.item_id = e.item_id)"""))
    _propagate(session)
    conn.exec_driver_sql(sql.temp_as("rec_multi_lines", "SELECT line_no, min(grp) AS grp FROM rec_multi "
                                                        "GROUP BY line_no"))
    # 3. each bigger group's lines against its items (a one-to-one group is compared on its line below)
    conn.exec_driver_sql(sql.temp_as("rec_groups", f"""
        SELECT g.grp, sum(g.lines) AS lines, sum(g.items) AS items, min(g.low) AS low, max(g.high) AS high
        FROM (SELECT ml.grp, s.amount AS lines, 0 AS items, s.currency AS low, s.currency AS high
              FROM rec_multi_lines ml JOIN {STAGE} s ON s.line_no = ml.line_no
              UNION ALL
              SELECT i.grp, 0, i.amount, i.currency, i.currency
              FROM (SELECT DISTINCT kind, item_id, amount, currency, grp FROM rec_multi) i) g
        GROUP BY g.grp"""))
    analyze("rec_multi", "rec_multi_lines", "rec_groups")

    # 4. lines naming nothing, paired with items nothing named: same kind, amount, currency, date window
    conn.exec_driver_sql(sql.temp_as("rec_loose_lines", f"""
        SELECT s.line_no, s.wants, s.amount, s.currency, s.value_date FROM {STAGE} s
        WHERE s.wants IS NOT NULL AND NOT EXISTS (SELECT 1 FROM rec_edges e WHERE e.line_no = s.line_no)"""))
    conn.exec_driver_sql(sql.temp("rec_loose_items", "kind varchar(8), item_id bigint, public_id varchar(40), "
                                                     "label varchar(100), amount bigint, currency varchar(3), "
                                                     "day date"))
    run(f"INSERT INTO rec_loose_items (kind, item_id, public_id, label, amount, currency, day) "
        f"{_loose_items_sql(sql, source)}", rec=rec.id,
        t0=start_of(rec.period_start - dt.timedelta(days=window)),
        t1=start_of(rec.period_end + dt.timedelta(days=window + 1)))
    conn.exec_driver_sql(sql.temp("rec_pairs", "line_no integer, kind varchar(8), item_id bigint"))
    analyze("rec_loose_lines", "rec_loose_items")
    _pair(session, sql, window)
    analyze("rec_pairs")

    # 5. the statement's lines with their state: one item of their own (a reference, or a pair), a bigger
    #    group, or nothing
    single = "ml.line_no IS NULL"
    ok_single = "e.amount = s.amount AND e.currency = s.currency"
    ok_group = "t.lines = t.items AND t.low = t.high"
    run(f"""
        INSERT INTO reconciliation_lines ({LINE_COLUMNS})
        SELECT :rec, s.line_no, 'statement', s.value_date, s.reference, s.amount, s.fee, s.currency, s.description,
               s.external_id, s.type,
               CASE WHEN e.line_no IS NOT NULL THEN CASE WHEN {ok_single} THEN 'matched' ELSE 'mismatched' END
                    WHEN ml.line_no IS NOT NULL THEN CASE WHEN {ok_group} THEN 'matched' ELSE 'mismatched' END
                    WHEN p.line_no IS NOT NULL THEN 'matched'
                    ELSE 'unmatched_external' END,
               CASE WHEN e.line_no IS NOT NULL OR ml.line_no IS NOT NULL THEN 'reference'
                    WHEN p.line_no IS NOT NULL THEN 'amount_date' END,
               coalesce(ml.grp, s.line_no),
               CASE WHEN e.line_no IS NOT NULL THEN CASE WHEN {ok_single} THEN NULL ELSE s.amount - e.amount END
                    WHEN ml.line_no IS NOT NULL THEN CASE WHEN {ok_group} THEN NULL ELSE t.lines - t.items END
                    WHEN p.line_no IS NULL THEN s.amount + s.fee END,
               {_item_columns('coalesce(e.kind, p.kind)', 'coalesce(e.item_id, p.item_id)')}
        FROM {STAGE} s
        LEFT JOIN rec_multi_lines ml ON ml.line_no = s.line_no
        LEFT JOIN rec_groups t ON t.grp = ml.grp
        LEFT JOIN rec_edges e ON e.line_no = s.line_no AND {single}
        LEFT JOIN rec_pairs p ON p.line_no = s.line_no""", rec=rec.id)

    # 6. ours the statement should show and does not: a line each, after the statement's
    conn.exec_driver_sql(sql.temp("rec_missing", "line_no integer, kind varchar(8), item_id bigint"))
    run("""
        INSERT INTO rec_missing (line_no, kind, item_id)
        SELECT :last + row_number() OVER (ORDER BY i.day, i.kind, i.item_id), i.kind, i.item_id
        FROM rec_loose_items i
        WHERE i.day >= :start AND i.day <= :end
          AND NOT EXISTS (SELECT 1 FROM rec_pairs p WHERE p.kind = i.kind AND p.item_id = i.item_id)""",
        last=int(last_line_no), start=rec.period_start, end=rec.period_end)
    run(f"""
        INSERT INTO reconciliation_lines ({LINE_COLUMNS})
        SELECT :rec, m.line_no, 'internal', i.day, i.public_id, i.amount, 0, i.currency, i.label, NULL, i.kind,
               'unmatched_internal', NULL, m.line_no, -i.amount, {_item_columns('i.kind', 'i.item_id')}
        FROM rec_missing m JOIN rec_loose_items i ON i.kind = m.kind AND i.item_id = m.item_id""", rec=rec.id)

    # 7. the items of the bigger groups
    run(f"""
        INSERT INTO reconciliation_items (reconciliation_id, group_no, payout_id, funding_id, top_up_id, amount)
        SELECT DISTINCT :rec, m.grp, {_item_columns('m.kind', 'm.item_id')}, m.amount FROM rec_multi m""",
        rec=rec.id)
    drop_temp_tables(session)


def _propagate(session: Session) -> None:
    """Label every multi-line or multi-item group by its smallest line number, hop by hop."""
    if not session.scalar(text("SELECT count(*) FROM rec_multi")):
        return
    for _ in range(MAX_ROUNDS):
        moved = session.execute(text("""
            UPDATE rec_multi SET grp = m.grp
            FROM (SELECT kind, item_id, min(grp) AS grp FROM rec_multi GROUP BY kind, item_id) m
            WHERE m.kind = rec_multi.kind AND m.item_id = rec_multi.item_id AND m.grp < rec_multi.grp""")).rowcount
        moved += session.execute(text("""
            UPDATE rec_multi SET grp = m.grp
            FROM (SELECT line_no, min(grp) AS grp FROM rec_multi GROUP BY line_no) m
            WHERE m.line_no = rec_multi.line_no AND m.grp < rec_multi.grp""")).rowcount
        if not moved:
            return
    log.warning("reconciliation groups still merging after %s rounds", MAX_ROUNDS)


def _pair(session: Session, sql: _Dialect, window: int) -> None:
    """Pair loose lines with loose items one to one: same day first, then by rank in date order within the
    window; each round only looks at items near some loose line of the same amount."""
    left_lines = "NOT EXISTS (SELECT 1 FROM rec_pairs p WHERE p.line_no = l.line_no)"
    left_items = "NOT EXISTS (SELECT 1 FROM rec_pairs p WHERE p.kind = i.kind AND p.item_id = i.item_id)"
    same_day = f"""
        INSERT INTO rec_pairs (line_no, kind, item_id)
        SELECT l.line_no, i.kind, i.item_id
        FROM (SELECT l.*, row_number() OVER (PARTITION BY l.wants, l.amount, l.currency, l.value_date
                                             ORDER BY l.line_no) AS rn
              FROM rec_loose_lines l WHERE {left_lines}) l
        JOIN (SELECT i.*, row_number() OVER (PARTITION BY i.kind, i.amount, i.currency, i.day
                                             ORDER BY i.item_id) AS rn
              FROM rec_loose_items i WHERE {left_items}) i
          ON i.kind = l.wants AND i.amount = l.amount AND i.currency = l.currency AND i.day = l.value_date
         AND i.rn = l.rn"""
    session.execute(text(same_day))
    by_rank = f"""
        INSERT INTO rec_pairs (line_no, kind, item_id)
        SELECT l.line_no, i.kind, i.item_id
        FROM (SELECT l.*, row_number() OVER (PARTITION BY l.wants, l.amount, l.currency
                                             ORDER BY l.value_date, l.line_no) AS rn
              FROM rec_loose_lines l WHERE {left_lines}) l
        JOIN (SELECT i.*, row_number() OVER (PARTITION BY i.kind, i.amount, i.currency
                                             ORDER BY i.day, i.item_id) AS rn
              FROM rec_loose_items i
              JOIN (SELECT l.wants, l.amount, l.currency, min(l.value_date) AS first, max(l.value_date) AS last
                    FROM rec_loose_lines l WHERE {left_lines}
                    GROUP BY l.wants, l.amount, l.currency) b
                ON b.wants = i.kind AND b.amount = i.amount AND b.currency = i.currency
               AND i.day >= {sql.shift('b.first', '-' + str(window))} AND i.day <= {sql.shift('b.last', str(window))}
              WHERE {left_items}) i
          ON i.kind = l.wants AND i.amount = l.amount AND i.currency = l.currency AND i.rn = l.rn
        WHERE {sql.days_apart('i.day', 'l.value_date')} <= {window}"""
    for _ in range(PAIRING_ROUNDS):
        if not session.execute(text(by_rank)).rowcount:
            return


def _typed(params: dict) -> list:
    """Bind dates and times with the column types, so SQLite receives them as it stores them."""
    binds = []
    for name, value in params.items():
        if isinstance(value, dt.datetime):
            binds.append(bindparam(name, type_=UTCDateTime()))
        elif isinstance(value, dt.date):
            binds.append(bindparam(name, type_=Date()))
    return binds
