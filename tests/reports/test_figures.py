"""Programs' and merchants' figures against the hand-computed story of conftest.py."""

import datetime as dt

import pytest

from cards import service as cards
from core.db import utcnow
from core.errors import NotFound, ValidationFailed
from core.i18n import BUSINESS_TZ
from payments import ledger
from payments.checkout import service as checkout
from payments.reports import service
from payments.reports.service import MerchantFilter
from payments.settlement import service as settlement
from tests.checkout.conftest import PIN, fund, guard


def by_id(rows):
    return {r.program_id: r for r in rows}


def amounts(row):
    return {name: getattr(row, name) for name in ("funded", "disbursed", "spent", "subsidised", "expired",
                                                  "returned", "clawed_back", "balance")}


AID = {"funded": 1_000_000, "disbursed": 60_000, "spent": 15_000, "subsidised": 1_000, "expired": 36_000,
       "returned": 100_000, "clawed_back": 40_000, "balance": 985_000}
GENERAL = {"funded": 200_000, "disbursed": 20_000, "spent": 0, "subsidised": 0, "expired": 0, "returned": 0,
           "clawed_back": 0, "balance": 180_000}
IDLE = dict.fromkeys(AID, 0)


def test_program_figures_match_the_hand_computation(session, scenario):
    rows = service.program_figures(session)
    assert [r.program_id for r in rows] == [scenario[k].public_id for k in ("aid", "general", "idle")]
    got = by_id(rows)
    assert amounts(got[scenario["aid"].public_id]) == AID
    assert got[scenario["aid"].public_id].aid_spent == 14_000
    assert amounts(got[scenario["general"].public_id]) == GENERAL
    assert amounts(got[scenario["idle"].public_id]) == IDLE
    assert got[scenario["aid"].public_id].name == "医药救助"


def test_program_figures_of_some_programs_and_a_period(session, scenario):
    aid = scenario["aid"].public_id
    only = service.program_figures(session, program_ids=[aid])
    assert [amounts(r) for r in only] == [AID]
    # The ledger moved everything today: a period before it has nothing, but the balance is today's.
    long_ago = service.period(dt.date(2020, 1, 1), dt.date(2020, 12, 31))
    past = service.program_figures(session, program_ids=[aid], since=long_ago[0], until=long_ago[1])
    assert amounts(past[0]) == {**IDLE, "balance": 985_000}
    around = service.period(scenario["today"] - dt.timedelta(days=1), scenario["today"] + dt.timedelta(days=1))
    assert amounts(service.program_figures(session, program_ids=[aid], since=around[0], until=around[1])[0]) == AID
    # Open on one side only.
    assert amounts(service.program_figures(session, program_ids=[aid], since=around[0])[0]) == AID
    assert amounts(service.program_figures(session, program_ids=[aid], until=around[0])[0]) == {**IDLE,
                                                                                              "balance": 985_000}
    assert service.program_figures(session, program_ids=["prg_unknown"]) == []


def test_program_figures_by_month(session, scenario):
    today = scenario["today"]
    first = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)  # the first of last month
    since, until = service.period(first, today)
    rows = service.program_months(session, since=since, until=until)
    months = [first.strftime("%Y-%m"), today.strftime("%Y-%m")]
    aid = [r for r in rows if r.program_id == scenario["aid"].public_id]
    assert [r.month for r in aid] == months
    assert amounts(aid[0]) == {**IDLE, "balance": None}
    assert amounts(aid[1]) == {**AID, "balance": None}
    assert len(rows) == 3 * 2
    totals = service.months_total(rows)
    assert [t.month for t in totals] == months
    assert totals[1].funded == 1_200_000 and totals[1].disbursed == 80_000 and totals[1].spent == 15_000
    with pytest.raises(ValidationFailed):
        service.program_months(session, since=until, until=since)
    with pytest.raises(ValidationFailed):
        service.program_months(session, since=since - dt.timedelta(days=40 * 31), until=until)


def test_program_totals_add_up(session, scenario):
    total = service.sum_programs(service.program_figures(session))
    assert (total.funded, total.disbursed, total.returned, total.balance) == (1_200_000, 80_000, 100_000, 1_165_000)


