"""Member top-ups: a PaymentIntent through the SDK, the purse credited once by Stripe's signed webhook,
refusals, the money Stripe took that cannot be credited, the member's page, and races on PostgreSQL."""

import re
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cards import service as cards
from cards.models import Card
from core.auth import Actor
from core.models import AuditEvent, Role
from payments import ledger
from payments.ledger import Transaction
from payments.models import StripeEvent
from payments.topups import service
from payments.topups.models import TopUp, TopUpStatus
from payments.topups.provider import DisabledPaymentIntents, payment_intents
from payments.topups.views import SERVICE_MESSAGES, parse_yuan
from tests import factories as f

WEBHOOK_URL = "/api/v1/webhooks/stripe"


@pytest.fixture
def limits(app, monkeypatch):
    monkeypatch.setitem(app.config, "TOPUP_MIN_AMOUNT", 100)
    monkeypatch.setitem(app.config, "TOPUP_MAX_AMOUNT", 500_000)


@pytest.fixture
def world(session, cipher, limits):
    tree = f.org_tree(session)
    own = f.member(session, cipher, tree["yc_base"], "王芳")
    other = f.member(session, cipher, tree["gy_base"], "李强")
    users = {
        "owner": f.user(session, Role.MEMBER, member=own),
        "other": f.user(session, Role.MEMBER, member=other),
        "admin": f.user(session, Role.UNION_ADMIN),
        "finance": f.user(session, Role.FINANCE_MAKER),
        "approver": f.user(session, Role.FINANCE_APPROVER),
        "auditor": f.user(session, Role.AUDITOR),
        "cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=f.merchant(session, cipher).id),
    }
    card = cards.issue_card(session, cipher, f.PLATFORM, own.public_id, prefix="880064")
    cards.change_state(session, Actor.of(users["owner"]), card.public_id, "activate")
    other_card = cards.issue_card(session, cipher, f.PLATFORM, other.public_id, prefix="880064")
    cards.change_state(session, Actor.of(users["other"]), other_card.public_id, "activate")
    return {"own": own, "other": other, "users": users, "card": card.public_id, "other_card": other_card.public_id,
            "h": {name: f.bearer(session, u) for name, u in users.items()}}


def start(client, world, amount=5000, who="owner", card=None, headers=None):
    return client.post(f"/api/v1/cards/{card or world['card']}/top-ups", json={"amount": amount},
                       headers={**world["h"][who], **(headers or {})})


def started(client, world, amount=5000) -> dict:
    resp = start(client, world, amount)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def deliver(client, body: bytes, headers: dict):
    return client.post(WEBHOOK_URL, data=body, headers=headers)


def top_up_row(session, top_up_id) -> TopUp:
    return session.scalar(select(TopUp).where(TopUp.public_id == top_up_id).execution_options(populate_existing=True))


def card_row(session, card_id) -> Card:
    return session.scalar(select(Card).where(Card.public_id == card_id).execution_options(populate_existing=True))


def purse(session, card_id) -> int:
    return ledger.balance(session, cards.general_account(card_id)).posted


def credits_of(session, top_up_id) -> int:
    return session.scalar(select(func.count(Transaction.id)).where(Transaction.kind == "top_up",
                                                                   Transaction.reference == top_up_id))


def audit_actions(session, top_up_id) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == top_up_id)
                                .order_by(AuditEvent.id)))


# --- starting a top-up -----------------------------------------------------------------------------

def test_a_top_up_creates_a_payment_intent_at_stripe_and_a_pending_top_up(client, session, world, stripe_server,
                                                                          stripe_app_config):
    resp = start(client, world, 5000)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["id"].startswith("top_") and body["status"] == "pending"
    assert (body["amount"], body["currency"], body["card_id"]) == (5000, "CNY", world["card"])
    assert resp.headers["Location"].endswith(f"/api/v1/top-ups/{body['id']}")

    [intent] = stripe_server.objects("payment_intents")
    assert intent["id"] == body["payment_intent_id"] and intent["id"].startswith("pi_")
    assert body["client_secret"] == intent["client_secret"] and intent["client_secret"].startswith(intent["id"])
    assert (intent["amount"], intent["currency"], intent["status"]) == (5000, "cny", "requires_payment_method")
    assert intent["metadata"] == {"top_up_id": body["id"], "card_id": world["card"]}
    assert intent["automatic_payment_methods"] == {"enabled": True}
    [sent] = stripe_server.requests_to("POST", "/v1/payment_intents")
    assert sent.idempotency_key == f"{body['id']}:payment_intent"

    row = top_up_row(session, body["id"])
    assert (row.status, row.amount, row.currency, row.payment_intent_id) == (TopUpStatus.PENDING, 5000, "CNY",
                                                                             intent["id"])
    assert row.member_id == world["own"].id and row.transaction_id is None and not row.refund_due
    assert audit_actions(session, body["id"]) == ["top_up.created"]
    assert purse(session, world["card"]) == 0  # nothing is credited before Stripe says it is paid

    got = client.get(f"/api/v1/top-ups/{body['id']}", headers=world["h"]["owner"])
    assert got.status_code == 200 and "client_secret" not in got.get_json()
    assert got.get_json()["status"] == "pending" and got.get_json()["card_id"] == world["card"]


