import io

import pytest
from sqlalchemy import func, select

from core.models import IdempotencyKey, Role
from members.models import MemberImport, Union
from tests import factories as f


@pytest.fixture
def tree(session):
    return f.org_tree(session)


@pytest.fixture
def admin(session):
    return f.user(session, Role.UNION_ADMIN)


def post_union(client, headers, name, key=None, parent=None):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post("/api/v1/unions", headers=headers | extra,
                       json={"name": name, "parent_id": parent.public_id, "region": "640100"})


def test_a_repeat_with_the_same_key_and_body_returns_the_first_answer(client, session, tree, admin):
    headers = f.bearer(session, admin)
    first = post_union(client, headers, "新工会", "key-1", tree["yc"])
    again = post_union(client, headers, "新工会", "key-1", tree["yc"])
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert session.scalar(select(func.count(Union.id)).where(Union.name == "新工会")) == 1


def test_the_same_key_with_another_body_is_409(client, session, tree, admin):
    headers = f.bearer(session, admin)
    assert post_union(client, headers, "甲工会", "key-2", tree["yc"]).status_code == 201
    resp = post_union(client, headers, "乙工会", "key-2", tree["yc"])
    assert resp.status_code == 409 and resp.get_json()["error"] == "idempotency_key_reused"
    assert session.scalar(select(func.count(Union.id)).where(Union.name == "乙工会")) == 0


def test_keys_belong_to_their_user(client, session, tree, admin):
    other = f.user(session, Role.UNION_ADMIN)
    assert post_union(client, f.bearer(session, admin), "丙工会", "shared", tree["yc"]).status_code == 201
    resp = post_union(client, f.bearer(session, other), "丁工会", "shared", tree["yc"])
    assert resp.status_code == 201 and resp.get_json()["name"] == "丁工会"


def test_a_refused_request_does_not_burn_the_key(client, session, tree, admin):
    headers = f.bearer(session, admin)
    bad = client.post("/api/v1/unions", headers=headers | {"Idempotency-Key": "k3"},
                      json={"name": "戊", "parent_id": tree["yc"].public_id, "region": "999999"})
    assert bad.status_code == 422
    assert session.scalar(select(func.count(IdempotencyKey.id)).where(IdempotencyKey.key == "k3")) == 0
    good = client.post("/api/v1/unions", headers=headers | {"Idempotency-Key": "k3"},
                       json={"name": "戊", "parent_id": tree["yc"].public_id, "region": "999999"})
    assert good.status_code == 422  # the same request is simply evaluated again


def test_a_request_in_progress_makes_a_retry_wait(client, session, tree, admin):
    import datetime as dt

    from core.db import utcnow

    headers = f.bearer(session, admin)
    body = {"name": "己工会", "parent_id": tree["yc"].public_id, "region": "640100"}
    first = client.post("/api/v1/unions", headers=headers | {"Idempotency-Key": "k4"}, json=body)
    row = session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "k4"))
    row.response_status, row.locked_until = None, utcnow() + dt.timedelta(seconds=60)  # as if still running
    session.commit()
    resp = client.post("/api/v1/unions", headers=headers | {"Idempotency-Key": "k4"}, json=body)
    assert first.status_code == 201 and resp.status_code == 409
    assert resp.get_json()["error"] == "request_in_progress"


def test_member_and_import_creation_accept_the_key(client, session, tree, admin):
    headers = f.bearer(session, admin)
    body = {"name": "王", "id_number": f.unique_id_number(), "phone": "13900000000",
            "union_id": tree["yc_base"].public_id}
    a = client.post("/api/v1/members", headers=headers | {"Idempotency-Key": "m1"}, json=body)
    b = client.post("/api/v1/members", headers=headers | {"Idempotency-Key": "m1"}, json=body)
    assert a.status_code == b.status_code == 201 and a.get_json()["id"] == b.get_json()["id"]
    csv_bytes = f"name,id_number,phone,union_id\n张,{f.unique_id_number()},13900000001,{tree['yc_base'].public_id}\n".encode()

    def upload():
        return client.post("/api/v1/members/imports", headers=headers | {"Idempotency-Key": "i1"},
                           data={"file": (io.BytesIO(csv_bytes), "m.csv")}, content_type="multipart/form-data")

    first, second = upload(), upload()
    assert first.get_json()["id"] == second.get_json()["id"]
    assert session.scalar(select(func.count(MemberImport.id)).where(MemberImport.created_by_id == admin.id)) == 1


def test_a_malformed_key_is_400(client, session, tree, admin):
    headers = f.bearer(session, admin) | {"Idempotency-Key": "x" * 300}
    resp = client.post("/api/v1/unions", headers=headers, json={"name": "x", "parent_id": None, "region": "640000"})
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_idempotency_key"


def test_a_keyed_upload_with_a_part_that_has_no_name_is_refused_not_a_crash(client, session, tree, admin):
    headers = f.bearer(session, admin) | {"Idempotency-Key": "i2"}
    body = ("--b\r\nContent-Disposition: form-data\r\n\r\nnameless\r\n"
            '--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n'
            '--b\r\nContent-Disposition: form-data; filename="nameless.csv"\r\n\r\nx\r\n'
            '--b\r\nContent-Disposition: form-data; name="file"; filename="m.csv"\r\n\r\nname\r\n--b--\r\n')
    resp = client.post("/api/v1/members/imports", headers=headers, data=body.encode(),
                       content_type="multipart/form-data; boundary=b")
    assert resp.status_code == 422 and resp.get_json()["code"] == 422
