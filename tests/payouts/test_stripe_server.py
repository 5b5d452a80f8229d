"""The Stripe test server's money, through the official SDK: transfers to connected accounts, payouts made
on a connected account's behalf, and the balance transactions they leave, listed by time and by page."""

import pytest
import requests
import stripe

from core.stripe_client import stripe_client
from tests.payouts.conftest import stripe_account


@pytest.fixture
def sdk(stripe_app_config):
    return stripe_client(stripe_app_config)


@pytest.fixture
def account(app, stripe_server, stripe_app_config):
    return stripe_account(app, stripe_server)


def transfer(sdk, account, amount=5_000, **extra):
    return sdk.v1.transfers.create(params={"amount": amount, "currency": "cny", "destination": account, **extra})


def test_a_transfer_moves_money_to_the_connected_account_and_leaves_balance_transactions(sdk, stripe_server, account):
    made = transfer(sdk, account, transfer_group="po_1", metadata={"payout_id": "po_1"})
    assert made.id.startswith("tr_") and made.object == "transfer"
    assert (made.amount, made.currency, made.destination, made.transfer_group) == (5_000, "cny", account, "po_1")
    assert (made.amount_reversed, made.reversed) == (0, False) and made.destination_payment.startswith("py_")
    assert stripe_server.balance(account) == 5_000 and stripe_server.balance() == -5_000

    [platform] = sdk.v1.balance_transactions.list().data
    assert platform.id == made.balance_transaction and platform.id.startswith("txn_")
    assert (platform.type, platform.amount, platform.fee, platform.net, platform.source) == (
        "transfer", -5_000, 0, -5_000, made.id)
    assert (platform.reporting_category, platform.currency) == ("transfer", "cny")
    [incoming] = sdk.v1.balance_transactions.list(options={"stripe_account": account}).data
    assert (incoming.type, incoming.amount, incoming.source) == ("payment", 5_000, made.destination_payment)
    assert stripe_server.events[-1]["type"] == "transfer.created"

    found = sdk.v1.transfers.list(params={"transfer_group": "po_1"}).data
    assert [t.id for t in found] == [made.id]
    assert sdk.v1.transfers.list(params={"transfer_group": "po_2"}).data == []


@pytest.mark.parametrize("params, code", [
    ({"currency": "cny", "destination": "acct_x"}, "parameter_missing"),
    ({"amount": 100, "currency": "cny"}, "parameter_missing"),
    ({"amount": 100, "currency": "cny", "destination": "acct_unknown"}, "resource_missing"),
    ({"amount": 0, "currency": "cny", "destination": "acct_unknown"}, "amount_too_small"),
])
def test_a_transfer_needs_an_amount_and_an_existing_destination(sdk, stripe_server, params, code):
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sdk.v1.transfers.create(params=params)
    assert exc.value.code == code
    assert stripe_server.objects("transfers") == [] and stripe_server.objects("balance_transactions") == []


def test_an_account_that_has_not_finished_onboarding_cannot_receive_transfers(app, sdk, stripe_server,
                                                                              stripe_app_config):
    pending = stripe_account(app, stripe_server, onboarded=False)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        transfer(sdk, pending)
    assert exc.value.code == "insufficient_capabilities_for_transfer"


def test_a_payout_is_made_on_the_connected_account_from_its_balance(sdk, stripe_server, account):
    transfer(sdk, account, 5_000)
    with pytest.raises(stripe.InvalidRequestError) as low:
        sdk.v1.payouts.create(params={"amount": 5_001, "currency": "cny"}, options={"stripe_account": account})
    assert low.value.code == "balance_insufficient"
    made = sdk.v1.payouts.create(params={"amount": 5_000, "currency": "cny", "metadata": {"payout_id": "po_1"}},
                                 options={"stripe_account": account})
    assert made.id.startswith("po_") and (made.status, made.amount, made.method) == ("pending", 5_000, "standard")
    assert stripe_server.balance(account) == 0
    # It belongs to the connected account: the platform neither lists nor reads it.
    assert sdk.v1.payouts.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.payouts.retrieve(made.id)
    assert sdk.v1.payouts.retrieve(made.id, options={"stripe_account": account}).id == made.id
    assert [p.id for p in sdk.v1.payouts.list(options={"stripe_account": account}).data] == [made.id]
    kinds = [t.type for t in sdk.v1.balance_transactions.list(options={"stripe_account": account}).data]
    assert kinds == ["payout", "payment"]


