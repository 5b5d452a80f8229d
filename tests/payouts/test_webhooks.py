"""Stripe's payout events through the webhook endpoint, signed as Stripe signs them: paid, failed before
and after paid, reversed transfers, duplicates, events out of order, events about someone else's
payouts, unknown types and bad signatures."""

import http.server
import threading

import pytest
import stripe
from sqlalchemy import select

from payments import accounts
from payments.models import StripeEvent
from payments.payouts import service
from payments.payouts.models import ExceptionStatus, PayoutStatus
from payments.payouts.provider import payout_provider
from tests.payouts.conftest import (
    TODAY,
    WEBHOOK_URL,
    assert_books_balance,
    make_payout,
    make_stripe_merchant,
    posted,
    row,
    stripe_account,
    txns,
)


@pytest.fixture
def sent(session, cipher, app, stripe_server, stripe_app_config):
    """A Stripe payout sent: transferred to the merchant's account and paid out from it, not yet paid."""
    account = stripe_account(app, stripe_server)
    merchant = make_stripe_merchant(session, cipher, account)
    payout = make_payout(session, merchant, 18_000)
    assert service.send_due(session, payout_provider(app.config), today=TODAY).sent == 1
    payout = row(session, payout)
    return {"payout": payout, "merchant": merchant, "account": account, "stripe_payout": payout.stripe_payout_id,
            "transfer": payout.stripe_transfer_id}


def deliver(client, stripe_server, event):
    return client.post(WEBHOOK_URL, data=(signed := stripe_server.delivery(event))[0], headers=signed[1])


def event_of(stripe_server, type_: str) -> dict:
    return next(e for e in stripe_server.events if e["type"] == type_)


def test_payout_paid_marks_it_paid_once_and_a_duplicate_delivery_changes_nothing(client, session, stripe_server,
                                                                                 sent):
    payout = sent["payout"]
    clearing, in_transit = posted(session, accounts.CLEARING), posted(session, accounts.IN_TRANSIT)
    event = stripe_server.pay_payout(sent["stripe_payout"])
    assert event["account"] == sent["account"]
    resp = deliver(client, stripe_server, event)
    assert resp.status_code == 200 and resp.get_json() == {"received": True, "handled": True}
    paid = row(session, payout)
    assert paid.status == PayoutStatus.PAID and paid.paid_at.timestamp() == event["created"]
    [txn] = txns(session, payout, "payout_paid")
    assert paid.paid_transaction_id == txn.public_id
    assert posted(session, accounts.CLEARING) == clearing - 18_000
    assert posted(session, accounts.IN_TRANSIT) == in_transit - 18_000

    again = deliver(client, stripe_server, event)
    assert again.status_code == 200 and again.get_json()["handled"] is False
    assert len(txns(session, payout)) == 1
    assert session.scalar(select(StripeEvent.processed_at).where(StripeEvent.event_id == event["id"])) is not None
    assert_books_balance(session)


def test_payout_paid_before_transfer_created_still_ends_paid(client, session, stripe_server, sent):
    payout = sent["payout"]
    paid = stripe_server.pay_payout(sent["stripe_payout"])
    assert deliver(client, stripe_server, paid).get_json()["handled"] is True
    created = event_of(stripe_server, "transfer.created")
    assert created["created"] <= paid["created"]
    assert deliver(client, stripe_server, created).get_json()["handled"] is True
    current = row(session, payout)
    assert (current.status, current.stripe_transfer_id) == (PayoutStatus.PAID, sent["transfer"])
    assert len(txns(session, payout, "payout_paid")) == 1
    assert_books_balance(session)


