import io
import logging

import pytest
from sqlalchemy import select, text

from core.models import AuditEvent, Role
from members import service
from tests import factories as f


@pytest.fixture
def tree(session):
    return f.org_tree(session)


def test_auditor_reads_the_log_filtered_and_newest_first(client, session, cipher, tree):
    m = f.member(session, cipher, tree["yc_base"])
    service.set_hardship(session, f.PLATFORM, m.public_id, level=2, reason="因病", valid_until=__import__(
        "datetime").date(2099, 1, 1))
    auditor = f.bearer(session, f.user(session, Role.AUDITOR))
    body = client.get(f"/api/v1/audit-events?object_id={m.public_id}", headers=auditor).get_json()
    assert [e["action"] for e in body["data"]] == ["member.hardship.set", "member.created"]
    assert body["data"][0]["after"] == {"level": 2, "reason": "因病", "valid_until": "2099-01-01"}
    family = client.get("/api/v1/audit-events?action=member&limit=200", headers=auditor).get_json()["data"]
    assert {e["action"] for e in family} >= {"member.created", "member.hardship.set"}
    assert all(e["action"].startswith("member.") for e in family)
    admin = f.bearer(session, f.user(session, Role.UNION_ADMIN))
    assert client.get("/api/v1/audit-events", headers=admin).status_code == 403


def test_api_changes_record_actor_request_id_and_address(client, session, tree):
    u = f.user(session, Role.UNION_ADMIN)
    resp = client.post("/api/v1/unions", headers=f.bearer(session, u) | {"X-Request-Id": "req-audit-0001"},
                       json={"name": "新工会", "parent_id": tree["yc"].public_id, "region": "640100"},
                       environ_base={"REMOTE_ADDR": "10.1.2.3"})
    event = session.scalar(select(AuditEvent).where(AuditEvent.object_id == resp.get_json()["id"]))
    assert (event.action, event.actor_id, event.actor_label, event.request_id, event.ip) == (
        "union.created", u.id, u.username, "req-audit-0001", "10.1.2.3")
    assert event.after["parent_id"] == tree["yc"].public_id


def test_the_audit_log_refuses_update_and_delete(engine):
    from sqlalchemy.exc import DBAPIError

    now = "now()" if engine.dialect.name == "postgresql" else "CURRENT_TIMESTAMP"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO audit_events (occurred_at, actor_label, action, object_type, object_id) "
                          f"VALUES ({now}, 'test', 'test.append_only', 'test', 'x')"))
    statements = ["UPDATE audit_events SET action = 'forged' WHERE action = 'test.append_only'",
                  "DELETE FROM audit_events WHERE action = 'test.append_only'"]
    if engine.dialect.name == "postgresql":
        statements.append("TRUNCATE audit_events")
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            with engine.begin() as conn:
                conn.execute(text(statement))


def test_personal_numbers_never_appear_unmasked_in_responses_or_logs(client, session, tree, caplog):
    caplog.set_level(logging.DEBUG)
    admin = f.bearer(session, f.user(session, Role.UNION_ADMIN))
    auditor = f.bearer(session, f.user(session, Role.AUDITOR))
    id_number, phone = f.unique_id_number(), "13987654321"
    id2, phone2 = f.unique_id_number(), "18611112222"
    bodies = []

    def keep(resp):
        bodies.append(resp.get_data(as_text=True))
        return resp

    created = keep(client.post("/api/v1/members", headers=admin, json={
        "name": "王敏", "id_number": id_number, "phone": phone, "union_id": tree["yc_base"].public_id}))
    mid = created.get_json()["id"]
    keep(client.post("/api/v1/members", headers=admin, json={  # duplicate: the error must not echo it
        "name": "王敏", "id_number": id_number, "phone": phone, "union_id": tree["yc_base"].public_id}))
    keep(client.post("/api/v1/members", headers=admin, json={  # invalid phone, valid id
        "name": "王敏", "id_number": id2, "phone": phone2 + "9", "union_id": tree["yc_base"].public_id}))
    keep(client.get(f"/api/v1/members/{mid}", headers=admin))
    keep(client.get(f"/api/v1/members?id_number={id_number}", headers=admin))
    keep(client.patch(f"/api/v1/members/{mid}", headers=admin, json={"phone": phone2}))
    csv_text = (f"name,id_number,phone,union_id\n李,{id2},{phone2},{tree['yc_base'].public_id}\n"
                f"李,{id_number},{phone},{tree['gy_base'].public_id}\n")
    keep(client.post("/api/v1/members/imports", headers=admin, content_type="multipart/form-data",
                     data={"file": (io.BytesIO(csv_text.encode()), "m.csv")}))
    keep(client.get("/api/v1/audit-events?limit=200", headers=auditor))
    logging.getLogger("members").warning("looking up %s / %s", id_number, phone)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    everything = "\n".join(bodies) + logged
    for secret in (id_number, id_number.lower(), phone, id2, phone2):
        assert secret not in everything
    assert id_number[:4] + "**********" + id_number[-4:] in logged  # the log line was kept, masked
    # And nothing in the database holds them in clear.
    dump = " ".join(str(tuple(r)) for t in ("members", "audit_events", "member_import_rows")
                    for r in session.execute(text(f"SELECT * FROM {t}")))
    for secret in (id_number, phone, id2, phone2):
        assert secret not in dump


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_tracebacks_and_access_lines_are_masked_in_logs(caplog):
    caplog.set_level(logging.INFO)
    id_number, wide_id = f.unique_id_number(), f.unique_id_number()
    try:
        raise ValueError(f"no member with {id_number} or {full_width(wide_id)}")
    except ValueError:
        logging.getLogger("members").exception("look-up failed")
    request_line = "GET /api/v1/members?phone=139-0000-0000&other=%2B8613911112222&x=139%200000%205555 HTTP/1.1"
    logging.getLogger("werkzeug").info('%s - - [%s] "%s" %s -', "10.0.0.1", "25/Nov/2026 10:00:00",
                                       request_line, 200)
    # What a handler writes: the message, then the traceback it formats from the record.
    written = "\n".join(logging.Formatter("%(levelname)s %(message)s").format(r) for r in caplog.records)
    assert "Traceback" in written and "ValueError: no member with" in written
    for secret in (id_number, full_width(wide_id), "139-0000-0000", "13911112222", "139%200000%205555"):
        assert secret not in written and secret not in caplog.text
    assert f"{id_number[:4]}**********{id_number[-4:]}" in written
    assert "phone=139****0000&other=139****2222&x=139****5555" in written


def test_an_unexpected_error_naming_an_id_number_is_logged_masked(client, session, caplog, monkeypatch):
    admin = f.bearer(session, f.user(session, Role.UNION_ADMIN))
    id_number = f.unique_id_number()

    def boom(*args, **kwargs):
        raise RuntimeError(f"cannot load the member whose ID number is {id_number}")

    monkeypatch.setattr(service, "list_unions", boom)
    caplog.set_level(logging.ERROR)
    assert client.get("/api/v1/unions", headers=admin).status_code == 500
    written = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "RuntimeError: cannot load the member" in written and id_number not in written


def test_database_errors_never_carry_the_bound_values(app):
    from sqlalchemy.exc import DBAPIError

    from core.db import db

    id_number = f.unique_id_number()
    with db.engine.connect() as conn, pytest.raises(DBAPIError) as caught:
        conn.execute(text("SELECT id FROM no_such_table WHERE id_number = :value"), {"value": id_number})
    assert id_number not in str(caught.value) and "hidden" in str(caught.value)