def test_merchant_figures_match_the_hand_computation(session, scenario):
    page = service.merchant_figures(session)
    rows = {r.merchant_id: r for r in page.items}
    pharmacy = rows[scenario["pharmacy"].public_id]
    assert (pharmacy.payable, pharmacy.in_transit, pharmacy.receivable, pharmacy.paid) == (1_900, 10_000, 11_900, 3_000)
    assert (pharmacy.payments, pharmacy.sales, pharmacy.union_subsidy) == (2, 38_000, 4_000)
    assert (pharmacy.refunds, pharmacy.refunded, pharmacy.union_refunded) == (2, 24_000, 3_000)
    assert (pharmacy.settled, pharmacy.fees) == (14_000, 100)
    assert (pharmacy.category, pharmacy.region, pharmacy.name) == ("pharmacy", "640104", "仁心药房")
    shop = rows[scenario["shop"].public_id]
    assert (shop.payable, shop.in_transit, shop.receivable, shop.sales, shop.paid) == (5_000, 0, 5_000, 5_000, 0)
    total = service.merchant_totals(session)
    assert (total.receivable, total.sales, total.refunded, total.settled, total.paid) == (16_900, 43_000, 24_000,
                                                                                        14_000, 3_000)


def test_merchant_figures_in_a_period(session, scenario):
    today = scenario["today"]
    # Today: the payments, the first refund (the second is dated after the purses' expiry), today's settlement.
    since, until = service.period(today, today)
    one = service.merchant_figures(session, merchants=MerchantFilter(merchant_ids=(scenario["pharmacy"].public_id,)),
                                   since=since, until=until).items
    assert len(one) == 1
    row = one[0]
    assert (row.sales, row.refunded, row.union_refunded, row.settled, row.fees) == (38_000, 14_000, 1_000, 1_000, 0)
    assert (row.receivable, row.paid) == (11_900, 3_000)  # owed now; paid today
    since, until = service.period(today - dt.timedelta(days=2), today - dt.timedelta(days=1))
    row = service.merchant_figures(session, merchants=MerchantFilter(merchant_ids=(scenario["pharmacy"].public_id,)),
                                   since=since, until=until).items[0]
    assert (row.sales, row.refunded, row.settled, row.fees, row.paid) == (0, 0, 13_000, 100, 0)
    # A window not on day boundaries counts the settlements of the days that start in it.
    noon = service.day_start(today - dt.timedelta(days=2)) + dt.timedelta(hours=12)
    row = service.merchant_figures(session, merchants=MerchantFilter(merchant_ids=(scenario["pharmacy"].public_id,)),
                                   since=noon, until=noon + dt.timedelta(days=1)).items[0]
    assert row.settled == 3_000


def test_merchant_filters_and_pages(session, scenario):
    pharmacy, shop = scenario["pharmacy"].public_id, scenario["shop"].public_id
    ids = lambda page: [r.merchant_id for r in page.items]
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(category="dining"))) == [shop]
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(region="640100"))) == [pharmacy]
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(region="640400"))) == [shop]
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(region="640000"))) == [pharmacy, shop]
    first = service.merchant_figures(session, limit=1)
    assert ids(first) == [pharmacy] and first.next_cursor
    second = service.merchant_figures(session, limit=1, cursor=first.next_cursor)
    assert ids(second) == [shop] and second.next_cursor is None
    assert service.merchant_totals(session, merchants=MerchantFilter(category="dining")).receivable == 5_000
    with pytest.raises(ValidationFailed):
        service.merchant_figures(session, merchants=MerchantFilter(region="999999"))
    with pytest.raises(ValidationFailed):
        service.merchant_figures(session, merchants=MerchantFilter(category="casino"))


