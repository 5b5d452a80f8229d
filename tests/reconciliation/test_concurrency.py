"""Races on PostgreSQL: the same statement imported twice at once makes one reconciliation."""

import io
import uuid

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.auth import Actor
from core.models import Role
from payments.reconciliation import service
from payments.reconciliation.models import Reconciliation, ReconciliationLine, Source
from tests.integration.test_concurrency import first_call_waits, run_in_threads

pytestmark = pytest.mark.usefixtures("postgres")


def test_the_same_file_imported_twice_at_once_is_one_reconciliation(app, engine, monkeypatch):
    # A statement of its own (nothing in it is ours), so the race is about the file alone.
    tag = uuid.uuid4().hex
    content = (f"date,reference,amount,currency,description\n2026-11-02,RACE-{tag},100,CNY,x\n"
               f"2026-11-02,RACE-{tag}-2,-250,CNY,y\n").encode()
    first_call_waits(monkeypatch, service, "_existing")
    actor = Actor(None, "race", Role.FINANCE_MAKER)

    def run():
        with Session(engine, expire_on_commit=False) as session:
            rec, created = service.import_file(session, actor, source=Source.BANK, fileobj=io.BytesIO(content),
                                               filename="race.csv", window_days=3)
            return rec.id, created

    results = run_in_threads(run, run)
    try:
        assert all(isinstance(r, tuple) for r in results), results
        assert results[0][0] == results[1][0]
        assert sorted(created for _, created in results) == [False, True]
        with Session(engine) as session:
            rec = session.get(Reconciliation, results[0][0])
            assert (rec.lines_count, rec.unmatched_external) == (2, 2)
    finally:
        with Session(engine) as session:
            ids = list(session.scalars(select(Reconciliation.id).where(Reconciliation.filename == "race.csv")))
            session.execute(delete(ReconciliationLine).where(ReconciliationLine.reconciliation_id.in_(ids)))
            session.execute(delete(Reconciliation).where(Reconciliation.id.in_(ids)))
            session.commit()
