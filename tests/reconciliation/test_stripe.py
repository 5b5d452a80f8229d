"""Stripe balance transactions: the CSV export (decimal amounts read exactly) and the API (through the SDK,
against the Stripe-shaped test server and a fake of the list call), matched to payouts and top-ups."""

import datetime as dt

import pytest

from core.errors import ServiceUnavailable, ValidationFailed
from payments.reconciliation import importers, service
from payments.reconciliation.models import ImportMethod, LineState, MatchRule, Source
from tests.reconciliation.conftest import DAY, at, stripe_csv

WINDOW = 3


def lines_of(session, rec):
    return {line.line_no: line for line in service.list_lines(session, rec, limit=200, cursor=None).items}


@pytest.mark.parametrize("raw,currency,fen", [
    ("1,234.50", "CNY", 123_450), ("-0.30", "CNY", -30), ("12", "CNY", 1_200), ("12.5", "CNY", 1_250),
    ("1,234,567.89", "CNY", 123_456_789), ("1.10", "CNY", 110), ("0.07", "CNY", 7), ("-1,000", "JPY", -1_000),
    ("12.500", "CNY", 1_250), ("12.345", "CNY", None), ("1.5", "JPY", None), ("1,23.00", "CNY", None),
    ("12,34", "CNY", None), ("", "CNY", None), ("1e3", "CNY", None), ("¥12", "CNY", None), ("--1", "CNY", None),
])
def test_stripe_amounts_become_minor_units_exactly(raw, currency, fen):
    assert importers._minor_units(raw, currency) == fen