def test_payout_paid_arriving_before_the_send_was_recorded_ends_paid(client, session, cipher, app, stripe_server,
                                                                    stripe_app_config):
    merchant = make_stripe_merchant(session, cipher, stripe_account(app, stripe_server))
    payout = make_payout(session, merchant, 4_200)
    real = payout_provider(app.config)

    class PaidAtOnce:
        """Stripe pays the payout out and its webhook arrives before send_due records Stripe's answer."""

        def send(self, **request):
            answer = real.send(**request)
            assert deliver(client, stripe_server, event_of(stripe_server, "transfer.created")).status_code == 200
            event = stripe_server.pay_payout(answer.payout_id)
            assert deliver(client, stripe_server, event).get_json()["handled"] is True
            assert row(session, payout).status == PayoutStatus.PAID
            return answer

    report = service.send_due(session, PaidAtOnce(), today=TODAY)
    assert [r.status for r in report.results] == ["paid"]
    current = row(session, payout)
    assert current.status == PayoutStatus.PAID and current.stripe_payout_id and current.stripe_transfer_id
    assert current.submitted_at is None and current.attempts == 1
    assert len(txns(session, payout, "payout_paid")) == 1
    assert_books_balance(session)


def test_payout_failed_after_paid_gives_the_money_back_to_the_merchant(client, session, stripe_server, sent):
    payout, merchant = sent["payout"], sent["merchant"]
    assert deliver(client, stripe_server, stripe_server.pay_payout(sent["stripe_payout"])).status_code == 200
    clearing = posted(session, accounts.CLEARING)
    failed = stripe_server.fail_payout(sent["stripe_payout"], code="account_closed",
                                       message="The bank account has been closed.")
    failed["created"] += 1  # a later day's news, as a bank's return is
    assert deliver(client, stripe_server, failed).get_json()["handled"] is True
    current = row(session, payout)
    assert (current.status, current.exception_status) == (PayoutStatus.FAILED, ExceptionStatus.OPEN)
    assert (current.failure_code, current.failure_message) == ("account_closed", "The bank account has been closed.")
    [returned] = txns(session, payout, "payout_returned")
    assert current.returned_transaction_id == returned.public_id
    assert posted(session, accounts.CLEARING) == clearing + 18_000
    assert posted(session, merchant.payable_account) == 18_000
    assert stripe_server.balance(sent["account"]) == 18_000  # Stripe put it back on the connected account
    assert_books_balance(session)


def test_payout_failed_before_paid_takes_the_money_out_of_transit(client, session, stripe_server, sent):
    payout = sent["payout"]
    in_transit = posted(session, accounts.IN_TRANSIT)
    event = stripe_server.fail_payout(sent["stripe_payout"])
    event["data"]["object"]["failure_code"] = None
    event["data"]["object"]["failure_message"] = None
    assert deliver(client, stripe_server, event).get_json()["handled"] is True
    current = row(session, payout)
    assert (current.status, current.failure_code, current.failure_message) == (
        PayoutStatus.FAILED, "payout_failed", "Stripe reports the payout failed.")
    assert len(txns(session, payout, "payout_failed")) == 1 and txns(session, payout, "payout_returned") == []
    assert posted(session, accounts.IN_TRANSIT) == in_transit - 18_000
    assert posted(session, sent["merchant"].payable_account) == 18_000
    assert_books_balance(session)


def test_an_older_failure_never_overrides_a_newer_payment(client, session, stripe_server, sent):
    payout = sent["payout"]
    paid = stripe_server.pay_payout(sent["stripe_payout"])
    paid["created"] += 60
    assert deliver(client, stripe_server, paid).get_json()["handled"] is True
    stale = stripe_server.fail_payout(sent["stripe_payout"])
    stale["created"] = paid["created"] - 30
    assert deliver(client, stripe_server, stale).status_code == 200
    current = row(session, payout)
    assert current.status == PayoutStatus.PAID and current.exception_status is None
    assert txns(session, payout, "payout_returned") == []
    assert_books_balance(session)


def test_a_payment_reported_after_a_newer_failure_changes_nothing(client, session, stripe_server, sent):
    payout = sent["payout"]
    paid = stripe_server.pay_payout(sent["stripe_payout"])
    failed = stripe_server.fail_payout(sent["stripe_payout"])
    failed["created"] = paid["created"] + 60
    assert deliver(client, stripe_server, failed).get_json()["handled"] is True
    assert deliver(client, stripe_server, paid).status_code == 200  # older, delivered late
    current = row(session, payout)
    assert current.status == PayoutStatus.FAILED
    assert [t.kind for t in txns(session, payout)] == ["payout_failed"]
    assert posted(session, sent["merchant"].payable_account) == 18_000
    # The same in the other order ends the same way for the merchant.
    assert_books_balance(session)