def test_a_repeat_with_the_same_idempotency_key_makes_one_payment_intent(client, world, stripe_server,
                                                                        stripe_app_config):
    first = start(client, world, 2000, headers={"Idempotency-Key": "top-up-1"})
    again = start(client, world, 2000, headers={"Idempotency-Key": "top-up-1"})
    assert first.status_code == again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert len(stripe_server.objects("payment_intents")) == 1


@pytest.mark.parametrize("amount", [99, 500_001, 0, -100, 12.5, "5000", True, None])
def test_an_amount_out_of_range_or_not_whole_fen_is_refused_with_422(client, session, world, stripe_server,
                                                                     stripe_app_config, amount):
    resp = start(client, world, amount)
    assert resp.status_code == 422, resp.get_json()
    assert "amount" in resp.get_json()["errors"]
    assert stripe_server.objects("payment_intents") == []
    assert session.scalar(select(func.count(TopUp.id))) == 0


def test_the_limits_come_from_the_configuration(client, app, world, stripe_server, stripe_app_config,
                                                monkeypatch):
    monkeypatch.setitem(app.config, "TOPUP_MIN_AMOUNT", 1000)
    resp = start(client, world, 999)
    assert resp.status_code == 422 and resp.get_json()["error"] == "amount_out_of_range"
    assert resp.get_json()["errors"]["amount"] == ["A top-up is from ¥10.00 to ¥5,000.00."]
    assert start(client, world, 1000).status_code == 201


def test_unknown_fields_and_a_missing_amount_are_refused(client, world, stripe_server, stripe_app_config):
    assert client.post(f"/api/v1/cards/{world['card']}/top-ups", json={}, headers=world["h"]["owner"]).status_code \
        == 422
    extra = client.post(f"/api/v1/cards/{world['card']}/top-ups", json={"amount": 500, "currency": "USD"},
                        headers=world["h"]["owner"])
    assert extra.status_code == 422 and "currency" in extra.get_json()["errors"]
    assert stripe_server.objects("payment_intents") == []


def test_another_members_card_is_404_and_nothing_reaches_stripe(client, world, stripe_server, stripe_app_config):
    for card in (world["other_card"], "card_doesnotexist"):
        resp = start(client, world, card=card)
        assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"
    assert stripe_server.objects("payment_intents") == []


@pytest.mark.parametrize("who, status", [("admin", 403), ("finance", 403), ("cashier", 403), ("auditor", 403)])
def test_only_members_top_up(client, world, stripe_server, stripe_app_config, who, status):
    assert start(client, world, who=who).status_code == status
    assert client.post(f"/api/v1/cards/{world['card']}/top-ups", json={"amount": 500}).status_code == 401


@pytest.mark.parametrize("action, error", [("freeze", "card_frozen"), ("report_lost", "card_lost")])
def test_a_frozen_or_lost_card_is_refused_with_409(client, session, world, stripe_server, stripe_app_config,
                                                   action, error):
    cards.change_state(session, Actor.of(world["users"]["owner"]), world["card"], action)
    resp = start(client, world)
    assert resp.status_code == 409 and resp.get_json()["error"] == error
    assert stripe_server.objects("payment_intents") == []


