"""Every API endpoint so far x every role, and own versus another tenant's object: the exact status."""

import datetime as dt
import hashlib
import io

import pytest
from sqlalchemy import select

from benefits import service as benefits
from cards import service as cards
from payments import ledger
from payments.checkout import service as checkout
from payments.disbursement import service as disbursement
from payments.disbursement.models import ProgramKind, PursePolicy
from core.auth import Actor
from core.i18n import business_date
from core.ids import new_public_id
from payments.topups.models import TopUp
from core.models import Role
from merchants import service
from merchants.models import MerchantCategory
from tests import factories as f

ALL_ROLES = list(Role)
ANON = "anonymous"


@pytest.fixture
def world(session, cipher, app):
    tree = f.org_tree(session)
    own_member = f.member(session, cipher, tree["yc_base"], "本人")
    other_member = f.member(session, cipher, tree["gy_base"], "他人")
    shop = f.merchant(session, cipher, "本店")
    other_shop = f.merchant(session, cipher, "别家")
    users = f.user_per_role(session, union=tree["yc"], member=own_member, merchant_id=shop.id)
    headers = {role: f.bearer(session, u) for role, u in users.items()}
    headers[ANON] = {}
    draft = complete_application(session, cipher, app, users[Role.APPLICANT])
    other_applicant = f.user(session, Role.APPLICANT)
    submitted = complete_application(session, cipher, app, other_applicant)
    service.submit_application(session, Actor.of(other_applicant), submitted.public_id)
    own_card = cards.issue_card(session, cipher, f.PLATFORM, own_member.public_id, prefix="880064")
    cards.change_state(session, Actor.of(users[Role.MEMBER]), own_card.public_id, "activate")
    other_card = cards.issue_card(session, cipher, f.PLATFORM, other_member.public_id, prefix="880064")
    fresh = f.member(session, cipher, tree["yc_base"], "新人")
    top_up = TopUp(public_id=new_public_id("top"), member_id=own_member.id, card_id=own_card.id, amount=1000,
                   payment_intent_id=f"pi_matrix_{f.next_id()}")
    other_top_up = TopUp(public_id=new_public_id("top"), member_id=other_member.id, card_id=other_card.id,
                         amount=1000, payment_intent_id=f"pi_matrix_{f.next_id()}")
    session.add_all([top_up, other_top_up])
    session.commit()
    run = cards.start_bulk_issuance(session, f.PLATFORM, tree["xq"].public_id)
    other_run = cards.start_bulk_issuance(session, f.PLATFORM, tree["gy"].public_id)
    maker = Actor.of(users[Role.FINANCE_MAKER])
    program = disbursement.create_program(session, maker, name="送温暖", kind=ProgramKind.HARDSHIP_AID,
                                          purse=PursePolicy.GENERAL, union_id=tree["fed"].public_id)
    funding = disbursement.create_funding(session, maker, program.public_id, amount=1000, currency="CNY",
                                          reference="r")
    batch = disbursement.create_batch_from_rule(session, maker, program.public_id, disbursement.Rule(amount=100),
                                                max_lines=1000)
    offers = offer_world(session, tree, users, other_shop)
    payments = payment_world(session, app, users, own_card, shop, other_shop)
    payments.update(settlement_world(session, shop, other_shop))
    return {**offers, **payments, "tree": tree, "own": own_member, "other": other_member, "headers": headers, "shop": shop,
            "program": program, "funding": funding, "batch": batch, "top_up": top_up, "other_top_up": other_top_up,
            "other_shop": other_shop, "draft": draft, "doc": draft.documents[0], "submitted": submitted,
            "cashier": users[Role.MERCHANT_CASHIER], "card": own_card, "other_card": other_card, "fresh": fresh,
            "run": run, "other_run": other_run}


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def payment_world(session, app, users, card, shop, other_shop):
    """A payment of the own member's card at the own shop and one at another shop, which spend all that was
    put on it (so the card can still be cancelled)."""
    fund_account = "test:matrix-funding"
    ledger.get_or_create_account(session, fund_account, normal_side="debit", allow_negative=True)
    ledger.post(session, kind="test_credit", idempotency_key=f"matrix:{card.public_id}",
                entries=[ledger.debit(fund_account, 2_000), ledger.credit(cards.general_account(card.public_id),
                                                                          2_000)])
    session.commit()
    key = hashlib.sha256(b"payment-codes:" + str(app.config["SECRET_KEY"]).encode()).digest()
    codes = cards.PaymentCodes(app.extensions["kv"], key, ttl=60, per_minute=100)
    member = Actor.of(users[Role.MEMBER])
    out = {}
    for name, where, till in (("payment", shop, users[Role.MERCHANT_CASHIER]),
                              ("other_payment", other_shop,
                               f.user(session, Role.MERCHANT_CASHIER, merchant_id=other_shop.id))):
        code = codes.issue(session, member, card.public_id).code
        out[name], _ = checkout.pay(session, Actor.of(till), checkout.PayRequest(
            store_id=where.stores[0].public_id, amount=1_000, payment_code=code), codes=codes,
            pins=cards.PinGuard(app.extensions["kv"], max_failures=5, lockout=60), max_amount=10**6)
    left = ledger.balance(session, cards.general_account(card.public_id)).posted  # what offers took off
    if left:
        ledger.post(session, kind="test_debit", idempotency_key=f"matrix:{card.public_id}:back",
                    entries=[ledger.debit(cards.general_account(card.public_id), left),
                             ledger.credit(fund_account, left)])
        session.commit()
    return out