def test_payouts_need_payouts_enabled_and_a_known_account(app, sdk, stripe_server, stripe_app_config):
    paused = stripe_account(app, stripe_server, payouts_enabled=False)
    transfer(sdk, paused)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        sdk.v1.payouts.create(params={"amount": 100, "currency": "cny"}, options={"stripe_account": paused})
    assert exc.value.code == "payouts_not_allowed"
    with pytest.raises(stripe.PermissionError) as unknown:
        sdk.v1.payouts.create(params={"amount": 100, "currency": "cny"}, options={"stripe_account": "acct_nobody"})
    assert unknown.value.http_status == 403 and unknown.value.json_body["error"]["code"] == "account_invalid"


def test_a_payout_is_paid_then_may_still_fail_and_its_money_returns_to_the_account(sdk, stripe_server, account):
    transfer(sdk, account, 3_000)
    made = sdk.v1.payouts.create(params={"amount": 3_000, "currency": "cny"}, options={"stripe_account": account})
    paid = stripe_server.pay_payout(made.id)
    assert (paid["type"], paid["account"], paid["data"]["object"]["status"]) == ("payout.paid", account, "paid")
    failed = stripe_server.fail_payout(made.id, code="account_closed")
    obj = failed["data"]["object"]
    assert (failed["type"], obj["status"], obj["failure_code"]) == ("payout.failed", "failed", "account_closed")
    assert failed["data"]["previous_attributes"] == {"status": "paid"}
    assert stripe_server.balance(account) == 3_000
    back = sdk.v1.balance_transactions.retrieve(obj["failure_balance_transaction"],
                                                options={"stripe_account": account})
    assert (back.type, back.amount, back.reporting_category) == ("payout_failure", 3_000, "payout_reversal")
    with pytest.raises(ValueError):
        stripe_server.pay_payout(made.id)


def test_a_transfer_is_reversed_in_part_or_whole(sdk, stripe_server, account):
    made = transfer(sdk, account, 4_000)
    part = stripe_server.reverse_transfer(made.id, 1_500)["data"]["object"]
    assert (part["amount_reversed"], part["reversed"], part["reversals"]["total_count"]) == (1_500, False, 1)
    whole = stripe_server.reverse_transfer(made.id)["data"]["object"]
    assert (whole["amount_reversed"], whole["reversed"]) == (4_000, True)
    assert stripe_server.balance(account) == 0 and stripe_server.balance() == 0
    with pytest.raises(ValueError):
        stripe_server.reverse_transfer(made.id, 1)


def test_balance_transactions_list_by_created_time_and_page_like_stripe(sdk, stripe_server):
    made = [stripe_server.add_balance_transaction(100 * i, "cny", "charge", fee=i, created=1_700_000_000 + i)
            for i in range(1, 8)]
    listed = sdk.v1.balance_transactions.list(params={"limit": 3})
    assert [t.id for t in listed.data] == [t["id"] for t in reversed(made)][:3] and listed.has_more
    window = sdk.v1.balance_transactions.list(params={"created": {"gte": 1_700_000_002, "lt": 1_700_000_005}})
    assert [t.created for t in window.data] == [1_700_000_004, 1_700_000_003, 1_700_000_002]
    assert window.data[0].net == 400 - 4 and window.data[0].fee_details[0].amount == 4
    exact = sdk.v1.balance_transactions.list(params={"created": 1_700_000_006})
    assert [t.amount for t in exact.data] == [600]
    pages, after = [], None
    while True:
        page = sdk.v1.balance_transactions.list(params={"limit": 2, **({"starting_after": after} if after else {})})
        pages.append([t.id for t in page.data])
        if not page.has_more:
            break
        after = page.data[-1].id
    assert [i for p in pages for i in p] == [t["id"] for t in reversed(made)] and len(pages) == 4
    everything = list(sdk.v1.balance_transactions.list(params={"limit": 2}).auto_paging_iter())
    assert len(everything) == 7
    assert [t.id for t in sdk.v1.balance_transactions.list(params={"type": "payout"}).data] == []
    with pytest.raises(stripe.InvalidRequestError):
        sdk.v1.balance_transactions.list(params={"created": {"after": 1}})
    refused = requests.post(f"{stripe_server.url}/v1/balance_transactions", data={"amount": 1},
                            headers={"Authorization": f"Bearer {stripe_server.api_key}"}, timeout=5)
    assert refused.status_code == 404  # made by the movements themselves, never by a request


def test_a_top_up_payment_leaves_a_charge_on_the_platform_balance(sdk, stripe_server, stripe_app_config):
    intent = sdk.v1.payment_intents.create(params={"amount": 2_000, "currency": "cny"})
    stripe_server.succeed_payment_intent(intent.id)
    [charge] = sdk.v1.balance_transactions.list(params={"type": "charge"}).data
    assert (charge.amount, charge.reporting_category, charge.source.startswith("ch_")) == (2_000, "charge", True)
    assert stripe_server.balance() == 2_000