def test_without_stripe_configured_a_top_up_answers_503(client, app, session, world, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", "")
    resp = start(client, world)
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "stripe_not_configured" and "not configured" in resp.get_json()["message"]
    assert session.scalar(select(func.count(TopUp.id))) == 0
    assert isinstance(payment_intents({"STRIPE_API_KEY": ""}), DisabledPaymentIntents)
    assert DisabledPaymentIntents.MESSAGE in SERVICE_MESSAGES


def test_a_stripe_outage_answers_503_and_leaves_nothing(client, session, world, stripe_server, stripe_app_config):
    stripe_server.fail_next(500, path="/v1/payment_intents")
    resp = start(client, world)
    assert resp.status_code == 503 and resp.get_json()["error"] == "stripe_unavailable"
    assert session.scalar(select(func.count(TopUp.id))) == 0
    assert start(client, world).status_code == 201


def test_a_stripe_refusal_answers_422(client, world, stripe_server, stripe_app_config):
    stripe_server.fail_next(400, "invalid_request_error", "Amount must convert to at least 50 cents.",
                            code="amount_too_small", path="/v1/payment_intents")
    resp = start(client, world, 100)
    assert resp.status_code == 422 and resp.get_json()["error"] == "stripe_error"


# --- reading a top-up --------------------------------------------------------------------------------

def test_the_owner_finance_and_auditors_read_a_top_up_and_nobody_else(client, world, stripe_server,
                                                                      stripe_app_config):
    top_up = started(client, world)
    url = f"/api/v1/top-ups/{top_up['id']}"
    for who in ("owner", "finance", "approver", "auditor"):
        resp = client.get(url, headers=world["h"][who])
        assert resp.status_code == 200 and resp.get_json()["id"] == top_up["id"], who
        assert resp.get_json()["member_id"] == world["own"].public_id
    assert client.get(url, headers=world["h"]["other"]).status_code == 404
    for who in ("admin", "cashier"):
        assert client.get(url, headers=world["h"][who]).status_code == 403
    assert client.get("/api/v1/top-ups/top_nothing", headers=world["h"]["finance"]).status_code == 404


# --- the webhook settles it ------------------------------------------------------------------------

def test_a_signed_succeeded_event_credits_the_general_purse_once(client, session, world, stripe_server,
                                                                 stripe_app_config):
    top_up = started(client, world, 5000)
    event = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 200 and resp.get_json() == {"received": True, "handled": True}

    assert purse(session, world["card"]) == 5000
    assert ledger.balance(session, service.CLEARING_ACCOUNT).posted == 5000
    assert ledger.get_account(session, service.CLEARING_ACCOUNT).normal_side.value == "debit"
    assert ledger.verify(session).ok
    row = top_up_row(session, top_up["id"])
    assert row.status == TopUpStatus.SUCCEEDED and row.credited_card.public_id == world["card"]
    txn = session.scalar(select(Transaction).where(Transaction.public_id == row.transaction_id))
    assert (txn.kind, txn.reference, txn.idempotency_key) == ("top_up", top_up["id"], f"{top_up['id']}:credit")
    line = cards.card_statement(session, card_row(session, world["card"]), limit=10, cursor=None).lines[0]
    assert (line.kind, line.amount, line.balance, line.transaction_id) == ("top_up", 5000, 5000, txn.public_id)
    assert line.metadata["description"] and line.metadata["payment_intent_id"] == top_up["payment_intent_id"]
    assert audit_actions(session, top_up["id"]) == ["top_up.created", "top_up.succeeded"]

    got = client.get(f"/api/v1/top-ups/{top_up['id']}", headers=world["h"]["owner"]).get_json()
    assert (got["status"], got["transaction_id"], got["credited_card_id"]) == ("succeeded", txn.public_id,
                                                                               world["card"])
    statement = client.get(f"/api/v1/cards/{world['card']}/transactions", headers=world["h"]["owner"]).get_json()
    assert [(t["kind"], t["amount"], t["reference"]) for t in statement["data"]] == [("top_up", 5000, top_up["id"])]


def test_the_same_event_delivered_twice_credits_once(client, session, world, stripe_server, stripe_app_config):
    top_up = started(client, world, 3000)
    event = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    assert deliver(client, *stripe_server.delivery(event)).get_json()["handled"] is True
    again = deliver(client, *stripe_server.delivery(event))
    assert again.status_code == 200 and again.get_json() == {"received": True, "handled": False}
    assert purse(session, world["card"]) == 3000 and credits_of(session, top_up["id"]) == 1
    assert ledger.verify(session).ok


def test_another_event_for_the_same_payment_intent_credits_once(client, session, world, stripe_server,
                                                                stripe_app_config):
    top_up = started(client, world, 3000)
    first = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    second = stripe_server.emit("payment_intent.succeeded", first["data"]["object"])
    assert second["id"] != first["id"]
    assert deliver(client, *stripe_server.delivery(first)).status_code == 200
    resp = deliver(client, *stripe_server.delivery(second))
    assert resp.status_code == 200 and resp.get_json()["handled"] is True
    assert purse(session, world["card"]) == 3000 and credits_of(session, top_up["id"]) == 1
    assert session.scalar(select(func.count(StripeEvent.id)).where(
        StripeEvent.event_id.in_([first["id"], second["id"]]))) == 2
    assert audit_actions(session, top_up["id"]) == ["top_up.created", "top_up.succeeded"]
    assert ledger.verify(session).ok


def test_the_ledger_key_credits_once_even_if_the_top_up_row_were_not_marked(client, session, world, stripe_server,
                                                                            stripe_app_config):
    top_up = started(client, world, 3000)
    intent = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])["data"]["object"]
    args = {"amount": 3000, "amount_received": 3000, "currency": "cny"}
    first = service.payment_succeeded(session, service.STRIPE, intent["id"], **args)
    first_txn = first.transaction_id
    # Pretend the row's update was lost: a second credit must meet the ledger's idempotency key.
    first.status, first.transaction_id = TopUpStatus.PENDING, None
    session.flush()
    again = service.payment_succeeded(session, service.STRIPE, intent["id"], **args)
    assert again.transaction_id == first_txn and credits_of(session, top_up["id"]) == 1
    assert purse(session, world["card"]) == 3000 and ledger.verify(session).ok


