import io

import pytest
from sqlalchemy import func, select

from core.models import AuditEvent, Role
from members import service
from members.models import ImportStatus, Member, MemberImportRow
from tests import factories as f

HEADER = "name,id_number,phone,union_id,join_date\n"


@pytest.fixture
def tree(session):
    return f.org_tree(session)


@pytest.fixture
def yc_admin(session, tree):
    return f.bearer(session, f.user(session, Role.UNION_ADMIN, union=tree["yc"]))


def upload(client, headers, content: str | bytes, name="members.csv"):
    data = content.encode() if isinstance(content, str) else content
    return client.post("/api/v1/members/imports", headers=headers,
                       data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


def test_good_rows_each_kind_of_bad_row_and_idempotent_reimport(client, session, cipher, tree, yc_admin):
    base, other = tree["yc_base"].public_id, tree["gy_base"].public_id
    taken = f.member(session, cipher, tree["yc_base"], "王已有")
    taken_id = service.reveal_id_number(cipher, taken)
    good1, good2 = f.unique_id_number(), f.unique_id_number()
    rows = [
        f"张一,{good1},13900000001,{base},2020-01-02",           # 2 created
        f"张二,{good2.lower()},+86 139 0000 0002,{base},",       # 3 created (x folded, phone normalized)
        f"张三,110105194912310021,13900000003,{base},",         # 4 bad check character
        f"张四,{f.unique_id_number()},12345,{base},",           # 5 bad phone
        f"张五,{f.unique_id_number()},13900000005,{other},",    # 6 union outside the admin's subtree
        f"张六,{f.unique_id_number()},13900000006,uni_nope,",   # 7 unknown union
        f",{f.unique_id_number()},13900000007,{base},",         # 8 no name
        f"张八,{f.unique_id_number()},13900000008,{base},2099-01-01",  # 9 join date in the future
        f"张九,{f.unique_id_number()},13900000009,{base},yesterday",   # 10 join date not a date
        f"张十,{f.unique_id_number()},13900000010",              # 11 wrong column count
        f"别人,{taken_id},13900000011,{base},",                  # 12 ID taken by someone else
        f"张一,{good1},13900000001,{base},2020-01-02",           # 13 the same person twice: unchanged
        "",                                                     # blank lines are skipped
    ]
    resp = upload(client, yc_admin, HEADER + "\n".join(rows) + "\n")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert (body["status"], body["total_rows"], body["created"], body["unchanged"], body["rejected"]) == (
        "completed", 12, 2, 1, 9)
    by_line = {r["line"]: r for r in body["rows"]}
    assert by_line[2]["status"] == by_line[3]["status"] == "created"
    assert {line: by_line[line]["error"] for line in range(4, 13)} == {
        4: "invalid_id_number", 5: "invalid_phone", 6: "unknown_union", 7: "unknown_union", 8: "invalid_name",
        9: "invalid_join_date", 10: "malformed_row", 11: "malformed_row", 12: "duplicate_id_number"}
    assert all(by_line[line]["message"] for line in range(4, 13))
    assert by_line[13]["status"] == "unchanged" and by_line[13]["member_id"] == by_line[2]["member_id"]
    created = session.scalar(select(Member).where(Member.public_id == by_line[2]["member_id"]))
    assert created.join_date.isoformat() == "2020-01-02" and created.phone_masked == "139****0001"

    members_before = session.scalar(select(func.count(Member.id)))
    audit_before = session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "member.created"))
    again = upload(client, yc_admin, HEADER + "\n".join(rows) + "\n").get_json()
    assert (again["created"], again["unchanged"], again["rejected"]) == (0, 3, 9)
    assert session.scalar(select(func.count(Member.id))) == members_before
    assert session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "member.created")) == audit_before


@pytest.mark.parametrize("content, needle", [
    ("name,id_number,phone\n张,1,2\n", "missing union_id"),
    ("name,id_number,phone,union_id,colour\n", "unknown colour"),
    (HEADER, "no rows"),
    ("name,id_number,phone,union_id\n张三,1,2,3\n".encode("gbk"), "UTF-8"),
    (b"", "missing name"),
])
def test_bad_files_are_refused_before_anything_moves(client, yc_admin, content, needle):
    resp = upload(client, yc_admin, content)
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"] == "invalid_csv" and needle in body["errors"]["file"][0]


def test_missing_file_field_is_422(client, yc_admin):
    resp = client.post("/api/v1/members/imports", headers=yc_admin, data={}, content_type="multipart/form-data")
    assert resp.status_code == 422 and "file" in resp.get_json()["errors"]