def test_a_stripe_export_matches_transfers_to_payouts_and_charges_to_top_ups(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    payout = books.payout(1_234_50, method="stripe", transfer_id="tr_1TestTransfer")
    named = books.top_up(5_000, card=rworld["card"], member=rworld["member"])
    unnamed = books.top_up(7_000, DAY + dt.timedelta(days=1), card=rworld["card"], member=rworld["member"])
    missing = books.top_up(9_900, card=rworld["card"], member=rworld["member"])
    rec, created = service.import_file(session, maker, source=Source.STRIPE, window_days=WINDOW, filename="bt.csv",
                                       fileobj=stripe_csv(
        'txn_1,transfer,tr_1TestTransfer,"-1,234.50",0.00,"-1,234.50",cny,2026-11-02 02:00,2026-11-02 02:00,',
        f'txn_2,charge,ch_1,50.00,1.75,48.25,cny,2026-11-01 17:30,2026-11-09 00:00,'
        f'Union member card top-up {named.public_id}',
        "txn_3,charge,ch_2,70.00,2.10,67.90,cny,2026-11-03 01:00:00,2026-11-10 00:00:00,",
        "txn_4,payout,po_1Platform,-300.00,0.00,-300.00,cny,2026-11-03 08:00,2026-11-03 08:00,STRIPE PAYOUT",
        "txn_5,stripe_fee,,-2.00,0.00,-2.00,cny,2026-11-03 09:00,2026-11-03 09:00,Billing"))
    assert created and rec.account == "stripe:clearing" and rec.method is ImportMethod.FILE
    found = lines_of(session, rec)
    assert (found[1].amount, found[1].fee, found[1].type, found[1].external_id) == (123_450, 0, "transfer", "txn_1")
    assert found[1].state is LineState.MATCHED and [i.id for i in found[1].items] == [payout.public_id]
    # 17:30 UTC on the 1st is 01:30 on the 2nd in 银川: the business day is the 2nd.
    assert found[2].value_date == DAY and (found[2].amount, found[2].fee) == (-5_000, 175)
    assert found[2].state is LineState.MATCHED and [i.id for i in found[2].items] == [named.public_id]
    assert found[3].state is LineState.MATCHED and found[3].rule is MatchRule.AMOUNT_DATE
    assert [i.id for i in found[3].items] == [unnamed.public_id]
    assert found[4].state is found[5].state is LineState.UNMATCHED_EXTERNAL
    assert found[5].difference == 200
    assert found[6].state is LineState.UNMATCHED_INTERNAL and found[6].reference == missing.public_id
    assert (rec.total_out, rec.total_in, rec.total_fees) == (123_450 + 30_000 + 200, 12_000, 385)


@pytest.mark.parametrize("line,field", [
    ("txn_1,charge,ch_1,12.345,0.00,12.345,cny,2026-11-02 02:00,2026-11-02 02:00,x", "line 1.amount"),
    ("txn_1,charge,ch_1,50.00,1.75,48.00,cny,2026-11-02 02:00,2026-11-02 02:00,x", "line 1.net"),
    ("txn_1,charge,ch_1,50.00,1.75,48.25,cny,yesterday,2026-11-02 02:00,x", "line 1.created"),
    ("txn_1,charge,ch_1,50.00,1.75,48.25,yuan,2026-11-02 02:00,2026-11-02 02:00,x", "line 1.currency"),
    (",charge,ch_1,50.00,1.75,48.25,cny,2026-11-02 02:00,2026-11-02 02:00,x", "line 1.id"),
])
def test_a_bad_stripe_export_line_is_refused(session, rworld, line, field):
    with pytest.raises(ValidationFailed) as refused:
        service.import_file(session, rworld["a"]["maker"], source=Source.STRIPE, window_days=WINDOW,
                            fileobj=stripe_csv(line), filename="bt.csv")
    assert field in refused.value.errors, refused.value.errors


def test_a_file_that_is_not_a_stripe_export_is_refused(session, rworld):
    with pytest.raises(ValidationFailed) as refused:
        service.import_file(session, rworld["a"]["maker"], source=Source.STRIPE, window_days=WINDOW,
                            fileobj=stripe_csv("2026-11-02,x,1,CNY,d", header="date,reference,amount,currency,"
                                                                              "description"), filename="bt.csv")
    assert "columns id, type, source" in refused.value.errors["file"][0]


class FakeBalanceTransactions:
    """Stands in for the SDK's list call: the transactions of [gte, lt), as the API gives them."""

    def __init__(self, transactions):
        self.transactions, self.calls = transactions, []

    def list(self, *, created_gte, created_lt, max_items):
        self.calls.append((created_gte, created_lt, max_items))
        found = [t for t in self.transactions if created_gte <= t["created"] < created_lt]
        if len(found) > max_items:
            raise ValidationFailed({"until": ["too many"]})
        return found


def api_txn(txn_id, type_, source, amount, when, *, fee=0, description=None):
    return {"id": txn_id, "object": "balance_transaction", "type": type_, "source": source, "amount": amount,
            "fee": fee, "net": amount - fee, "currency": "cny", "created": int(when.timestamp()),
            "description": description}


def test_the_api_import_reads_the_period_and_matches(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    payout = books.payout(8_800, method="stripe", transfer_id="tr_1Api")
    top_up = books.top_up(5_000, card=rworld["card"], member=rworld["member"])
    fake = FakeBalanceTransactions([
        api_txn("txn_a", "transfer", "tr_1Api", -8_800, at(DAY, 9)),
        api_txn("txn_b", "charge", {"id": "ch_1", "object": "charge"}, 5_000, at(DAY, 11), fee=150,
                description=f"Union member card top-up {top_up.public_id}"),
        api_txn("txn_c", "charge", "ch_2", 1_000, at(DAY + dt.timedelta(days=1), 9)),  # after the period
    ])
    rec, created = service.import_stripe_api(session, maker, fake, since=DAY, until=DAY, window_days=WINDOW,
                                             today=DAY + dt.timedelta(days=5))
    assert created and rec.method is ImportMethod.API and (rec.period_start, rec.period_end) == (DAY, DAY)
    assert fake.calls == [(int(at(DAY, 0).timestamp()), int(at(DAY + dt.timedelta(days=1), 0).timestamp()),
                           service.DEFAULT_API_MAX_LINES)]
    assert (rec.lines_count, rec.matched, rec.unmatched_external, rec.unmatched_internal) == (2, 2, 0, 0)
    found = lines_of(session, rec)
    assert [i.id for i in found[1].items] == [payout.public_id]
    assert found[2].reference == "ch_1" and found[2].fee == 150
    again, created_again = service.import_stripe_api(session, maker, fake, since=DAY, until=DAY, window_days=WINDOW,
                                                     today=DAY + dt.timedelta(days=5))
    assert not created_again and again.id == rec.id


def test_the_api_import_checks_its_period(session, rworld):
    fake = FakeBalanceTransactions([])
    maker = rworld["a"]["maker"]
    for since, until, field in ((DAY, DAY - dt.timedelta(days=1), "until"),
                                (DAY, DAY + dt.timedelta(days=100), "until"),
                                (DAY, DAY + dt.timedelta(days=9), "until")):
        with pytest.raises(ValidationFailed) as refused:
            service.import_stripe_api(session, maker, fake, since=since, until=until, window_days=WINDOW,
                                      today=DAY + dt.timedelta(days=5))
        assert field in refused.value.errors
    assert fake.calls == []
    with pytest.raises(ServiceUnavailable):
        service.import_stripe_api(session, maker, importers.DisabledBalanceTransactions(), since=DAY, until=DAY,
                                  window_days=WINDOW, today=DAY)


def test_the_api_import_through_the_sdk_against_the_stripe_test_server(client, session, rworld, stripe_server,
                                                                        stripe_app_config):
    books = rworld["books"]
    top_up = books.top_up(6_600, card=rworld["card"], member=rworld["member"])
    payout = books.payout(12_000, method="stripe", transfer_id="tr_1ServerTransfer")
    when, day = int(at(DAY, 10).timestamp()), DAY
    stripe_server.add_balance_transaction(6_600, "cny", "charge", source="ch_1Server", fee=200,
                                          description=f"Union member card top-up {top_up.public_id}", created=when)
    stripe_server.add_balance_transaction(-12_000, "cny", "transfer", source="tr_1ServerTransfer", created=when)
    stripe_server.add_balance_transaction(-500, "cny", "transfer", source="tr_1NextDay", created=when + 86_400)
    for n in range(120):  # more than one page of 100
        stripe_server.add_balance_transaction(-1, "cny", "stripe_fee", created=when + n)
    resp = client.post("/api/v1/reconciliations", headers=rworld["h"]["maker"],
                       json={"source": "stripe", "since": day.isoformat(), "until": day.isoformat()})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert (body["lines_count"], body["matched"], body["unmatched_external"], body["unmatched_internal"]) == (
        122, 2, 120, 0)
    assert {line["items"][0]["id"] for line in body["lines"] if line["state"] == "matched"} == {
        payout.public_id, top_up.public_id}
    listed = stripe_server.requests_to("GET", "/v1/balance_transactions")
    assert len(listed) == 2 and listed[0].params["limit"] == "100"
    assert listed[0].params["created"]["gte"] and listed[0].params["created"]["lt"]
    stripe_server.fail_next(500, path="/v1/balance_transactions")
    down = client.post("/api/v1/reconciliations", headers=rworld["h"]["maker"],
                       json={"source": "stripe", "since": day.isoformat(), "until": day.isoformat()})
    assert down.status_code == 503 and down.get_json()["error"] == "stripe_unavailable"