def test_a_tampered_delivery_is_refused_with_400_and_credits_nothing(client, session, world, stripe_server,
                                                                     stripe_app_config):
    top_up = started(client, world, 3000)
    event = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    body, headers = stripe_server.delivery(event)
    tampered = body.replace(b'"amount": 3000', b'"amount": 300000').replace(b'"amount_received": 3000',
                                                                             b'"amount_received": 300000')
    assert tampered != body
    resp = deliver(client, tampered, headers)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_signature"
    unsigned = deliver(client, body, {"Content-Type": "application/json"})
    assert unsigned.status_code == 400
    assert purse(session, world["card"]) == 0 and top_up_row(session, top_up["id"]).status == TopUpStatus.PENDING
    assert session.scalar(select(StripeEvent.id).where(StripeEvent.event_id == event["id"])) is None


def test_an_amount_changed_at_stripe_is_not_credited_and_is_flagged_for_refund(client, session, world,
                                                                               stripe_server, stripe_app_config):
    from core.stripe_client import stripe_client

    top_up = started(client, world, 3000)
    stripe_client(stripe_app_config).v1.payment_intents.update(top_up["payment_intent_id"], params={"amount": 300000})
    event = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 200 and resp.get_json()["handled"] is True
    assert purse(session, world["card"]) == 0 and credits_of(session, top_up["id"]) == 0
    row = top_up_row(session, top_up["id"])
    assert (row.status, row.refund_due, row.failure_code) == (TopUpStatus.FAILED, True, "amount_mismatch")
    assert "300000" in row.failure_message
    assert audit_actions(session, top_up["id"]) == ["top_up.created", "top_up.refund_due"]
    flagged = session.scalar(select(AuditEvent).where(AuditEvent.object_id == top_up["id"],
                                                      AuditEvent.action == "top_up.refund_due"))
    assert flagged.actor_label == "stripe" and flagged.after["received"]["amount_received"] == 300000
    # Stripe telling again changes nothing.
    again = stripe_server.emit("payment_intent.succeeded", event["data"]["object"])
    assert deliver(client, *stripe_server.delivery(again)).status_code == 200
    assert purse(session, world["card"]) == 0 and top_up_row(session, top_up["id"]).refund_due
    assert ledger.verify(session).ok


@pytest.mark.parametrize("change", [{"amount_received": 2999}, {"currency": "usd"}, {"amount": "3000"},
                                    {"amount_received": None}])
