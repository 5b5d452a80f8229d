import datetime as dt

import pytest
from sqlalchemy import select, text

from core.models import AuditEvent, Role
from members.models import Member
from tests import factories as f


@pytest.fixture
def tree(session):
    return f.org_tree(session)


@pytest.fixture
def platform(session):
    return f.bearer(session, f.user(session, Role.UNION_ADMIN))


@pytest.fixture
def yc_admin(session, tree):
    return f.bearer(session, f.user(session, Role.UNION_ADMIN, union=tree["yc"]))


def new_member(client, headers, union, **over):
    body = {"name": "李四", "id_number": f.unique_id_number(union.region), "phone": f.phone(),
            "union_id": union.public_id} | over
    return client.post("/api/v1/members", headers=headers, json=body)


def test_register_member_masks_personal_numbers(client, session, tree, yc_admin):
    id_number = f.id_number("640104", dt.date(1980, 2, 29), 7)
    resp = new_member(client, yc_admin, tree["yc_base"], id_number=id_number, phone="13912345678")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["id"].startswith("mem_") and len(body["id"]) == 24
    assert body["id_number"] == id_number[:4] + "*" * 10 + id_number[-4:]
    assert body["phone"] == "139****5678"
    assert body["union_id"] == tree["yc_base"].public_id and body["status"] == "active"
    assert body["join_date"] == dt.date.today().isoformat()
    row = session.execute(text("SELECT * FROM members WHERE public_id = :p"), {"p": body["id"]}).mappings().one()
    assert id_number not in str(dict(row)) and "13912345678" not in str(dict(row))


def test_invalid_id_number_is_422_with_its_word(client, tree, yc_admin):
    resp = new_member(client, yc_admin, tree["yc_base"], id_number="110105194912310021")
    assert resp.status_code == 422
    body = resp.get_json()
    assert body["error"] == "invalid_id_number" and "check character" in body["errors"]["id_number"][0]
    resp = new_member(client, yc_admin, tree["yc_base"], phone="12345")
    assert resp.get_json()["error"] == "invalid_phone"


def test_one_id_number_one_member(client, tree, yc_admin, platform):
    id_number = f.unique_id_number()
    assert new_member(client, yc_admin, tree["yc_base"], id_number=id_number).status_code == 201
    again = new_member(client, platform, tree["gy_base"], id_number=id_number.lower())
    assert again.status_code == 409 and again.get_json()["error"] == "duplicate_member"


def test_admin_cannot_register_outside_their_subtree(client, tree, yc_admin):
    resp = new_member(client, yc_admin, tree["gy_base"])
    assert resp.status_code == 422 and resp.get_json()["errors"] == {"union_id": ["Unknown union."]}


def test_listing_is_scoped_and_filters_by_union_subtree_and_hardship(client, session, cipher, tree, yc_admin, platform):
    a = f.member(session, cipher, tree["yc_base"], "甲")
    b = f.member(session, cipher, tree["xq"], "乙")
    c = f.member(session, cipher, tree["gy_base"], "丙")
    ids = lambda resp: {m["id"] for m in resp.get_json()["data"]}  # noqa: E731
    assert ids(client.get("/api/v1/members", headers=yc_admin)) == {a.public_id, b.public_id}
    assert ids(client.get(f"/api/v1/members?union_id={tree['fed'].public_id}", headers=platform)) == {
        a.public_id, b.public_id, c.public_id}
    assert ids(client.get(f"/api/v1/members?union_id={tree['xq'].public_id}", headers=yc_admin)) == {
        a.public_id, b.public_id}
    assert ids(client.get(f"/api/v1/members?union_id={tree['yc_base'].public_id}", headers=yc_admin)) == {a.public_id}
    assert client.get(f"/api/v1/members?union_id={tree['gy'].public_id}", headers=yc_admin).status_code == 404
    put = client.put(f"/api/v1/members/{a.public_id}/hardship", headers=yc_admin,
                     json={"level": 2, "reason": "因病致困", "valid_until": "2099-12-31"})
    assert put.status_code == 200 and put.get_json()["current"] is True
    assert ids(client.get("/api/v1/members?hardship=true", headers=yc_admin)) == {a.public_id}
    assert ids(client.get("/api/v1/members?hardship=false", headers=yc_admin)) == {b.public_id}


