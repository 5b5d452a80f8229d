"""Every API endpoint so far x every role, and own versus another tenant's object: the exact status."""

import io

import pytest

from core.models import Role
from tests import factories as f

ALL_ROLES = list(Role)
ANON = "anonymous"


@pytest.fixture
def world(session, cipher):
    tree = f.org_tree(session)
    own_member = f.member(session, cipher, tree["yc_base"], "本人")
    other_member = f.member(session, cipher, tree["gy_base"], "他人")
    users = {}
    for role in ALL_ROLES:
        kwargs = {}
        if role == Role.UNION_ADMIN:
            kwargs["union"] = tree["yc"]
        if role == Role.MEMBER:
            kwargs["member"] = own_member
        if role in (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER):
            kwargs["merchant_id"] = 1
        users[role] = f.user(session, role, **kwargs)
    headers = {role: f.bearer(session, u) for role, u in users.items()}
    headers[ANON] = {}
    return {"tree": tree, "own": own_member, "other": other_member, "headers": headers}


def csv_upload(world):
    data = f"name,id_number,phone,union_id\n张,{f.unique_id_number()},13900000000,{world['tree']['yc_base'].public_id}\n"
    return {"data": {"file": (io.BytesIO(data.encode()), "m.csv")}, "content_type": "multipart/form-data"}


ADMIN_OK = {Role.UNION_ADMIN}
READ_OK = {Role.UNION_ADMIN, Role.AUDITOR}

# (name, method, url builder, request kwargs builder, roles allowed, success status)
ENDPOINTS = [
    ("me", "get", lambda w: "/api/v1/me", None, set(Role), 200),
    ("audit events", "get", lambda w: "/api/v1/audit-events", None, {Role.AUDITOR}, 200),
    ("create union", "post", lambda w: "/api/v1/unions",
     lambda w: {"json": {"name": "新", "parent_id": w["tree"]["yc"].public_id, "region": "640100"}}, ADMIN_OK, 201),
    ("list unions", "get", lambda w: "/api/v1/unions", None, READ_OK, 200),
    ("get union", "get", lambda w: f"/api/v1/unions/{w['tree']['yc'].public_id}", None, READ_OK, 200),
    ("create member", "post", lambda w: "/api/v1/members",
     lambda w: {"json": {"name": "新", "id_number": f.unique_id_number(), "phone": "13900000000",
                         "union_id": w["tree"]["yc_base"].public_id}}, ADMIN_OK, 201),
    ("list members", "get", lambda w: "/api/v1/members", None, READ_OK, 200),
    ("get member", "get", lambda w: f"/api/v1/members/{w['own'].public_id}", None, READ_OK | {Role.MEMBER}, 200),
    ("update member", "patch", lambda w: f"/api/v1/members/{w['own'].public_id}",
     lambda w: {"json": {"name": "改名"}}, ADMIN_OK, 200),
    ("set hardship", "put", lambda w: f"/api/v1/members/{w['own'].public_id}/hardship",
     lambda w: {"json": {"level": 1, "reason": "r", "valid_until": "2099-01-01"}}, ADMIN_OK, 200),
    ("clear hardship", "delete", lambda w: f"/api/v1/members/{w['own'].public_id}/hardship", None, ADMIN_OK, 404),
    ("import members", "post", lambda w: "/api/v1/members/imports", csv_upload, ADMIN_OK, 201),
    ("revoke current token", "delete", lambda w: "/api/v1/auth/tokens/current", None, set(Role), 204),
    ("revoke a token", "delete", lambda w: "/api/v1/auth/tokens/tok_none", None, set(Role), 404),
]


@pytest.mark.parametrize("role", ALL_ROLES + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_role_matrix(client, world, endpoint, role):
    _name, method, url, kwargs, allowed, ok = endpoint
    resp = getattr(client, method)(url(world), headers=world["headers"][role], **(kwargs(world) if kwargs else {}))
    expected = 401 if role == ANON else ok if role in allowed else 403
    assert resp.status_code == expected, resp.get_data(as_text=True)
    assert resp.status_code < 500


# Another tenant's object: the scoped admin and the member get 404, never 403 or the object.
CROSS_TENANT = [
    ("get", lambda w: f"/api/v1/members/{w['other'].public_id}", None),
    ("patch", lambda w: f"/api/v1/members/{w['other'].public_id}", {"json": {"name": "x"}}),
    ("put", lambda w: f"/api/v1/members/{w['other'].public_id}/hardship",
     {"json": {"level": 1, "reason": "r", "valid_until": "2099-01-01"}}),
    ("delete", lambda w: f"/api/v1/members/{w['other'].public_id}/hardship", None),
    ("get", lambda w: f"/api/v1/unions/{w['tree']['gy'].public_id}", None),
    ("get", lambda w: f"/api/v1/members?union_id={w['tree']['gy'].public_id}", None),
    ("get", lambda w: f"/api/v1/unions?parent_id={w['tree']['gy'].public_id}", None),
]


@pytest.mark.parametrize("method, url, kwargs", CROSS_TENANT)
def test_scoped_admin_gets_404_for_another_unions_objects(client, world, method, url, kwargs):
    resp = getattr(client, method)(url(world), headers=world["headers"][Role.UNION_ADMIN], **(kwargs or {}))
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"


def test_member_gets_404_for_another_members_record(client, world):
    resp = client.get(f"/api/v1/members/{world['other'].public_id}", headers=world["headers"][Role.MEMBER])
    assert resp.status_code == 404


def test_every_api_endpoint_declares_who_may_call_it(app):
    undeclared = []
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule == "/healthz"):
            continue
        view = app.view_functions[rule.endpoint]
        if not hasattr(view, "allowed_roles") and rule.endpoint != "api-docs.openapi_json":
            undeclared.append(rule.rule)
    assert undeclared == []


def test_every_endpoint_in_the_matrix_is_covered(app):
    """A new endpoint must be added to the matrix above."""
    covered = {"/api/v1/me", "/api/v1/audit-events", "/api/v1/unions", "/api/v1/unions/<union_id>",
               "/api/v1/members", "/api/v1/members/<member_id>", "/api/v1/members/<member_id>/hardship",
               "/api/v1/members/imports", "/api/v1/auth/tokens/current", "/api/v1/auth/tokens/<token_id>",
               # public or checked elsewhere
               "/api/v1/auth/tokens", "/api/v1/openapi.json",
               "/api/v1/members/imports/<import_id>", "/api/v1/members/imports/<import_id>/rows"}
    api_rules = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/")}
    assert api_rules - covered == set()