def test_a_received_amount_or_currency_that_differs_is_flagged(session, world, client, stripe_server,
                                                               stripe_app_config, change):
    top_up = started(client, world, 3000)
    intent = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])["data"]["object"]
    event = stripe_server.emit("payment_intent.succeeded", {**intent, **change})
    assert deliver(client, *stripe_server.delivery(event)).status_code == 200
    row = top_up_row(session, top_up["id"])
    assert (row.status, row.refund_due, row.failure_code) == (TopUpStatus.FAILED, True, "amount_mismatch")
    assert purse(session, world["card"]) == 0 and ledger.verify(session).ok


def test_a_failed_attempt_marks_the_top_up_failed_and_a_later_success_still_credits(client, session, world,
                                                                                    stripe_server,
                                                                                    stripe_app_config):
    top_up = started(client, world, 4000)
    failed = stripe_server.fail_payment_intent(top_up["payment_intent_id"], code="card_declined",
                                               message="Your card was declined.")
    assert deliver(client, *stripe_server.delivery(failed)).get_json()["handled"] is True
    row = top_up_row(session, top_up["id"])
    assert (row.status, row.failure_code, row.failure_message) == (TopUpStatus.FAILED, "card_declined",
                                                                   "Your card was declined.")
    assert not row.refund_due and purse(session, world["card"]) == 0
    got = client.get(f"/api/v1/top-ups/{top_up['id']}", headers=world["h"]["owner"]).get_json()
    assert (got["status"], got["failure_code"]) == ("failed", "card_declined")

    # The member pays with another card on the same PaymentIntent.
    paid = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    assert deliver(client, *stripe_server.delivery(paid)).status_code == 200
    row = top_up_row(session, top_up["id"])
    assert row.status == TopUpStatus.SUCCEEDED and row.failure_code is None
    assert purse(session, world["card"]) == 4000
    assert audit_actions(session, top_up["id"]) == ["top_up.created", "top_up.failed", "top_up.succeeded"]


def test_a_failure_reported_after_the_success_changes_nothing(client, session, world, stripe_server,
                                                              stripe_app_config):
    top_up = started(client, world, 4000)
    late_failure = stripe_server.fail_payment_intent(top_up["payment_intent_id"])
    paid = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    assert deliver(client, *stripe_server.delivery(paid)).status_code == 200
    assert deliver(client, *stripe_server.delivery(late_failure)).status_code == 200
    assert top_up_row(session, top_up["id"]).status == TopUpStatus.SUCCEEDED
    assert purse(session, world["card"]) == 4000


def test_a_cancelled_payment_intent_cancels_the_top_up(client, session, world, stripe_server, stripe_app_config):
    top_up = started(client, world, 4000)
    event = stripe_server.cancel_payment_intent(top_up["payment_intent_id"])
    assert deliver(client, *stripe_server.delivery(event)).get_json()["handled"] is True
    row = top_up_row(session, top_up["id"])
    assert (row.status, row.failure_code) == (TopUpStatus.CANCELED, "abandoned")
    assert audit_actions(session, top_up["id"]) == ["top_up.created", "top_up.canceled"]
    assert purse(session, world["card"]) == 0


def test_events_for_a_payment_intent_that_is_no_top_up_are_accepted_and_ignored(client, session, world,
                                                                                stripe_server, stripe_app_config):
    from core.stripe_client import stripe_client

    intent = stripe_client(stripe_app_config).v1.payment_intents.create(params={"amount": 700, "currency": "cny"})
    for event in (stripe_server.fail_payment_intent(intent.id), stripe_server.succeed_payment_intent(intent.id)):
        resp = deliver(client, *stripe_server.delivery(event))
        assert resp.status_code == 200 and resp.get_json()["received"] is True
    assert session.scalar(select(func.count(TopUp.id))) == 0
    assert ledger.verify(session).ok


def test_an_event_without_the_payment_intents_id_is_refused(client, world, stripe_server, stripe_app_config):
    event = stripe_server.emit("payment_intent.succeeded", {"object": "payment_intent", "amount": 100})
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 400 and resp.get_json()["error"] == "malformed_event"