def settlement_world(session, shop, other_shop):
    """Today's payments settled (as if tomorrow had come): a statement and a payout for each shop."""
    from payments.payouts.models import Payout
    from payments.settlement import service as settlement
    from payments.settlement.models import Settlement

    today = business_date()
    settlement.settle_day(session, Actor(None, "matrix", None), today, terms=settlement.Terms(),
                          now=settlement.utcnow() + dt.timedelta(days=1))
    out = {}
    for prefix, merchant in (("", shop), ("other_", other_shop)):
        stl = session.scalar(select(Settlement).where(Settlement.merchant_id == merchant.id))
        out[f"{prefix}settlement"] = stl
        out[f"{prefix}payout"] = session.scalar(select(Payout).where(Payout.settlement_id == stl.id))
    return out


def offer_world(session, tree, users, other_shop):
    """Offers of the scoped admin's subtree and of another, and of the own merchant and another."""
    admin = Actor.of(users[Role.UNION_ADMIN])
    gy_admin = Actor(None, "gy-admin", Role.UNION_ADMIN, union_id=tree["gy"].id)
    owner = Actor.of(users[Role.MERCHANT_OWNER])
    other_owner = Actor.of(f.user(session, Role.MERCHANT_OWNER, merchant_id=other_shop.id))
    proposal = f.offer(session, owner, category=None, title="本店提议")
    benefits.propose(session, owner, proposal.public_id)
    gy_proposal = f.offer(session, other_owner, category=None, title="别家提议")
    benefits.propose(session, other_owner, gy_proposal.public_id)
    benefits.update_offer(session, gy_admin, gy_proposal.public_id, {"title": "别家提议(固原)"})
    return {"admin_draft": f.offer(session, admin), "admin_published": f.offer(session, admin, publish=True),
            "owner_draft": f.offer(session, owner, category=None), "proposal": proposal,
            "other_shop_draft": f.offer(session, other_owner, category=None),
            "gy_draft": f.offer(session, gy_admin), "gy_published": f.offer(session, gy_admin, publish=True),
            "gy_proposal": gy_proposal}


def complete_application(session, cipher, app, applicant):
    """Create a draft that is complete enough to submit, with a licence uploaded."""
    actor = Actor.of(applicant)
    draft = service.create_application(session, cipher, actor, service.ApplicationInput(
        name=f"申请商户{applicant.id}", uscc=f.uscc(), legal_representative="李经理", contact_phone="13900002222",
        category=MerchantCategory.DINING, region="640104", address="银川市兴庆区", stores=[{"name": "总店"}],
        settlement={"method": "bank", "bank_name": "宁夏银行", "account_name": "申请商户",
                    "account_number": "6222020200114455"}))
    service.add_document(session, actor, draft.public_id, io.BytesIO(PNG), "licence.png", app.config["UPLOAD_FOLDER"])
    session.refresh(draft)
    return draft


def csv_upload(world):
    data = f"name,id_number,phone,union_id\n张,{f.unique_id_number()},13900000000,{world['tree']['yc_base'].public_id}\n"
    return {"data": {"file": (io.BytesIO(data.encode()), "m.csv")}, "content_type": "multipart/form-data"}


ADMIN_OK = {Role.UNION_ADMIN}
READ_OK = {Role.UNION_ADMIN, Role.AUDITOR}
STAFF = {Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER}
MERCHANT_ADMINS = {Role.MERCHANT_REVIEWER, Role.UNION_ADMIN}
REVIEWER = {Role.MERCHANT_REVIEWER}
APPLICANT = {Role.APPLICANT}
MEMBER = {Role.MEMBER}
FINANCE = {Role.FINANCE_MAKER, Role.FINANCE_APPROVER}
FINANCE_READERS = FINANCE | {Role.AUDITOR}
MERCHANT_READERS = {Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER}
CARD_READERS = {Role.MEMBER, Role.UNION_ADMIN, Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR}


def app_url(key, suffix=""):
    return lambda w: f"/api/v1/merchant-applications/{w[key].public_id}{suffix}"


def shop_url(suffix=""):
    return lambda w: f"/api/v1/merchants/{w['shop'].public_id}{suffix}"


def card_url(suffix=""):
    return lambda w: f"/api/v1/cards/{w['card'].public_id}{suffix}"


def offer_url(key, suffix=""):
    return lambda w: f"/api/v1/offers/{w[key].public_id}{suffix}"


