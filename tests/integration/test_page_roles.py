"""Every console page x every role: who sees it, who is refused, and another subtree's objects; the finance
pages' changes x every role."""

import io
import re

import pytest

from cards import service as cards
from core.auth import Actor
from core.models import MERCHANT_ROLES, Role
from members import service
from payments.disbursement import service as disbursement
from payments.disbursement.models import ProgramKind, PursePolicy
from tests import factories as f

ANON = "anonymous"
READERS = {Role.UNION_ADMIN, Role.AUDITOR}
ADMINS = {Role.UNION_ADMIN}
MEMBERS = {Role.MEMBER}
FINANCE = {Role.FINANCE_MAKER, Role.FINANCE_APPROVER}
FINANCE_READERS = FINANCE | {Role.AUDITOR}
PAGES = [
    ("search", lambda w: "/console/members/", READERS),
    ("member", lambda w: f"/console/members/{w['member'].public_id}", READERS),
    ("import form", lambda w: "/console/members/import", ADMINS),
    ("import status", lambda w: f"/console/members/imports/{w['import'].public_id}", ADMINS),
    ("import progress", lambda w: f"/console/members/imports/{w['import'].public_id}/progress", ADMINS),
    ("card issuance", lambda w: "/console/cards/issuance", READERS),
    ("card issuance preview", lambda w: f"/console/cards/issuance?union_id={w['tree']['yc_base'].public_id}", READERS),
    ("card issuance run", lambda w: f"/console/cards/issuance/{w['run'].public_id}", READERS),
    ("card issuance progress", lambda w: f"/console/cards/issuance/{w['run'].public_id}/progress", READERS),
    ("my card", lambda w: "/card/", MEMBERS),
    ("finance programs", lambda w: "/finance/programs/", FINANCE_READERS),
    ("finance program", lambda w: f"/finance/programs/{w['program'].public_id}", FINANCE_READERS),
    ("finance new batch", lambda w: f"/finance/disbursements/new?program_id={w['program'].public_id}", FINANCE),
    ("finance batch", lambda w: f"/finance/disbursements/{w['batch'].public_id}", FINANCE_READERS),
    ("finance batch progress", lambda w: f"/finance/disbursements/{w['batch'].public_id}/progress", FINANCE_READERS),
    ("finance batch result", lambda w: f"/finance/disbursements/{w['batch'].public_id}/result.csv", FINANCE_READERS),
]
# The pages that show one object: a scoped admin of another subtree must not learn it exists.
OBJECT_PAGES = [page for page in PAGES if page[0] in {"member", "import status", "import progress",
                                                      "card issuance preview", "card issuance run",
                                                      "card issuance progress"}]
# The console's card actions: union admins only (auditors read), by POST with the CSRF token.
CARD_ACTIONS = ["freeze", "report-lost", "cancel", "replace"]