def test_a_card_replaced_before_the_payment_arrives_credits_its_successor(client, session, world, stripe_server,
                                                                         stripe_app_config):
    top_up = started(client, world, 6000)
    replaced = client.post(f"/api/v1/cards/{world['card']}/replace", headers=world["h"]["owner"])
    assert replaced.status_code == 201
    new_card = replaced.get_json()["id"]
    event = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    assert deliver(client, *stripe_server.delivery(event)).status_code == 200
    row = top_up_row(session, top_up["id"])
    assert row.status == TopUpStatus.SUCCEEDED and row.credited_card.public_id == new_card
    assert row.card.public_id == world["card"]
    assert purse(session, new_card) == 6000 and purse(session, world["card"]) == 0
    got = client.get(f"/api/v1/top-ups/{top_up['id']}", headers=world["h"]["owner"]).get_json()
    assert (got["card_id"], got["credited_card_id"]) == (world["card"], new_card)
    assert ledger.verify(session).ok


def test_a_card_cancelled_before_the_payment_arrives_is_not_credited_and_the_money_is_set_aside(
        client, session, world, stripe_server, stripe_app_config, caplog):
    top_up = started(client, world, 6000)
    cards.change_state(session, f.PLATFORM, world["card"], "cancel")
    event = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 200 and resp.get_json()["handled"] is True
    row = top_up_row(session, top_up["id"])
    assert (row.status, row.refund_due, row.failure_code) == (TopUpStatus.FAILED, True, "card_closed")
    assert "cancelled" in row.failure_message and row.transaction_id is None
    assert credits_of(session, top_up["id"]) == 0
    assert audit_actions(session, top_up["id"]) == ["top_up.created", "top_up.refund_due"]
    assert any(top_up["id"] in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    got = client.get(f"/api/v1/top-ups/{top_up['id']}", headers=world["h"]["finance"]).get_json()
    assert (got["status"], got["refund_due"], got["failure_code"]) == ("failed", True, "card_closed")
    assert ledger.verify(session).ok


# --- the member's page -----------------------------------------------------------------------------

def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, user):
    page = client.get("/login")
    resp = client.post("/login", data={"username": user.username, "password": f.PASSWORD, "csrf_token": csrf(page)})
    assert resp.status_code == 302, resp.get_data(as_text=True)


def post_page(client, url, **data):
    return client.post(url, data={"csrf_token": csrf(client.get("/")), **data})


def test_the_member_tops_up_on_the_page_and_watches_the_status(client, session, world, stripe_server,
                                                               stripe_app_config):
    sign_in(client, world["users"]["owner"])
    card_page = client.get("/card/").get_data(as_text=True)
    assert 'href="/card/top-up"' in card_page
    form = client.get("/card/top-up")
    assert form.status_code == 200 and 'id="top-up-form"' in form.get_data(as_text=True)
    assert form.headers["Cache-Control"] == "no-store"
    assert "¥1.00" in form.get_data(as_text=True) and "¥5,000.00" in form.get_data(as_text=True)

    resp = post_page(client, "/card/top-up", amount="50.5")
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    [intent] = stripe_server.objects("payment_intents")
    assert intent["amount"] == 5050 and f'data-client-secret="{intent["client_secret"]}"' in text
    assert "¥50.50" in text and "Stripe" in text
    top_up_id = intent["metadata"]["top_up_id"]
    status_url = f"/card/top-up/{top_up_id}/status"
    assert status_url in text

    pending = client.get(status_url)
    assert pending.status_code == 200 and pending.get_json()["status"] == "pending"
    assert pending.get_json()["done"] is False and pending.headers["Cache-Control"] == "no-store"
    event = stripe_server.succeed_payment_intent(intent["id"])
    assert deliver(client, *stripe_server.delivery(event)).status_code == 200
    done = client.get(status_url).get_json()
    assert (done["status"], done["done"], done["amount"]) == ("succeeded", True, 5050)
    assert "¥50.50" in done["message"] and done["label"] == "已充入会员卡"
    listed = client.get("/card/top-up").get_data(as_text=True)
    assert 'id="recent-top-ups"' in listed and "¥50.50" in listed
    assert "¥50.50" in client.get("/card/").get_data(as_text=True)


def test_the_page_explains_refusals_in_the_page_language(client, session, app, world, stripe_server,
                                                         stripe_app_config, monkeypatch):
    sign_in(client, world["users"]["owner"])
    bad = post_page(client, "/card/top-up", amount="abc")
    assert bad.status_code == 422 and 'id="top-up-problem"' in bad.get_data(as_text=True)
    small = post_page(client, "/card/top-up?lang=en", amount="0.50")
    assert small.status_code == 422 and "A top-up is from ¥1.00 to ¥5,000.00." in small.get_data(as_text=True)
    assert stripe_server.objects("payment_intents") == []
    cards.change_state(session, Actor.of(world["users"]["owner"]), world["card"], "freeze")
    frozen = client.get("/card/top-up?lang=zh")
    assert 'id="top-up-unusable"' in frozen.get_data(as_text=True) and "冻结" in frozen.get_data(as_text=True)
    assert post_page(client, "/card/top-up", amount="50").status_code == 409
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", "")
    assert 'id="top-up-unavailable"' in client.get("/card/top-up").get_data(as_text=True)