def test_a_crash_mid_import_resumes_without_duplicates(session, cipher, tree, app, monkeypatch):
    base = tree["yc_base"].public_id
    rows = [f"成员{i},{f.unique_id_number()},139{i:08d},{base}," for i in range(25)]
    actor = f.PLATFORM.__class__(f.user(session, Role.UNION_ADMIN).id, "t", Role.UNION_ADMIN)
    imp = service.start_import(session, actor, io.BytesIO((HEADER + "\n".join(rows)).encode()), "m.csv",
                               app.config["UPLOAD_FOLDER"], 1000)
    real_chunk, calls = service._import_chunk, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("database went away")
        return real_chunk(*args, **kwargs)

    monkeypatch.setattr(service, "_import_chunk", crash_on_third)
    with pytest.raises(ConnectionError):
        service.run_import(session, cipher, imp.public_id, app.config["UPLOAD_FOLDER"], chunk_size=10)
    service.fail_import(session, imp.public_id, "crashed")
    session.refresh(imp)
    assert imp.status == ImportStatus.FAILED and imp.processed_rows == 20 and imp.created_rows == 20
    monkeypatch.setattr(service, "_import_chunk", real_chunk)
    done = service.run_import(session, cipher, imp.public_id, app.config["UPLOAD_FOLDER"], chunk_size=10)
    assert (done.status, done.processed_rows, done.created_rows, done.rejected_rows) == (
        ImportStatus.COMPLETED, 25, 25, 0)
    lines = session.scalars(select(MemberImportRow.line).where(MemberImportRow.import_id == imp.id)).all()
    assert sorted(lines) == list(range(2, 27))
    stored = __import__("pathlib").Path(app.config["UPLOAD_FOLDER"]) / "member-imports" / imp.stored_name
    assert not stored.exists()  # the clear-text upload is gone once the import completed
    # Running a finished import again does nothing.
    assert service.run_import(session, cipher, imp.public_id, app.config["UPLOAD_FOLDER"]).created_rows == 25


def test_large_files_are_queued_and_polled(client, session, tree, yc_admin, app):
    base = tree["yc_base"].public_id
    rows = [f"成员{i},{f.unique_id_number()},139{i:08d},{base}," for i in range(30)]
    rows.append(f"坏行,123,13900000000,{base},")
    app.config["IMPORT_INLINE_ROWS"], old = 10, app.config["IMPORT_INLINE_ROWS"]
    try:
        resp = upload(client, yc_admin, HEADER + "\n".join(rows))
    finally:
        app.config["IMPORT_INLINE_ROWS"] = old
    assert resp.status_code == 202
    location = resp.headers["Location"]
    polled = client.get(location, headers=yc_admin).get_json()  # jobs run inline under test
    assert (polled["status"], polled["processed_rows"], polled["created"], polled["rejected"]) == (
        "completed", 31, 30, 1)
    page = client.get(f"{location}/rows?status=rejected", headers=yc_admin).get_json()
    assert [(r["line"], r["error"]) for r in page["data"]] == [(32, "invalid_id_number")]
    first = client.get(f"{location}/rows?limit=20", headers=yc_admin).get_json()
    rest = client.get(f"{location}/rows?limit=20&cursor={first['next_cursor']}", headers=yc_admin).get_json()
    assert len(first["data"]) == 20 and len(rest["data"]) == 11 and rest["next_cursor"] is None


def test_imports_are_visible_only_within_the_admins_scope(client, session, tree, yc_admin):
    gy_admin = f.bearer(session, f.user(session, Role.UNION_ADMIN, union=tree["gy"]))
    resp = upload(client, yc_admin, HEADER + f"张,{f.unique_id_number()},13900000000,{tree['yc_base'].public_id},\n")
    imp_id = resp.get_json()["id"]
    assert client.get(f"/api/v1/members/imports/{imp_id}", headers=gy_admin).status_code == 404
    assert client.get(f"/api/v1/members/imports/{imp_id}/rows", headers=gy_admin).status_code == 404
    assert client.get(f"/api/v1/members/imports/{imp_id}", headers=yc_admin).status_code == 200


def stored_file(app, imp_id):
    from pathlib import Path

    with app.app_context():
        from core.db import db

        imp = db.session.scalar(select(service.MemberImport).where(service.MemberImport.public_id == imp_id))
        return Path(app.config["UPLOAD_FOLDER"]) / "member-imports" / imp.stored_name


def test_an_inline_run_that_crashes_is_marked_failed_and_resumes(client, session, tree, yc_admin, app, monkeypatch):
    base = tree["yc_base"].public_id
    rows = [f"成员{i},{f.unique_id_number()},139{i:08d},{base}," for i in range(3)]
    real_chunk = service._import_chunk

    def database_gone(*args, **kwargs):
        raise ConnectionError("database went away")

    monkeypatch.setattr(service, "_import_chunk", database_gone)
    resp = upload(client, yc_admin, HEADER + "\n".join(rows) + "\n")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "failed" and "resume" in body["error"] and body["processed_rows"] == 0
    assert resp.headers["Location"].endswith(f"/api/v1/members/imports/{body['id']}")
    assert stored_file(app, body["id"]).exists()  # kept, so the import can go on
    failed = session.scalar(select(AuditEvent).where(AuditEvent.action == "member_import.failed",
                                                     AuditEvent.object_id == body["id"]))
    assert failed.after["error"].startswith("ConnectionError")

    monkeypatch.setattr(service, "_import_chunk", real_chunk)
    resumed = client.post(f"/api/v1/members/imports/{body['id']}/resume", headers=yc_admin)
    assert resumed.status_code == 200, resumed.get_data(as_text=True)
    assert (resumed.get_json()["status"], resumed.get_json()["created"], resumed.get_json()["error"]) == (
        "completed", 3, None)
    assert not stored_file(app, body["id"]).exists()
    again = client.post(f"/api/v1/members/imports/{body['id']}/resume", headers=yc_admin)
    assert again.status_code == 409 and again.get_json()["error"] == "import_completed"
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == body["id"])
                              .order_by(AuditEvent.id)).all()
    assert actions == ["member_import.created", "member_import.failed", "member_import.resumed",
                       "member_import.completed"]