def test_a_transfer_reversed_in_full_fails_the_payout_and_a_partial_one_is_left_to_finance(
        client, session, cipher, app, stripe_server, stripe_app_config, sent):
    payout = sent["payout"]
    part = stripe_server.reverse_transfer(sent["transfer"], 1_000)
    assert deliver(client, stripe_server, part).status_code == 200
    assert row(session, payout).status == PayoutStatus.SUBMITTED
    whole = stripe_server.reverse_transfer(sent["transfer"])
    assert whole["data"]["object"]["reversed"] is True
    assert deliver(client, stripe_server, whole).get_json()["handled"] is True
    current = row(session, payout)
    assert (current.status, current.failure_code) == (PayoutStatus.FAILED, "transfer_reversed")
    assert len(txns(session, payout, "payout_failed")) == 1
    assert_books_balance(session)


def test_an_event_about_someone_elses_payout_is_accepted_and_ignored(client, session, stripe_server, sent):
    other = stripe_server.emit("payout.paid", {"id": "po_StripeOnly", "object": "payout", "amount": 5,
                                              "metadata": {"payout_id": "po_notours"}}, account=sent["account"])
    resp = deliver(client, stripe_server, other)
    assert resp.status_code == 200 and resp.get_json()["handled"] is True
    bare = stripe_server.emit("transfer.created", {"id": "tr_other", "object": "transfer", "metadata": {}})
    assert deliver(client, stripe_server, bare).status_code == 200
    assert row(session, sent["payout"]).status == PayoutStatus.SUBMITTED


def test_an_event_naming_another_account_or_another_stripe_payout_is_ignored(client, session, stripe_server, sent):
    payout = sent["payout"]
    elsewhere = stripe_server.pay_payout(sent["stripe_payout"])
    elsewhere["account"] = "acct_someoneelse"
    assert deliver(client, stripe_server, elsewhere).status_code == 200
    assert row(session, payout).status == PayoutStatus.SUBMITTED
    twin = stripe_server.emit("payout.paid", {"id": "po_AnotherOne", "object": "payout",
                                             "metadata": {"payout_id": payout.public_id}}, account=sent["account"])
    assert deliver(client, stripe_server, twin).status_code == 200
    current = row(session, payout)
    assert current.status == PayoutStatus.SUBMITTED and current.stripe_payout_id == sent["stripe_payout"]


def test_our_payout_is_found_by_stripes_id_when_the_metadata_is_missing(client, session, stripe_server, sent):
    event = stripe_server.pay_payout(sent["stripe_payout"])
    event["data"]["object"]["metadata"] = {}
    assert deliver(client, stripe_server, event).get_json()["handled"] is True
    assert row(session, sent["payout"]).status == PayoutStatus.PAID


def test_an_unknown_event_type_is_accepted_and_ignored(client, session, stripe_server, sent):
    event = stripe_server.emit("payout.updated", stripe_server.get("payouts", sent["stripe_payout"]),
                               account=sent["account"])
    resp = deliver(client, stripe_server, event)
    assert resp.status_code == 200 and resp.get_json() == {"received": True, "handled": False}
    stored = session.scalar(select(StripeEvent).where(StripeEvent.event_id == event["id"]))
    assert stored is not None and stored.processed_at is None
    assert row(session, sent["payout"]).status == PayoutStatus.SUBMITTED