def test_merchant_scope(session, scenario):
    a, pharmacy, shop = scenario["a"], scenario["pharmacy"].public_id, scenario["shop"].public_id
    assert service.merchant_scope(session, a["auditor"], None) == MerchantFilter()
    assert service.merchant_scope(session, a["maker"], shop) == MerchantFilter(merchant_ids=(shop,))
    assert service.merchant_scope(session, a["pharmacy_owner"], None) == MerchantFilter(merchant_ids=(pharmacy,))
    assert service.merchant_scope(session, a["pharmacy_manager"], pharmacy) == MerchantFilter(merchant_ids=(pharmacy,))
    for actor, asked in ((a["pharmacy_owner"], shop), (a["maker"], "mch_nope"), (a["pharmacy_cashier"], pharmacy)):
        with pytest.raises(NotFound):
            service.merchant_scope(session, actor, asked)


def test_tiles_and_daily_activity(session, scenario):
    tiles = service.tiles(session)
    # The bank took both fundings in and paid one payout out.
    assert (tiles.bank, tiles.clearing, tiles.in_transit, tiles.payables, tiles.open_exceptions) == (
        1_197_000, 0, 10_000, 6_900, 1)
    days = service.daily_activity(session, today=scenario["today"])
    assert len(days) == 30 and days[-1].day == scenario["today"]
    assert (days[-1].payments, days[-1].charged, days[-1].refunded, days[-1].settled) == (3, 43_000, 14_000, 1_000)
    assert (days[-2].settled, days[-3].settled, days[-3].fees) == (3_000, 10_000, 100)
    assert sum(d.payments for d in days[:-1]) == 0


def test_window_checks(session):
    with pytest.raises(ValidationFailed):
        service.program_figures(session, since=dt.datetime(2026, 1, 1))
    with pytest.raises(ValidationFailed):
        service.period(dt.date(2026, 2, 1), dt.date(2026, 1, 1))
    now = utcnow()
    with pytest.raises(ValidationFailed):
        service.merchant_figures(session, since=now, until=now)


def test_an_empty_database_has_empty_reports(session):
    assert service.program_figures(session) == []
    assert service.merchant_figures(session).items == []
    assert service.merchant_totals(session).receivable == 0
    tiles = service.tiles(session)
    assert (tiles.bank, tiles.in_transit, tiles.payables, tiles.open_exceptions) == (0, 0, 0, 0)
    assert all(d.payments == 0 and d.settled == 0 for d in service.daily_activity(session))


def test_figures_follow_a_real_settlement(session, app, rworld):
    """Settling a day moves money from the payable into transit: the receivable loses only the fee."""
    shop, who = rworld["shop"], "丁"
    yesterday = utcnow().astimezone(BUSINESS_TZ).date() - dt.timedelta(days=1)
    noon = service.day_start(yesterday) + dt.timedelta(hours=12)
    fund(session, rworld["card"][who], 50_000)
    codes = cards.PaymentCodes(app.extensions["kv"], b"k" * 32, ttl=60, per_minute=20)
    req = checkout.PayRequest(store_id=shop.stores[0].public_id, amount=10_000, card_id=rworld["card"][who].public_id,
                              pin=PIN)
    paid, _ = checkout.pay(session, rworld["a"][who], req, codes=codes, pins=guard(app), max_amount=5_000_000,
                           now=noon)
    checkout.refund(session, rworld["a"]["shop_owner"], paid.public_id, amount=2_000, now=noon + dt.timedelta(hours=1))
    only = MerchantFilter(merchant_ids=(shop.public_id,))
    since, until = service.period(yesterday, yesterday)
    [before] = service.merchant_figures(session, merchants=only, since=since, until=until).items
    assert (before.payable, before.in_transit, before.receivable, before.settled) == (8_000, 0, 8_000, 0)
    run = settlement.settle_day(session, rworld["a"]["approver"], yesterday,
                                terms=settlement.Terms(delay_days=1, fee_bp=100))
    [stl] = run.created
    assert (stl.fee, stl.net) == (100, 7_900)
    [after] = service.merchant_figures(session, merchants=only, since=since, until=until).items
    assert (after.payable, after.in_transit, after.receivable) == (0, 7_900, 7_900)
    assert (after.sales, after.refunded, after.settled, after.fees, after.paid) == (10_000, 2_000, 7_900, 100, 0)
    assert service.tiles(session).in_transit == 7_900
    assert service.daily_activity(session, days=2)[0].settled == 7_900
    assert ledger.verify(session).ok