def queued_import(session, app, tree, n=3):
    base = tree["yc_base"].public_id
    rows = [f"排队{i},{f.unique_id_number()},139{i:08d},{base}," for i in range(n)]
    actor = f.PLATFORM.__class__(f.user(session, Role.UNION_ADMIN, union=tree["yc"]).id, "t", Role.UNION_ADMIN,
                                 union_id=tree["yc"].id)
    return service.start_import(session, actor, io.BytesIO((HEADER + "\n".join(rows)).encode()), "m.csv",
                                app.config["UPLOAD_FOLDER"], 1000)


def later(monkeypatch, minutes):
    import datetime as dt

    from core.db import utcnow

    moment = utcnow() + dt.timedelta(minutes=minutes)
    monkeypatch.setattr(service, "utcnow", lambda: moment)


def test_resume_waits_for_a_live_run_and_takes_over_a_stalled_one(client, session, tree, yc_admin, app, monkeypatch):
    imp = queued_import(session, app, tree)  # queued, as if its job had been lost
    url = f"/api/v1/members/imports/{imp.public_id}/resume"
    fresh = client.post(url, headers=yc_admin)
    assert fresh.status_code == 409 and fresh.get_json()["error"] == "import_running"
    later(monkeypatch, 6)
    resp = client.post(url, headers=yc_admin)
    assert resp.status_code == 200 and resp.get_json()["created"] == 3


def test_resume_follows_the_scope_and_role_rules(client, session, tree, yc_admin, app):
    imp = queued_import(session, app, tree)
    service.fail_import(session, imp.public_id, "crashed")
    url = f"/api/v1/members/imports/{imp.public_id}/resume"
    gy_admin = f.bearer(session, f.user(session, Role.UNION_ADMIN, union=tree["gy"]))
    auditor = f.bearer(session, f.user(session, Role.AUDITOR))
    assert client.post(url, headers=gy_admin).status_code == 404
    assert client.post(url, headers=auditor).status_code == 403
    assert client.post(url).status_code == 401
    assert client.post("/api/v1/members/imports/imp_nope/resume", headers=yc_admin).status_code == 404
    stored_file(app, imp.public_id).unlink()
    gone = client.post(url, headers=yc_admin)
    assert gone.status_code == 409 and gone.get_json()["error"] == "import_file_missing"


def test_cells_with_control_characters_are_rejected_per_row(client, session, cipher, tree, yc_admin):
    base = tree["yc_base"].public_id
    good = f.unique_id_number()
    rows = [
        f"好人,{good},13900000001,{base}",
        f"张\x00三,{f.unique_id_number()},13900000002,{base}",   # NUL: PostgreSQL refuses it in text
        f"李四,{f.unique_id_number()},13900000003,{base}\x01",   # a control character in the union id
        f'"王\n五",{f.unique_id_number()},13900000004,{base}',   # a line break inside a quoted name
        f"赵六\t,{f.unique_id_number()},13900000005,{base}",     # trailing white space is only trimmed
    ]
    resp = upload(client, yc_admin, HEADER.replace(",join_date", "") + "\n".join(rows) + "\n")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert (body["created"], body["rejected"]) == (2, 3)
    assert [(r["line"], r["status"], r["error"]) for r in body["rows"]] == [
        (2, "created", None), (3, "rejected", "invalid_text"), (4, "rejected", "invalid_text"),
        (6, "rejected", "invalid_text"), (7, "created", None)]
    names = set(session.scalars(select(Member.name).where(Member.union_id == tree["yc_base"].id)))
    assert names == {"好人", "赵六"}


def test_the_resume_command_takes_over_stalled_imports(app, session, tree, monkeypatch):
    from members.cli import cli

    runner = app.test_cli_runner()
    stalled, failed = queued_import(session, app, tree), queued_import(session, app, tree, n=2)
    service.fail_import(session, failed.public_id, "crashed")
    now = runner.invoke(cli, ["resume-imports"])
    assert now.exit_code == 0 and stalled.public_id not in now.output  # not stalled yet
    later(monkeypatch, 6)
    result = runner.invoke(cli, ["resume-imports"])
    assert result.exit_code == 0, result.output
    assert f"{stalled.public_id}: completed, 3/3 rows (created 3" in result.output
    assert failed.public_id not in result.output
    result = runner.invoke(cli, ["resume-imports", "--include-failed"])
    assert f"{failed.public_id}: completed, 2/2 rows" in result.output
    session.expire_all()
    assert {session.get(service.MemberImport, i.id).status for i in (stalled, failed)} == {ImportStatus.COMPLETED}