def test_the_status_of_another_members_top_up_is_not_found(client, world, stripe_server, stripe_app_config):
    top_up = started(client, world)
    sign_in(client, world["users"]["other"])
    assert client.get(f"/card/top-up/{top_up['id']}/status").status_code == 404
    assert client.get("/card/top-up/top_nothing/status").status_code == 404


def test_the_page_is_for_members_only(client, world):
    assert client.get("/card/top-up").headers["Location"].startswith("/login")
    sign_in(client, world["users"]["finance"])
    assert client.get("/card/top-up").status_code == 403


@pytest.mark.parametrize("text, fen", [("50", 5000), ("50.5", 5050), ("50.05", 5005), ("0.01", 1), (" 7 ", 700),
                                       ("５０．５", 5050), ("abc", None), ("-1", None), ("1.234", None), ("", None),
                                       ("1e3", None), ("1,000", 100_000), ("١٢", None)])
def test_amounts_typed_in_yuan_are_read_as_fen(text, fen):
    assert parse_yuan(text) == fen


# --- races on PostgreSQL: real commits from several threads --------------------------------------

@pytest.fixture
def committed(postgres, engine, app, cipher, limits, stripe_app_config):
    with Session(engine, expire_on_commit=False) as sess:
        fed = f.union(sess, f"充值并发{uuid.uuid4().hex[:8]}", None, "640000")
        member = f.member(sess, cipher, fed, "赵敏")
        owner = f.user(sess, Role.MEMBER, member=member)
        card = cards.issue_card(sess, cipher, f.PLATFORM, member.public_id, prefix="880064")
        cards.change_state(sess, Actor.of(owner), card.public_id, "activate")
        return {"card": card.public_id, "headers": f.bearer(sess, owner)}


def test_two_different_events_for_one_payment_at_once_credit_once(app, engine, committed, stripe_server):
    from tests.integration.test_concurrency import run_in_threads

    top_up = app.test_client().post(f"/api/v1/cards/{committed['card']}/top-ups", json={"amount": 8800},
                                    headers=committed["headers"]).get_json()
    first = stripe_server.succeed_payment_intent(top_up["payment_intent_id"])
    events = [first] + [stripe_server.emit("payment_intent.succeeded", first["data"]["object"]) for _ in range(3)]
    deliveries = [stripe_server.delivery(e) for e in events]
    responses = run_in_threads(*[lambda d=d: deliver(app.test_client(), *d) for d in deliveries])
    assert [r.status_code for r in responses] == [200] * 4, [r.get_json() for r in responses]
    with Session(engine) as sess:
        assert purse(sess, committed["card"]) == 8800 and credits_of(sess, top_up["id"]) == 1
        assert top_up_row(sess, top_up["id"]).status == TopUpStatus.SUCCEEDED


def test_a_payment_arriving_while_the_card_is_replaced_lands_on_the_card_that_has_the_money(
        app, engine, committed, stripe_server):
    from tests.integration.test_concurrency import run_in_threads

    client = app.test_client()
    top_up = client.post(f"/api/v1/cards/{committed['card']}/top-ups", json={"amount": 8800},
                         headers=committed["headers"]).get_json()
    delivery = stripe_server.delivery(stripe_server.succeed_payment_intent(top_up["payment_intent_id"]))
    webhook, replaced = run_in_threads(
        lambda: deliver(app.test_client(), *delivery),
        lambda: app.test_client().post(f"/api/v1/cards/{committed['card']}/replace", headers=committed["headers"]))
    assert webhook.status_code == 200 and replaced.status_code == 201, (webhook.get_json(), replaced.get_json())
    new_card = replaced.get_json()["id"]
    with Session(engine) as sess:
        assert purse(sess, new_card) == 8800 and purse(sess, committed["card"]) == 0
        assert top_up_row(sess, top_up["id"]).status == TopUpStatus.SUCCEEDED