def test_a_bad_signature_is_refused_with_400_and_nothing_happens(client, session, stripe_server, sent):
    event = stripe_server.pay_payout(sent["stripe_payout"])
    body, headers = stripe_server.delivery(event)
    forged = client.post(WEBHOOK_URL, data=body.replace(b"18000", b"18001"), headers=headers)
    assert forged.status_code == 400 and forged.get_json()["error"] == "invalid_signature"
    unsigned = client.post(WEBHOOK_URL, data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 400
    assert session.scalar(select(StripeEvent).where(StripeEvent.event_id == event["id"])) is None
    assert row(session, sent["payout"]).status == PayoutStatus.SUBMITTED


def test_an_event_without_the_objects_id_is_refused(client, session, stripe_server, sent):
    event = stripe_server.emit("payout.paid", {"object": "payout", "metadata": {"payout_id": sent["payout"].public_id}})
    resp = deliver(client, stripe_server, event)
    assert resp.status_code == 400 and resp.get_json()["error"] == "malformed_event"
    assert row(session, sent["payout"]).status == PayoutStatus.SUBMITTED


def test_the_payout_event_helper_signs_a_payload_or_delivers_it_to_a_url(stripe_server, sent):
    received = []

    class Endpoint(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.rfile.read(int(self.headers["Content-Length"])), self.headers["Stripe-Signature"]))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Endpoint)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        status = stripe_server.payout_event(sent["stripe_payout"], "paid",
                                            url=f"http://127.0.0.1:{server.server_port}/hook")
    finally:
        thread.join(timeout=5)
        server.server_close()
    assert status == 200
    [(body, signature)] = received
    event = stripe.Webhook.construct_event(body, signature, stripe_server.webhook_secret)
    assert (event.type, event.data.object.id, event.account) == ("payout.paid", sent["stripe_payout"], sent["account"])

    body, headers = stripe_server.payout_event(sent["stripe_payout"], "failed", code="no_account")
    failed = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], stripe_server.webhook_secret)
    assert (failed.type, failed.data.object.failure_code) == ("payout.failed", "no_account")
    with pytest.raises(ValueError):
        stripe_server.payout_event(sent["stripe_payout"], "lost")


def test_resolving_a_failed_stripe_payout_takes_the_transfer_back_before_it_is_paid_again(
        client, session, app, stripe_server, sent, headers):
    payout, account = sent["payout"], sent["account"]
    assert deliver(client, stripe_server, stripe_server.fail_payout(sent["stripe_payout"])).status_code == 200
    assert stripe_server.balance(account) == 18_000  # the money sits on the merchant's Stripe balance

    resolved = client.post(f"/api/v1/payouts/{payout.public_id}/resolve", headers=headers["maker"],
                           json={"note": "商户已更换银行卡"})

    assert resolved.status_code == 200, resolved.get_json()
    current = row(session, payout)
    assert current.exception_status.value == "resolved" and current.stripe_reversal_id.startswith("trr_")
    assert stripe_server.balance(account) == 0  # back on the platform, to be paid with the next settlement
    transfer = stripe_server.store["transfers"][sent["transfer"]]
    assert (transfer["amount_reversed"], transfer["reversed"]) == (18_000, True)
    # The transfer.reversed event Stripe sends next changes nothing: the payout has failed already.
    event = next(e for e in stripe_server.events if e["type"] == "transfer.reversed")
    assert deliver(client, stripe_server, event).status_code == 200
    assert row(session, payout).status == PayoutStatus.FAILED and txns(session, payout, "payout_returned") == []
    # Resolving again takes nothing more back.
    again = client.post(f"/api/v1/payouts/{payout.public_id}/resolve", headers=headers["maker"],
                        json={"note": "商户已更换银行卡"})
    assert again.status_code == 200 and transfer["amount_reversed"] == 18_000
    assert_books_balance(session)


def test_a_failed_stripe_payout_stays_open_when_stripe_does_not_take_the_transfer_back(
        client, session, app, stripe_server, sent, headers, monkeypatch):
    payout = sent["payout"]
    deliver(client, stripe_server, stripe_server.fail_payout(sent["stripe_payout"]))
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", "")  # Stripe switched off meanwhile

    refused = client.post(f"/api/v1/payouts/{payout.public_id}/resolve", headers=headers["maker"],
                          json={"note": "重新付款"})

    assert refused.status_code == 503 and refused.get_json()["error"] == "stripe_not_configured"
    assert row(session, payout).exception_status.value == "open"