def upload_png(w):
    return {"data": {"file": (io.BytesIO(PNG), "licence.png")}, "content_type": "multipart/form-data"}

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
    ("create application", "post", lambda w: "/api/v1/merchant-applications",
     lambda w: {"json": {"name": "新商户"}}, APPLICANT, 201),
    ("list applications", "get", lambda w: "/api/v1/merchant-applications", None,
     APPLICANT | REVIEWER | {Role.MERCHANT_OWNER}, 200),
    ("get application", "get", app_url("draft"), None, APPLICANT | REVIEWER | {Role.MERCHANT_OWNER},
     {Role.MERCHANT_OWNER: 404}),
    ("update application", "patch", app_url("draft"), lambda w: {"json": {"address": "新地址"}}, APPLICANT, 200),
    ("upload licence", "post", app_url("draft", "/documents"), upload_png, APPLICANT, 201),
    ("download licence", "get", lambda w: f"/api/v1/merchant-applications/{w['draft'].public_id}/documents/"
     f"{w['doc'].public_id}", None, APPLICANT | REVIEWER | {Role.MERCHANT_OWNER}, {Role.MERCHANT_OWNER: 404}),
    ("submit application", "post", app_url("draft", "/submit"), lambda w: {"json": {}}, APPLICANT, 200),
    ("start review", "post", app_url("submitted", "/review"), lambda w: {"json": {}}, REVIEWER, 200),
    ("approve", "post", app_url("submitted", "/approve"), lambda w: {"json": {"comment": "ok"}}, REVIEWER, 200),
    ("reject", "post", app_url("submitted", "/reject"), lambda w: {"json": {"comment": "no"}}, REVIEWER, 200),
    ("request changes", "post", app_url("submitted", "/request-changes"), lambda w: {"json": {"comment": "fix"}},
     REVIEWER, 200),
    ("comment", "post", app_url("draft", "/comments"), lambda w: {"json": {"comment": "hi"}}, APPLICANT | REVIEWER,
     201),
    ("merchant account", "get", shop_url("/account"), None, STAFF | MERCHANT_ADMINS | {Role.AUDITOR}, 200),
    ("suspend merchant", "post", shop_url("/suspend"), lambda w: {"json": {"reason": "r"}}, MERCHANT_ADMINS, 200),
    ("terminate merchant", "post", shop_url("/terminate"), lambda w: {"json": {"reason": "r"}}, MERCHANT_ADMINS, 200),
    ("reinstate merchant", "post", shop_url("/reinstate"), lambda w: {"json": {"reason": "r"}}, MERCHANT_ADMINS,
     409),
    ("add store", "post", shop_url("/stores"), lambda w: {"json": {"name": "新店"}}, {Role.MERCHANT_OWNER}, 201),
    ("list stores", "get", shop_url("/stores"), None, STAFF | MERCHANT_ADMINS | {Role.AUDITOR}, 200),
    ("update store", "patch", lambda w: f"/api/v1/stores/{w['shop'].stores[0].public_id}",
     lambda w: {"json": {"opening_hours": "9:00-21:00"}}, {Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER}, 200),
    ("store qr svg", "get", lambda w: f"/api/v1/stores/{w['shop'].stores[0].public_id}/qr.svg", None,
     STAFF | MERCHANT_ADMINS, 200),
    ("store qr png", "get", lambda w: f"/api/v1/stores/{w['shop'].stores[0].public_id}/qr.png", None,
     STAFF | MERCHANT_ADMINS, 200),
    ("store qr png emvco", "get",
     lambda w: f"/api/v1/stores/{w['shop'].stores[0].public_id}/qr.png?variant=emvco", None,
     STAFF | MERCHANT_ADMINS, 200),
    ("store emvco payload", "get", lambda w: f"/api/v1/stores/{w['shop'].stores[0].public_id}/emvco", None,
     STAFF | MERCHANT_ADMINS, 200),
    ("add staff", "post", shop_url("/staff"),
     lambda w: {"json": {"username": f"cashier-{f.next_id()}", "password": "a-long-password", "role": "cashier"}},
     {Role.MERCHANT_OWNER}, 201),
    ("list staff", "get", shop_url("/staff"), None,
     {Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.AUDITOR} | MERCHANT_ADMINS, 200),
    ("remove staff", "delete", lambda w: f"/api/v1/merchants/{w['shop'].public_id}/staff/{w['cashier'].public_id}",
     None, {Role.MERCHANT_OWNER}, 204),
    ("stripe onboarding link", "post", shop_url("/stripe/onboarding-link"), lambda w: {"json": {}},
     {Role.MERCHANT_OWNER}, 422),
    ("agreement renewals", "get", lambda w: "/api/v1/agreements/renewals", None,
     MERCHANT_ADMINS | {Role.AUDITOR}, 200),
    ("issue card", "post", lambda w: "/api/v1/cards", lambda w: {"json": {"member_id": w["fresh"].public_id}},
     ADMIN_OK, 201),
    ("list cards", "get", lambda w: "/api/v1/cards", None, CARD_READERS, 200),
    ("get card", "get", card_url(), None, CARD_READERS, 200),
    ("card number", "get", card_url("/number"), None, MEMBER, 200),
    ("activate card", "post", card_url("/activate"), None, MEMBER | ADMIN_OK, 409),
    ("freeze card", "post", card_url("/freeze"), None, MEMBER | ADMIN_OK, 200),
    ("unfreeze card", "post", card_url("/unfreeze"), None, MEMBER | ADMIN_OK, 409),
    ("report card lost", "post", card_url("/report-lost"), None, MEMBER | ADMIN_OK, 200),
    ("replace card", "post", card_url("/replace"), None, MEMBER | ADMIN_OK, 201),
    ("cancel card", "post", card_url("/cancel"), None, ADMIN_OK, 200),
    ("set pin", "put", card_url("/pin"), lambda w: {"json": {"pin": "583920"}}, MEMBER, 204),
    ("card balances", "get", card_url("/balances"), None, CARD_READERS, 200),
    ("card transactions", "get", card_url("/transactions"), None, CARD_READERS, 200),
    ("payment code", "post", card_url("/payment-codes"), None, MEMBER, 201),
    ("payment code image", "get", card_url("/payment-codes/881234567890123452.svg"), None, MEMBER, 404),
    ("start top-up", "post", card_url("/top-ups"), lambda w: {"json": {"amount": 1}}, MEMBER, 422),
    ("get top-up", "get", lambda w: f"/api/v1/top-ups/{w['top_up'].public_id}", None,
     MEMBER | {Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR}, 200),
    ("bulk issuance", "post", lambda w: "/api/v1/card-issuances",
     lambda w: {"json": {"union_id": w["tree"]["yc_base"].public_id}}, ADMIN_OK, 201),
    ("get bulk issuance", "get", lambda w: f"/api/v1/card-issuances/{w['run'].public_id}", None, ADMIN_OK, 200),
    ("resume bulk issuance", "post", lambda w: f"/api/v1/card-issuances/{w['run'].public_id}/resume", None,
     ADMIN_OK, 409),
    ("create program", "post", lambda w: "/api/v1/programs",
     lambda w: {"json": {"name": "金秋助学", "kind": "student_aid", "purse": "general",
                         "union_id": w["tree"]["fed"].public_id}}, FINANCE, 201),
    ("list programs", "get", lambda w: "/api/v1/programs", None, FINANCE_READERS, 200),
    ("get program", "get", lambda w: f"/api/v1/programs/{w['program'].public_id}", None, FINANCE_READERS, 200),
    ("enter funding", "post", lambda w: f"/api/v1/programs/{w['program'].public_id}/fundings",
     lambda w: {"json": {"amount": 100, "reference": "x"}}, FINANCE, 201),
    ("list fundings", "get", lambda w: f"/api/v1/programs/{w['program'].public_id}/fundings", None,
     FINANCE_READERS, 200),
    ("approve funding", "post", lambda w: f"/api/v1/fundings/{w['funding'].public_id}/approve", None,
     {Role.FINANCE_APPROVER}, 200),
    ("reject funding", "post", lambda w: f"/api/v1/fundings/{w['funding'].public_id}/reject", None,
     {Role.FINANCE_APPROVER}, 200),
    ("create batch", "post", lambda w: "/api/v1/disbursements",
     lambda w: {"json": {"program_id": w["program"].public_id, "rule": {"amount": 100}}}, FINANCE, 201),
    ("list batches", "get", lambda w: "/api/v1/disbursements", None, FINANCE_READERS, 200),
    ("get batch", "get", lambda w: f"/api/v1/disbursements/{w['batch'].public_id}", None, FINANCE_READERS, 200),
    ("batch lines", "get", lambda w: f"/api/v1/disbursements/{w['batch'].public_id}/lines", None, FINANCE_READERS,
     200),
    ("batch result", "get", lambda w: f"/api/v1/disbursements/{w['batch'].public_id}/result.csv", None,
     FINANCE_READERS, 200),
    ("approve batch", "post", lambda w: f"/api/v1/disbursements/{w['batch'].public_id}/approve", None,
     {Role.FINANCE_APPROVER}, 422),
    ("cancel batch", "post", lambda w: f"/api/v1/disbursements/{w['batch'].public_id}/cancel", None, FINANCE, 200),
    ("resume batch", "post", lambda w: f"/api/v1/disbursements/{w['batch'].public_id}/resume", None, FINANCE, 409),
    ("request clawback", "post", lambda w: f"/api/v1/disbursements/{w['batch'].public_id}/lines/1/clawbacks",
     lambda w: {"json": {"reason": "r"}}, FINANCE, 409),
    ("approve clawback", "post", lambda w: "/api/v1/clawbacks/clb_none/approve", None, {Role.FINANCE_APPROVER}, 404),
    ("create offer", "post", lambda w: "/api/v1/offers", lambda w: {"json": f.offer_terms()},
     {Role.UNION_ADMIN, Role.MERCHANT_OWNER}, 201),
    ("update offer", "patch", offer_url("admin_draft"), lambda w: {"json": {"title": "改"}},
     {Role.UNION_ADMIN, Role.MERCHANT_OWNER}, {Role.MERCHANT_OWNER: 404}),
    ("update own merchant's offer", "patch", offer_url("owner_draft"), lambda w: {"json": {"title": "改"}},
     {Role.UNION_ADMIN, Role.MERCHANT_OWNER}, {Role.UNION_ADMIN: 404}),
    ("propose offer", "post", offer_url("owner_draft", "/propose"), None, {Role.MERCHANT_OWNER}, 200),
    ("publish offer", "post", offer_url("admin_draft", "/publish"), None, ADMIN_OK, 200),
    ("publish unnarrowed proposal", "post", offer_url("proposal", "/publish"), None, ADMIN_OK, 422),
    ("reject offer", "post", offer_url("proposal", "/reject"), lambda w: {"json": {"comment": "no"}}, ADMIN_OK, 200),
    ("withdraw offer", "post", offer_url("admin_published", "/withdraw"), lambda w: {"json": {}}, ADMIN_OK, 200),
    ("pay at a till", "post", lambda w: "/api/v1/payments",
     lambda w: {"json": {"store_id": w["shop"].stores[0].public_id, "amount": 100,
                         "payment_code": "880000000000000000"}}, STAFF | MEMBER, {**dict.fromkeys(STAFF, 422),
                                                                                    Role.MEMBER: 403}),
    ("pay with the pin", "post", lambda w: "/api/v1/payments",
     lambda w: {"json": {"store_id": w["shop"].stores[0].public_id, "amount": 100, "card_id": w["card"].public_id,
                         "pin": "000000"}}, STAFF | MEMBER, {**dict.fromkeys(STAFF, 403), Role.MEMBER: 422}),
    ("get payment", "get", lambda w: f"/api/v1/payments/{w['payment'].public_id}", None,
     STAFF | MEMBER | FINANCE_READERS, 200),
    ("refund payment", "post", lambda w: f"/api/v1/payments/{w['payment'].public_id}/refunds",
     lambda w: {"json": {"amount": 100}}, STAFF | MEMBER, {Role.MERCHANT_CASHIER: 403, Role.MEMBER: 403}),
    ("settle a day", "post", lambda w: "/api/v1/settlements",
     lambda w: {"json": {"business_date": (dt.date.today() - dt.timedelta(days=3)).isoformat()}}, FINANCE, 201),
    ("list settlements", "get", lambda w: "/api/v1/settlements", None, FINANCE_READERS | MERCHANT_READERS, 200),
    ("get settlement", "get", lambda w: f"/api/v1/settlements/{w['settlement'].public_id}", None,
     FINANCE_READERS | MERCHANT_READERS, 200),
    ("list payouts", "get", lambda w: "/api/v1/payouts", None, FINANCE_READERS | MERCHANT_READERS, 200),
    ("get payout", "get", lambda w: f"/api/v1/payouts/{w['payout'].public_id}", None,
     FINANCE_READERS | MERCHANT_READERS, 200),
    ("approve payout", "post", lambda w: f"/api/v1/payouts/{w['payout'].public_id}/approve", None,
     {Role.FINANCE_APPROVER}, 409),
    ("resolve payout", "post", lambda w: f"/api/v1/payouts/{w['payout'].public_id}/resolve",
     lambda w: {"json": {"note": "checked"}}, FINANCE, 409),
    ("send payouts", "post", lambda w: "/api/v1/payouts/send", None, FINANCE, 200),
    ("make a bank file", "post", lambda w: "/api/v1/payout-bank-files", None, {Role.FINANCE_MAKER}, 422),
    ("list bank files", "get", lambda w: "/api/v1/payout-bank-files", None, FINANCE, 200),
    ("get bank file", "get", lambda w: "/api/v1/payout-bank-files/pbf_none", None, FINANCE, 404),
    ("download bank file", "get", lambda w: "/api/v1/payout-bank-files/pbf_none/file.csv", None, FINANCE, 404),
    ("bank answer", "post", lambda w: "/api/v1/payout-bank-files/pbf_none/statuses",
     lambda w: {"data": {"file": (io.BytesIO(b"reference,status,reason\n"), "a.csv")},
                "content_type": "multipart/form-data"}, FINANCE, 404),
    ("program report", "get", lambda w: "/api/v1/reports/programs", None, FINANCE_READERS, 200),
    ("merchant report", "get", lambda w: "/api/v1/reports/merchants", None, FINANCE_READERS | MERCHANT_READERS,
     200),
    ("import a statement", "post", lambda w: "/api/v1/reconciliations",
     lambda w: {"data": {"source": "bank", "file": (io.BytesIO(
         "date,reference,amount,currency,description\n2026-11-20,WIRE-1,100,CNY,x\n".encode()), "s.csv")},
                "content_type": "multipart/form-data"}, FINANCE, 201),
    ("list reconciliations", "get", lambda w: "/api/v1/reconciliations", None, FINANCE_READERS, 200),
    ("get reconciliation", "get", lambda w: "/api/v1/reconciliations/rec_none", None, FINANCE_READERS, 404),
    ("resolve a line", "post", lambda w: "/api/v1/reconciliations/rec_none/lines/1/resolve",
     lambda w: {"json": {"kind": "note", "note": "checked"}}, FINANCE, 404),
    ("export reconciliation", "get", lambda w: "/api/v1/reconciliations/rec_none/export.csv", None,
     FINANCE_READERS, 404),
    ("list adjustments", "get", lambda w: "/api/v1/reconciliation-adjustments", None, FINANCE_READERS, 200),
    ("approve adjustment", "post", lambda w: "/api/v1/reconciliation-adjustments/adj_none/approve", None,
     {Role.FINANCE_APPROVER}, 404),
    ("reject adjustment", "post", lambda w: "/api/v1/reconciliation-adjustments/adj_none/reject", None,
     {Role.FINANCE_APPROVER}, 404),
    ("daily report", "get", lambda w: "/api/v1/reconciliations/report", None, FINANCE_READERS, 200),
    ("daily report export", "get", lambda w: "/api/v1/reconciliations/report.xlsx", None, FINANCE_READERS, 200),
    ("ledger verify", "get", lambda w: "/api/v1/ledger/verify", None,
     {Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR}, 200),
    ("trial balance", "get", lambda w: "/api/v1/ledger/trial-balance", None,
     {Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR}, 200),
    ("stats overview of the admin's own subtree", "get", lambda w: "/api/v1/stats/overview", None,
     FINANCE_READERS | ADMIN_OK, 200),
    ("stats overview of a union", "get", lambda w: f"/api/v1/stats/overview?union_id={w['tree']['xq'].public_id}",
     None, FINANCE_READERS | ADMIN_OK, 200),
    ("stats trends", "get", lambda w: "/api/v1/stats/trends", None, FINANCE_READERS | ADMIN_OK, 200),
]