def test_exact_lookup_by_id_number_and_name_prefix(client, session, cipher, tree, yc_admin):
    id_number = f.unique_id_number()
    a = f.member(session, cipher, tree["yc_base"], "欧阳修", id_number=id_number)
    f.member(session, cipher, tree["yc_base"], "王五")
    resp = client.get(f"/api/v1/members?id_number={id_number}", headers=yc_admin)
    assert [m["id"] for m in resp.get_json()["data"]] == [a.public_id]
    resp = client.get("/api/v1/members?q=欧阳", headers=yc_admin)
    assert [m["id"] for m in resp.get_json()["data"]] == [a.public_id]
    resp = client.get("/api/v1/members?q=%25", headers=yc_admin)  # a literal %, not a wildcard
    assert resp.get_json()["data"] == []


def test_pagination_walks_every_member_once(client, session, cipher, tree, yc_admin):
    made = {f.member(session, cipher, tree["yc_base"], f"成员{i}").public_id for i in range(7)}
    seen, cursor = [], None
    while True:
        url = "/api/v1/members?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=yc_admin).get_json()
        assert len(body["data"]) <= 3
        seen += [m["id"] for m in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and set(seen) == made


def test_get_member_across_tenants_is_404(client, session, cipher, tree, yc_admin):
    other = f.member(session, cipher, tree["gy_base"])
    resp = client.get(f"/api/v1/members/{other.public_id}", headers=yc_admin)
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"
    for method, suffix, body in (("patch", "", {"name": "x"}),
                                 ("put", "/hardship", {"level": 1, "reason": "r", "valid_until": "2099-01-01"}),
                                 ("delete", "/hardship", None)):
        resp = getattr(client, method)(f"/api/v1/members/{other.public_id}{suffix}", headers=yc_admin, json=body)
        assert resp.status_code == 404, (method, suffix)


def test_member_sees_only_their_own_record(client, session, cipher, tree):
    me = f.member(session, cipher, tree["yc_base"])
    other = f.member(session, cipher, tree["yc_base"])
    headers = f.bearer(session, f.user(session, Role.MEMBER, member=me))
    assert client.get(f"/api/v1/members/{me.public_id}", headers=headers).status_code == 200
    assert client.get(f"/api/v1/members/{other.public_id}", headers=headers).status_code == 404
    assert client.get("/api/v1/members", headers=headers).status_code == 403


def test_update_member_and_transfer_is_audited(client, session, cipher, tree, platform):
    m = f.member(session, cipher, tree["yc_base"])
    resp = client.patch(f"/api/v1/members/{m.public_id}", headers=platform,
                        json={"phone": "+86 186 0000 1111", "union_id": tree["gy_base"].public_id,
                              "status": "transferred"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["phone"] == "186****1111" and body["union_id"] == tree["gy_base"].public_id
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "member.updated",
                                                    AuditEvent.object_id == m.public_id))
    assert event.before["union_id"] == tree["yc_base"].public_id
    assert event.after["union_id"] == tree["gy_base"].public_id and event.after["phone"] == "186****1111"
    bad = client.patch(f"/api/v1/members/{m.public_id}", headers=platform, json={"phone": "1", "name": "新名"})
    assert bad.status_code == 422
    session.expire_all()
    assert session.get(Member, m.id).name != "新名"  # nothing half-written


def test_hardship_entry_validation_and_removal(client, session, cipher, tree, yc_admin):
    m = f.member(session, cipher, tree["yc_base"])
    url = f"/api/v1/members/{m.public_id}/hardship"
    assert client.put(url, headers=yc_admin, json={"level": 4, "reason": "x", "valid_until": "2099-01-01"}).status_code == 422
    assert client.put(url, headers=yc_admin, json={"level": 2, "reason": "x", "valid_until": "2000-01-01"}).status_code == 422
    assert client.put(url, headers=yc_admin, json={"level": "2", "reason": "x", "valid_until": "2099-01-01"}).status_code == 422
    assert client.put(url, headers=yc_admin, json={"level": 3, "reason": "重病", "valid_until": "2099-01-01"}).status_code == 200
    assert client.put(url, headers=yc_admin, json={"level": 1, "reason": "好转", "valid_until": "2099-06-01"}).get_json()["level"] == 1
    assert client.delete(url, headers=yc_admin).status_code == 204
    assert client.delete(url, headers=yc_admin).status_code == 404
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == m.public_id)
                              .order_by(AuditEvent.id)).all()
    assert actions == ["member.created", "member.hardship.set", "member.hardship.set", "member.hardship.cleared"]