def sign_in(client, username):
    page = client.get("/login")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.get_data(as_text=True)).group(1)
    resp = client.post("/login", data={"username": username, "password": f.PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)


@pytest.fixture
def world(session, cipher, app):
    tree = f.org_tree(session)
    member = f.member(session, cipher, tree["yc_base"], "页面测试")
    yc_admin = f.user(session, Role.UNION_ADMIN, union=tree["yc"])
    csv_text = f"name,id_number,phone,union_id\n甲,{f.unique_id_number()},13900000001,{tree['yc_base'].public_id}\n"
    imp = service.start_import(session, Actor.of(yc_admin), io.BytesIO(csv_text.encode()), "m.csv",
                               app.config["UPLOAD_FOLDER"], 100)
    run = cards.start_bulk_issuance(session, Actor.of(yc_admin), tree["yc_base"].public_id)
    card = cards.issue_card(session, cipher, Actor.of(yc_admin), member.public_id, prefix="880064")
    maker = Actor.of(f.user(session, Role.FINANCE_MAKER))
    program = disbursement.create_program(session, maker, name="送温暖", kind=ProgramKind.HARDSHIP_AID,
                                          purse=PursePolicy.GENERAL, union_id=tree["yc"].public_id)
    funding = disbursement.create_funding(session, maker, program.public_id, amount=10_000, currency="CNY",
                                          reference="BANK-1")
    batch = disbursement.create_batch_from_rule(session, maker, program.public_id, disbursement.Rule(amount=100),
                                                max_lines=100)
    return {"tree": tree, "member": member, "import": imp, "yc_admin": yc_admin, "run": run, "card": card,
            "program": program, "funding": funding, "batch": batch}


def user_for(session, cipher, world, role):
    if role == Role.UNION_ADMIN:
        return world["yc_admin"]
    if role == Role.MEMBER:
        return f.user(session, role, member=world["member"])
    if role in MERCHANT_ROLES:
        return f.user(session, role, merchant_id=f.merchant(session, cipher).id)
    return f.user(session, role)


@pytest.mark.parametrize("role", list(Role) + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("page", PAGES, ids=[p[0] for p in PAGES])
def test_page_matrix(client, session, cipher, world, page, role):
    _name, url, allowed = page
    if role != ANON:
        sign_in(client, user_for(session, cipher, world, role).username)
    resp = client.get(url(world))
    if role == ANON:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
    elif role in allowed:
        assert resp.status_code == 200, resp.get_data(as_text=True)
    else:
        assert resp.status_code == 403 and resp.mimetype == "text/html"


@pytest.mark.parametrize("page", OBJECT_PAGES, ids=[p[0] for p in OBJECT_PAGES])
def test_a_scoped_admin_gets_404_for_another_subtrees_objects(client, session, world, page):
    _name, url, _allowed = page
    sign_in(client, f.user(session, Role.UNION_ADMIN, union=world["tree"]["gy"]).username)
    resp = client.get(url(world))
    assert resp.status_code == 404
    assert world["member"].name not in resp.get_data(as_text=True)


def test_a_platform_admin_sees_every_subtree(client, session, world):
    sign_in(client, f.user(session, Role.UNION_ADMIN).username)
    for _name, url, allowed in PAGES:
        if Role.UNION_ADMIN in allowed:
            assert client.get(url(world)).status_code == 200


def csrf_token(client) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)


@pytest.mark.parametrize("role", list(Role) + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("action", CARD_ACTIONS)
def test_card_actions_matrix(client, session, cipher, world, action, role):
    if role != ANON:
        sign_in(client, user_for(session, cipher, world, role).username)
    card = world["card"]
    resp = client.post(f"/console/cards/{card.public_id}/{action}", data={"csrf_token": csrf_token(client)})
    if role == ANON:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
    elif role == Role.UNION_ADMIN:
        assert resp.status_code == 302 and resp.headers["Location"].endswith(world["member"].public_id)
    else:
        assert resp.status_code == 403 and resp.mimetype == "text/html"
    issue = client.post("/console/cards/issue", data={"member_id": world["member"].public_id,
                                                      "csrf_token": csrf_token(client)})
    assert issue.status_code == {ANON: 302, Role.UNION_ADMIN: 302}.get(role, 403)


@pytest.mark.parametrize("action", CARD_ACTIONS)
def test_a_scoped_admin_gets_404_for_another_subtrees_cards(client, session, world, action):
    sign_in(client, f.user(session, Role.UNION_ADMIN, union=world["tree"]["gy"]).username)
    card = world["card"]
    resp = client.post(f"/console/cards/{card.public_id}/{action}", data={"csrf_token": csrf_token(client)})
    assert resp.status_code == 404 and card.number_masked not in resp.get_data(as_text=True)
    assert client.post("/console/cards/issue", data={"member_id": world["member"].public_id,
                                                     "csrf_token": csrf_token(client)}).status_code == 404


# The finance pages' changes: makers and approvers act, approvers alone approve, everyone else is refused.
FINANCE_ACTIONS = [
    ("create program", lambda w: "/finance/programs/", FINANCE,
     lambda w: {"name": "金秋助学", "kind": "student_aid", "purse": "general", "union_id": w["tree"]["yc"].public_id}),
    ("enter funding", lambda w: f"/finance/programs/{w['program'].public_id}/fundings", FINANCE,
     lambda w: {"amount": "100", "reference": "BANK-2"}),
    ("approve funding",
     lambda w: f"/finance/programs/{w['program'].public_id}/fundings/{w['funding'].public_id}/approve",
     {Role.FINANCE_APPROVER}, lambda w: {}),
    ("reject funding",
     lambda w: f"/finance/programs/{w['program'].public_id}/fundings/{w['funding'].public_id}/reject",
     {Role.FINANCE_APPROVER}, lambda w: {}),
    ("batch by rule", lambda w: "/finance/disbursements/new", FINANCE,
     lambda w: {"source": "rule", "program_id": w["program"].public_id, "amount": "1"}),
    ("approve batch", lambda w: f"/finance/disbursements/{w['batch'].public_id}/approve", {Role.FINANCE_APPROVER},
     lambda w: {}),
    ("cancel batch", lambda w: f"/finance/disbursements/{w['batch'].public_id}/cancel", FINANCE, lambda w: {}),
    ("resume batch", lambda w: f"/finance/disbursements/{w['batch'].public_id}/resume", FINANCE, lambda w: {}),
]


@pytest.mark.parametrize("role", list(Role) + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("action", FINANCE_ACTIONS, ids=[a[0] for a in FINANCE_ACTIONS])
def test_finance_actions_matrix(client, session, cipher, world, action, role):
    _name, url, allowed, data = action
    if role != ANON:
        sign_in(client, user_for(session, cipher, world, role).username)
    resp = client.post(url(world), data={"csrf_token": csrf_token(client), **data(world)})
    if role == ANON:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
    elif role in allowed:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/finance/"), resp.get_data(as_text=True)
    else:
        assert resp.status_code == 403 and resp.mimetype == "text/html"