@pytest.mark.parametrize("role", ALL_ROLES + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
def test_role_matrix(client, world, endpoint, role):
    _name, method, url, kwargs, allowed, ok = endpoint
    resp = getattr(client, method)(url(world), headers=world["headers"][role], **(kwargs(world) if kwargs else {}))
    if isinstance(ok, dict):  # most allowed roles succeed; the listed ones meet an object that is not theirs
        ok = ok.get(role, 201 if method == "post" else 200)
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
    ("post", lambda w: "/api/v1/cards", {"json": {"member_id": "mem_x"}}),
    ("get", lambda w: f"/api/v1/cards?member_id={w['other'].public_id}", None),
    ("get", lambda w: f"/api/v1/cards?union_id={w['tree']['gy'].public_id}", None),
    ("get", lambda w: f"/api/v1/cards/{w['other_card'].public_id}", None),
    ("get", lambda w: f"/api/v1/cards/{w['other_card'].public_id}/balances", None),
    ("get", lambda w: f"/api/v1/cards/{w['other_card'].public_id}/transactions", None),
    ("post", lambda w: f"/api/v1/cards/{w['other_card'].public_id}/activate", None),
    ("post", lambda w: f"/api/v1/cards/{w['other_card'].public_id}/freeze", None),
    ("post", lambda w: f"/api/v1/cards/{w['other_card'].public_id}/report-lost", None),
    ("post", lambda w: f"/api/v1/cards/{w['other_card'].public_id}/replace", None),
    ("post", lambda w: f"/api/v1/cards/{w['other_card'].public_id}/cancel", None),
    ("post", lambda w: "/api/v1/card-issuances", lambda w: {"json": {"union_id": w["tree"]["gy"].public_id}}),
    ("get", lambda w: f"/api/v1/card-issuances/{w['other_run'].public_id}", None),
    ("post", lambda w: f"/api/v1/card-issuances/{w['other_run'].public_id}/resume", None),
    ("get", offer_url("gy_draft"), None),
    ("patch", offer_url("gy_draft"), {"json": {"title": "x"}}),
    ("post", offer_url("gy_draft", "/publish"), None),
    ("post", offer_url("gy_published", "/withdraw"), {"json": {}}),
    ("patch", offer_url("gy_published"), {"json": {"title": "x"}}),
    ("get", offer_url("gy_proposal"), None),
    ("post", offer_url("gy_proposal", "/reject"), {"json": {"comment": "x"}}),
    ("post", offer_url("gy_proposal", "/publish"), None),
    ("get", lambda w: f"/api/v1/stats/overview?union_id={w['tree']['gy'].public_id}", None),
    ("get", lambda w: f"/api/v1/stats/overview?union_id={w['tree']['fed'].public_id}", None),
    ("get", lambda w: f"/api/v1/stats/trends?union_id={w['tree']['gy_base'].public_id}", None),
]


