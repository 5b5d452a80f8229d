"""Races on PostgreSQL: concurrent requests and imports commit for real, on data unique to each test."""

import io
import threading
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import AuditEvent, Role
from members import service
from members.models import HardshipRecord, ImportStatus, Member, MemberImport, MemberImportRow, Union
from tests import factories as f

HEADER = "name,id_number,phone,union_id\n"


def first_call_waits(monkeypatch, module, name, parties=2):
    """Make the first call of module.name in each thread wait until `parties` threads have got there."""
    real = getattr(module, name)
    barrier = threading.Barrier(parties, timeout=20)
    seen = threading.local()

    def waiting(*args, **kwargs):
        if not getattr(seen, "waited", False):
            seen.waited = True
            barrier.wait()
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, waiting)


def run_in_threads(*targets):
    """Run the callables at once; return their results (an exception counts as the result)."""
    results = [None] * len(targets)

    def run(i, target):
        try:
            results[i] = target()
        except Exception as exc:  # reported by the test's assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.fixture
def world(postgres, engine, app):
    """A federation and a city union of their own, an admin with a token, all committed."""
    with Session(engine, expire_on_commit=False) as sess:
        fed = f.union(sess, f"并发测试总工会{uuid.uuid4().hex[:8]}", None, "640000")
        city = f.union(sess, "银川市总工会", fed, "640100")
        admin = f.user(sess, Role.UNION_ADMIN)
        headers = f.bearer(sess, admin)
        return {"fed": fed, "city": city, "admin": admin, "headers": headers}


def test_two_requests_adding_the_same_union_at_once_get_201_and_409(app, engine, world, monkeypatch):
    first_call_waits(monkeypatch, service, "new_public_id")  # both pass the name check before either inserts
    body = {"name": "金凤区总工会", "parent_id": world["city"].public_id, "region": "640106"}
    responses = run_in_threads(*[lambda: app.test_client().post("/api/v1/unions", headers=world["headers"], json=body)
                                 for _ in range(2)])
    assert sorted(r.status_code for r in responses) == [201, 409], [r.get_data(as_text=True) for r in responses]
    refused = next(r for r in responses if r.status_code == 409)
    assert refused.get_json()["error"] == "duplicate_union"
    with Session(engine) as sess:
        assert sess.scalar(select(func.count(Union.id)).where(Union.parent_id == world["city"].id,
                                                              Union.name == "金凤区总工会")) == 1


def test_two_first_hardship_entries_at_once_both_succeed_and_one_wins(app, engine, world, monkeypatch, cipher):
    with Session(engine, expire_on_commit=False) as sess:
        member = f.member(sess, cipher, sess.get(Union, world["city"].id))
    first_call_waits(monkeypatch, service, "hardship_snapshot")  # both find no entry before either adds one
    url = f"/api/v1/members/{member.public_id}/hardship"
    bodies = [{"level": level, "reason": f"原因{level}", "valid_until": "2099-01-01"} for level in (1, 3)]
    responses = run_in_threads(*[lambda b=b: app.test_client().put(url, headers=world["headers"], json=b)
                                 for b in bodies])
    assert [r.status_code for r in responses] == [200, 200], [r.get_data(as_text=True) for r in responses]
    with Session(engine) as sess:
        records = sess.scalars(select(HardshipRecord).where(HardshipRecord.member_id == member.id)).all()
        assert len(records) == 1 and records[0].level in (1, 3)
        actions = sess.scalars(select(AuditEvent.action).where(AuditEvent.object_id == member.public_id,
                                                               AuditEvent.action == "member.hardship.set")).all()
        assert len(actions) == 2


def start(engine, app, world, rows, name="m.csv"):
    with Session(engine, expire_on_commit=False) as sess:
        actor = f.PLATFORM.__class__(world["admin"].id, "t", Role.UNION_ADMIN)
        return service.start_import(sess, actor, io.BytesIO((HEADER + "\n".join(rows)).encode()), name,
                                    app.config["UPLOAD_FOLDER"], 10_000)


def run(engine, app, cipher, imp, chunk_size=500):
    with Session(engine, expire_on_commit=False) as sess:
        return service.run_import(sess, cipher, imp.public_id, app.config["UPLOAD_FOLDER"], chunk_size=chunk_size)


def test_two_imports_of_the_same_new_members_at_once_create_each_member_once(app, engine, world, cipher,
                                                                             monkeypatch):
    base = world["city"].public_id
    people = [(f"同人{i}", f.unique_id_number()) for i in range(6)]
    rows = [f"{name},{id_number},139{i:08d},{base}" for i, (name, id_number) in enumerate(people)]
    clash = [f"{people[0][0]}改名,{people[0][1]},13900000000,{base}"]  # the same ID number with another name
    one, two = start(engine, app, world, rows), start(engine, app, world, rows[1:] + clash)
    first_call_waits(monkeypatch, service, "_new_member")  # both look the ID numbers up before either inserts
    done = run_in_threads(lambda: run(engine, app, cipher, one), lambda: run(engine, app, cipher, two))
    assert all(isinstance(d, MemberImport) and d.status == ImportStatus.COMPLETED for d in done), done
    assert done[0].created_rows + done[1].created_rows == 6
    assert done[0].unchanged_rows + done[1].unchanged_rows == 5
    with Session(engine) as sess:
        indexes = [cipher.blind_index(id_number, service.ID_CONTEXT) for _n, id_number in people]
        assert sess.scalar(select(func.count(Member.id)).where(Member.id_number_index.in_(indexes))) == 6
        # Whichever import lost the race reports the other's version of person 0 as a duplicate.
        rejected = sess.scalars(select(MemberImportRow.error).where(
            MemberImportRow.import_id.in_([one.id, two.id]), MemberImportRow.error.is_not(None))).all()
        assert rejected == ["duplicate_id_number"]


def test_two_runs_of_one_import_take_turns_and_record_each_row_once(app, engine, world, cipher, monkeypatch):
    base = world["city"].public_id
    rows = [f"轮流{i},{f.unique_id_number()},139{i:08d},{base}" for i in range(40)]
    imp = start(engine, app, world, rows)
    first_call_waits(monkeypatch, service, "_read_header")  # both runs start from row 0
    done = run_in_threads(lambda: run(engine, app, cipher, imp, 5), lambda: run(engine, app, cipher, imp, 5))
    assert all(isinstance(d, MemberImport) for d in done), done
    with Session(engine) as sess:
        final = sess.get(MemberImport, imp.id)
        assert (final.status, final.processed_rows, final.created_rows, final.rejected_rows) == (
            ImportStatus.COMPLETED, 40, 40, 0)
        lines = sess.scalars(select(MemberImportRow.line).where(MemberImportRow.import_id == imp.id)).all()
        assert sorted(lines) == list(range(2, 42))
        completed = sess.scalar(select(func.count(AuditEvent.id)).where(
            AuditEvent.object_id == imp.public_id, AuditEvent.action == "member_import.completed"))
        assert completed == 1