def test_union_tree_rules(client, session, tree, yc_admin, platform):
    resp = client.post("/api/v1/unions", headers=yc_admin, json={"name": "新工会", "parent_id": None, "region": "640100"})
    assert resp.status_code == 422  # only a platform admin makes a root
    resp = client.post("/api/v1/unions", headers=yc_admin,
                       json={"name": "新工会", "parent_id": tree["gy"].public_id, "region": "640402"})
    assert resp.status_code == 422 and "parent_id" in resp.get_json()["errors"]
    resp = client.post("/api/v1/unions", headers=yc_admin,
                       json={"name": "金凤区总工会", "parent_id": tree["yc"].public_id, "region": "640402"})
    assert resp.status_code == 422 and "region" in resp.get_json()["errors"]
    resp = client.post("/api/v1/unions", headers=yc_admin,
                       json={"name": "金凤区总工会", "parent_id": tree["yc"].public_id, "region": "640106"})
    assert resp.status_code == 201 and resp.get_json()["kind"] == "county"
    dup = client.post("/api/v1/unions", headers=yc_admin,
                      json={"name": "金凤区总工会", "parent_id": tree["yc"].public_id, "region": "640106"})
    assert dup.status_code == 409
    resp = client.post("/api/v1/unions", headers=platform,
                       json={"name": "基层下级", "parent_id": tree["yc_base"].public_id, "region": "640104"})
    assert resp.status_code == 422  # grassroots is the last level
    listed = client.get(f"/api/v1/unions?parent_id={tree['yc'].public_id}", headers=yc_admin).get_json()["data"]
    assert {u["name"] for u in listed} == {"兴庆区总工会", "金凤区总工会"}
    assert client.get(f"/api/v1/unions/{tree['gy'].public_id}", headers=yc_admin).status_code == 404
    assert client.get(f"/api/v1/unions/{tree['yc'].public_id}", headers=yc_admin).status_code == 200


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_full_width_and_other_script_numbers_neither_duplicate_nor_crash(client, tree, yc_admin):
    id_number, phone = f.unique_id_number(), "13912340000"
    first = new_member(client, yc_admin, tree["yc_base"], id_number=id_number, phone=phone)
    assert first.status_code == 201
    wide = new_member(client, yc_admin, tree["yc_base"], id_number=full_width(id_number), phone=full_width(phone))
    assert wide.status_code == 409 and wide.get_json()["error"] == "duplicate_member"
    arabic = "".join(chr(0x0660 + int(c)) if c.isdigit() else c for c in id_number)
    resp = new_member(client, yc_admin, tree["yc_base"], id_number=arabic)
    assert resp.status_code == 422 and resp.get_json()["error"] == "invalid_id_number"
    resp = new_member(client, yc_admin, tree["yc_base"], id_number="²" + id_number[1:])
    assert resp.status_code == 422 and resp.get_json()["error"] == "invalid_id_number"
    found = client.get(f"/api/v1/members?id_number={full_width(id_number)}", headers=yc_admin).get_json()["data"]
    assert [m["id"] for m in found] == [first.get_json()["id"]]
    found = client.get(f"/api/v1/members?phone={full_width(phone)}", headers=yc_admin).get_json()["data"]
    assert [m["id"] for m in found] == [first.get_json()["id"]]


def test_two_federation_roots_cannot_share_a_name(client, session, platform):
    first = client.post("/api/v1/unions", headers=platform, json={"name": "根工会", "parent_id": None, "region": "640000"})
    second = client.post("/api/v1/unions", headers=platform, json={"name": "根工会", "parent_id": None, "region": "640000"})
    assert first.status_code == 201 and second.status_code == 409