@pytest.mark.parametrize("method, url, kwargs", CROSS_TENANT)
def test_scoped_admin_gets_404_for_another_unions_objects(client, world, method, url, kwargs):
    kwargs = kwargs(world) if callable(kwargs) else kwargs
    resp = getattr(client, method)(url(world), headers=world["headers"][Role.UNION_ADMIN], **(kwargs or {}))
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"


OTHER_SHOP = [
    ("get", lambda w: f"/api/v1/merchants/{w['other_shop'].public_id}/account", None),
    ("get", lambda w: f"/api/v1/merchants/{w['other_shop'].public_id}/stores", None),
    ("get", lambda w: f"/api/v1/stores/{w['other_shop'].stores[0].public_id}/qr.svg", None),
    ("get", lambda w: f"/api/v1/stores/{w['other_shop'].stores[0].public_id}/qr.png?variant=emvco", None),
    ("get", lambda w: f"/api/v1/stores/{w['other_shop'].stores[0].public_id}/emvco", None),
    ("get", offer_url("other_shop_draft"), None),
    ("get", lambda w: f"/api/v1/payments/{w['other_payment'].public_id}", None),
]
OTHER_SHOP_OWNER_ONLY = [
    ("post", lambda w: f"/api/v1/merchants/{w['other_shop'].public_id}/stores", {"json": {"name": "x"}}),
    ("patch", lambda w: f"/api/v1/stores/{w['other_shop'].stores[0].public_id}", {"json": {"name": "x"}}),
    ("post", lambda w: f"/api/v1/merchants/{w['other_shop'].public_id}/staff",
     {"json": {"username": "intruder", "password": "a-long-password", "role": "cashier"}}),
    ("patch", offer_url("other_shop_draft"), {"json": {"title": "x"}}),
    ("post", offer_url("other_shop_draft", "/propose"), None),
    ("post", lambda w: f"/api/v1/payments/{w['other_payment'].public_id}/refunds", {"json": {"amount": 100}}),
]


@pytest.mark.parametrize("role", [Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER],
                         ids=lambda r: r.value)
@pytest.mark.parametrize("method, url, kwargs", OTHER_SHOP)
def test_merchant_staff_get_404_for_another_merchant(client, world, role, method, url, kwargs):
    resp = getattr(client, method)(url(world), headers=world["headers"][role], **(kwargs or {}))
    assert resp.status_code == 404, resp.get_json()


@pytest.mark.parametrize("role", [Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER], ids=lambda r: r.value)
@pytest.mark.parametrize("url", [
    lambda w: f"/api/v1/settlements/{w['other_settlement'].public_id}",
    lambda w: f"/api/v1/payouts/{w['other_payout'].public_id}",
    lambda w: f"/api/v1/reports/merchants?merchant_id={w['other_shop'].public_id}",
])
def test_a_merchant_gets_404_for_another_merchants_money(client, world, role, url):
    resp = client.get(url(world), headers=world["headers"][role])
    assert resp.status_code == 404, resp.get_json()


def test_a_merchant_lists_only_its_own_settlements_and_payouts(client, world):
    for path, own in (("/api/v1/settlements", "settlement"), ("/api/v1/payouts", "payout")):
        listed = client.get(path, headers=world["headers"][Role.MERCHANT_OWNER]).get_json()["data"]
        assert [x["id"] for x in listed] == [world[own].public_id]


def test_managers_get_404_for_another_merchants_staff(client, world):
    resp = client.get(f"/api/v1/merchants/{world['other_shop'].public_id}/staff",
                      headers=world["headers"][Role.MERCHANT_MANAGER])
    assert resp.status_code == 404


@pytest.mark.parametrize("method, url, kwargs", OTHER_SHOP_OWNER_ONLY)
def test_an_owner_cannot_change_another_merchant(client, world, method, url, kwargs):
    resp = getattr(client, method)(url(world), headers=world["headers"][Role.MERCHANT_OWNER], **(kwargs or {}))
    assert resp.status_code == 404, resp.get_json()
    assert [s.name for s in world["other_shop"].stores] == ["别家1号店"]


def test_an_applicant_gets_404_for_another_applicants_application(client, world):
    resp = client.get(f"/api/v1/merchant-applications/{world['submitted'].public_id}",
                      headers=world["headers"][Role.APPLICANT])
    assert resp.status_code == 404


def test_member_gets_404_for_another_members_record(client, world):
    resp = client.get(f"/api/v1/members/{world['other'].public_id}", headers=world["headers"][Role.MEMBER])
    assert resp.status_code == 404


OTHER_MEMBERS_CARD = ["", "/number", "/balances", "/transactions", "/activate", "/freeze", "/unfreeze",
                      "/report-lost", "/replace", "/pin", "/payment-codes", "/payment-codes/881234567890123452.png",
                      "/top-ups"]


@pytest.mark.parametrize("suffix", OTHER_MEMBERS_CARD)
def test_a_member_gets_404_for_another_members_card(client, world, suffix):
    url = f"/api/v1/cards/{world['other_card'].public_id}{suffix}"
    if suffix == "/pin":
        resp = client.put(url, json={"pin": "583920"}, headers=world["headers"][Role.MEMBER])
    elif suffix == "/top-ups":
        resp = client.post(url, json={"amount": 1000}, headers=world["headers"][Role.MEMBER])
    elif suffix in ("", "/number", "/balances", "/transactions") or suffix.endswith(".png"):
        resp = client.get(url, headers=world["headers"][Role.MEMBER])
    else:
        resp = client.post(url, headers=world["headers"][Role.MEMBER])
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"


def test_a_member_gets_404_for_another_members_top_up(client, world):
    resp = client.get(f"/api/v1/top-ups/{world['other_top_up'].public_id}", headers=world["headers"][Role.MEMBER])
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"


# Offers are read by anyone when published; drafts and proposals only by who may manage them.
OFFER_READERS = {
    "admin_published": set(Role) | {ANON},
    "admin_draft": {Role.UNION_ADMIN, Role.AUDITOR},
    "owner_draft": {Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.AUDITOR},
    "proposal": {Role.UNION_ADMIN, Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.AUDITOR},
    "gy_draft": {Role.AUDITOR},
    "other_shop_draft": {Role.AUDITOR},
}


@pytest.mark.parametrize("role", ALL_ROLES + [ANON], ids=lambda r: getattr(r, "value", r))
@pytest.mark.parametrize("key", list(OFFER_READERS))
def test_offer_reads_matrix(client, world, key, role):
    resp = client.get(f"/api/v1/offers/{world[key].public_id}", headers=world["headers"][role])
    assert resp.status_code == (200 if role in OFFER_READERS[key] else 404), resp.get_json()
    listed = client.get("/api/v1/offers?limit=200", headers=world["headers"][role])
    assert listed.status_code == 200
    assert (world[key].public_id in {o["id"] for o in listed.get_json()["data"]}) == (role in OFFER_READERS[key])


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
               "/api/v1/members/imports/<import_id>", "/api/v1/members/imports/<import_id>/rows",
               "/api/v1/members/imports/<import_id>/resume",
               "/api/v1/merchant-applications", "/api/v1/merchant-applications/<application_id>",
               "/api/v1/merchant-applications/<application_id>/documents",
               "/api/v1/merchant-applications/<application_id>/documents/<document_id>",
               "/api/v1/merchant-applications/<application_id>/submit",
               "/api/v1/merchant-applications/<application_id>/review",
               "/api/v1/merchant-applications/<application_id>/approve",
               "/api/v1/merchant-applications/<application_id>/reject",
               "/api/v1/merchant-applications/<application_id>/request-changes",
               "/api/v1/merchant-applications/<application_id>/comments",
               "/api/v1/merchants/<merchant_id>/account", "/api/v1/merchants/<merchant_id>/suspend",
               "/api/v1/merchants/<merchant_id>/terminate", "/api/v1/merchants/<merchant_id>/reinstate",
               "/api/v1/merchants/<merchant_id>/stores", "/api/v1/stores/<store_id>",
               "/api/v1/stores/<store_id>/qr.<any(svg, png):fmt>", "/api/v1/merchants/<merchant_id>/staff",
               "/api/v1/stores/<store_id>/emvco",
               "/api/v1/cards", "/api/v1/cards/<card_id>", "/api/v1/cards/<card_id>/number",
               "/api/v1/cards/<card_id>/activate", "/api/v1/cards/<card_id>/freeze",
               "/api/v1/cards/<card_id>/unfreeze", "/api/v1/cards/<card_id>/report-lost",
               "/api/v1/cards/<card_id>/replace", "/api/v1/cards/<card_id>/cancel", "/api/v1/cards/<card_id>/pin",
               "/api/v1/cards/<card_id>/balances", "/api/v1/cards/<card_id>/transactions",
               "/api/v1/cards/<card_id>/payment-codes",
               "/api/v1/cards/<card_id>/payment-codes/<code>.<any(svg, png):fmt>",
               "/api/v1/card-issuances", "/api/v1/card-issuances/<run_id>", "/api/v1/card-issuances/<run_id>/resume",
               "/api/v1/cards/<card_id>/top-ups", "/api/v1/top-ups/<top_up_id>",
               "/api/v1/programs", "/api/v1/programs/<program_id>", "/api/v1/programs/<program_id>/fundings",
               "/api/v1/fundings/<funding_id>/approve", "/api/v1/fundings/<funding_id>/reject",
               "/api/v1/disbursements", "/api/v1/disbursements/<batch_id>", "/api/v1/disbursements/<batch_id>/lines",
               "/api/v1/disbursements/<batch_id>/result.csv", "/api/v1/disbursements/<batch_id>/approve",
               "/api/v1/disbursements/<batch_id>/cancel", "/api/v1/disbursements/<batch_id>/resume",
               "/api/v1/disbursements/<batch_id>/lines/<int:line_no>/clawbacks",
               "/api/v1/clawbacks/<clawback_id>/approve",
               "/api/v1/merchants/<merchant_id>/staff/<user_id>",
               "/api/v1/merchants/<merchant_id>/stripe/onboarding-link", "/api/v1/agreements/renewals",
               "/api/v1/offers/<offer_id>/propose", "/api/v1/offers/<offer_id>/publish",
               "/api/v1/offers/<offer_id>/reject", "/api/v1/offers/<offer_id>/withdraw",
               # public, saying more to a caller with a token (test_offer_reads_matrix)
               "/api/v1/offers", "/api/v1/offers/<offer_id>",
               "/api/v1/payments", "/api/v1/payments/<payment_id>", "/api/v1/payments/<payment_id>/refunds",
               # public: anyone may sign up and read the directory
               "/api/v1/applicants", "/api/v1/merchants", "/api/v1/merchants/<merchant_id>",
               "/api/v1/ledger/verify", "/api/v1/ledger/trial-balance",
               "/api/v1/settlements", "/api/v1/settlements/<settlement_id>",
               "/api/v1/payouts", "/api/v1/payouts/<payout_id>", "/api/v1/payouts/<payout_id>/approve",
               "/api/v1/payouts/<payout_id>/resolve", "/api/v1/payouts/send", "/api/v1/payout-bank-files",
               "/api/v1/payout-bank-files/<bank_file_id>", "/api/v1/payout-bank-files/<bank_file_id>/file.csv",
               "/api/v1/payout-bank-files/<bank_file_id>/statuses",
               "/api/v1/reports/programs", "/api/v1/reports/merchants",
               "/api/v1/reconciliations", "/api/v1/reconciliations/<rec_id>",
               "/api/v1/reconciliations/<rec_id>/lines/<int:line_no>/resolve",
               "/api/v1/reconciliation-adjustments", "/api/v1/reconciliation-adjustments/<adjustment_id>/approve",
               "/api/v1/reconciliation-adjustments/<adjustment_id>/reject",
               "/api/v1/reconciliations/<rec_id>/export.<any(csv, xlsx):fmt>", "/api/v1/reconciliations/report",
               "/api/v1/reconciliations/report.<any(csv, xlsx):fmt>",
               "/api/v1/stats/overview", "/api/v1/stats/trends",
               # Stripe signs its calls instead of sending a token (tests/integration/test_stripe.py)
               "/api/v1/webhooks/stripe"}
    api_rules = {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1/")}
    assert api_rules - covered == set()
