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
from payments.settlement.models import SettlementStatus
from tests.checkout.conftest import PIN, fund, guard
from tests.reports.conftest import (
    EMPTY_CITY,
    PHARMACY_CITY,
    PHARMACY_REGION,
    PROVINCE,
    SHOP_CITY,
    balance_of,
    snapshot,
)

# The story's merchants (the database may hold others).
OURS = MerchantFilter(region=PROVINCE)


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
    ours = scenario["program_ids"]
    # Every program, in the order they were created: the story's three among them (the database may hold others).
    everyone = [r.program_id for r in service.program_figures(session)]
    assert [p for p in everyone if p in ours] == ours
    rows = service.program_figures(session, program_ids=ours)
    assert [r.program_id for r in rows] == ours
    assert {r.program_id: amounts(r) for r in service.program_figures(session) if r.program_id in ours} == {
        r.program_id: amounts(r) for r in rows}
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
    rows = service.program_months(session, program_ids=scenario["program_ids"], since=since, until=until)
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
    total = service.sum_programs(service.program_figures(session, program_ids=scenario["program_ids"]))
    assert (total.funded, total.disbursed, total.returned, total.balance) == (1_200_000, 80_000, 100_000, 1_165_000)
    # Every program together: the story added its own to what the database held before.
    before, everyone = scenario["before"]["programs"], service.sum_programs(service.program_figures(session))
    moved = {n: getattr(everyone, n) - getattr(before, n) for n in ("funded", "disbursed", "spent", "returned")}
    assert moved == {"funded": 1_200_000, "disbursed": 80_000, "spent": 15_000, "returned": 100_000}
    assert everyone.balance - (before.balance or 0) == 1_165_000  # no programs before: no balance either


def test_merchant_figures_match_the_hand_computation(session, scenario):
    page = service.merchant_figures(session, merchants=OURS)
    rows = {r.merchant_id: r for r in page.items}
    assert set(rows) == {scenario["pharmacy"].public_id, scenario["shop"].public_id}
    pharmacy = rows[scenario["pharmacy"].public_id]
    assert (pharmacy.payable, pharmacy.in_transit, pharmacy.receivable, pharmacy.paid) == (1_900, 10_000, 11_900, 3_000)
    assert (pharmacy.payments, pharmacy.sales, pharmacy.union_subsidy) == (2, 38_000, 4_000)
    assert (pharmacy.refunds, pharmacy.refunded, pharmacy.union_refunded) == (2, 24_000, 3_000)
    assert (pharmacy.settled, pharmacy.fees) == (14_000, 100)
    assert (pharmacy.category, pharmacy.region, pharmacy.name) == ("pharmacy", PHARMACY_REGION, "仁心药房")
    shop = rows[scenario["shop"].public_id]
    assert (shop.payable, shop.in_transit, shop.receivable, shop.sales, shop.paid) == (5_000, 0, 5_000, 5_000, 0)
    total = service.merchant_totals(session, merchants=OURS)
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
    in_province = lambda category: MerchantFilter(category=category, region=PROVINCE)  # noqa: E731
    assert ids(service.merchant_figures(session, merchants=in_province("dining"))) == [shop]
    assert ids(service.merchant_figures(session, merchants=in_province("pharmacy"))) == [pharmacy]
    assert ids(service.merchant_figures(session, merchants=in_province("supermarket"))) == []
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(region=PHARMACY_CITY))) == [pharmacy]
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(region=SHOP_CITY))) == [shop]
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(region=PHARMACY_REGION))) == [pharmacy]
    assert ids(service.merchant_figures(session, merchants=MerchantFilter(region=EMPTY_CITY))) == []
    assert ids(service.merchant_figures(session, merchants=OURS)) == [pharmacy, shop]
    first = service.merchant_figures(session, merchants=OURS, limit=1)
    assert ids(first) == [pharmacy] and first.next_cursor
    second = service.merchant_figures(session, merchants=OURS, limit=1, cursor=first.next_cursor)
    assert ids(second) == [shop] and second.next_cursor is None
    assert service.merchant_totals(session, merchants=in_province("dining")).receivable == 5_000
    assert service.merchant_totals(session, merchants=MerchantFilter(region=PHARMACY_CITY)).receivable == 11_900
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


TILES = ("bank", "clearing", "in_transit", "payables", "open_exceptions")
DAY = ("payments", "charged", "refunded", "settled", "fees")


def test_tiles_and_daily_activity(session, scenario):
    """The tiles and the days add up the whole database: the story moves them by its own amounts."""
    before, tiles = scenario["before"]["tiles"], service.tiles(session)
    # The bank took both fundings in and paid one payout out.
    assert {n: getattr(tiles, n) - getattr(before, n) for n in TILES} == {
        "bank": 1_197_000, "clearing": 0, "in_transit": 10_000, "payables": 6_900, "open_exceptions": 1}
    days = service.daily_activity(session, today=scenario["today"])
    assert len(days) == 30 and days[-1].day == scenario["today"]
    moved = [{n: getattr(d, n) - getattr(scenario["before"]["days"][d.day], n) for n in DAY} for d in days]
    assert moved[-1] == {"payments": 3, "charged": 43_000, "refunded": 14_000, "settled": 1_000, "fees": 0}
    assert moved[-2] == {"payments": 0, "charged": 0, "refunded": 0, "settled": 3_000, "fees": 0}
    assert moved[-3] == {"payments": 0, "charged": 0, "refunded": 0, "settled": 10_000, "fees": 100}
    assert all(m == dict.fromkeys(DAY, 0) for m in moved[:-3])


def test_window_checks(session):
    with pytest.raises(ValidationFailed):
        service.program_figures(session, since=dt.datetime(2026, 1, 1))
    with pytest.raises(ValidationFailed):
        service.period(dt.date(2026, 2, 1), dt.date(2026, 1, 1))
    now = utcnow()
    with pytest.raises(ValidationFailed):
        service.merchant_figures(session, since=now, until=now)


def test_reports_that_select_nothing_are_empty(session, rworld):
    """Programs, merchants and days that none match: empty reports, zero totals (whatever else the database holds)."""
    assert service.program_figures(session, program_ids=[]) == []
    assert service.program_figures(session, program_ids=["prg_unknown"]) == []
    nowhere = MerchantFilter(region=EMPTY_CITY)
    page = service.merchant_figures(session, merchants=nowhere)
    assert page.items == [] and page.next_cursor is None
    assert service.merchant_totals(session, merchants=nowhere) == service.MerchantFigures(
        merchant_id="", name="", category="", region="", status="")
    assert service.merchant_totals(session, merchants=MerchantFilter(region=PROVINCE, category="supermarket")).sales == 0
    # Thirty days long before anything was made.
    days = service.daily_activity(session, today=dt.date(2001, 1, 31))
    assert len(days) == 30 and all(d == service.DayFigures(day=d.day) for d in days)


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
    whole = snapshot(session, yesterday)
    run = settlement.settle_day(session, rworld["a"]["approver"], yesterday,
                                terms=settlement.Terms(delay_days=1, fee_bp=100))
    # The run settles every merchant with money waiting (the database may hold others' too).
    [stl] = [s for s in run.created if s.merchant_id == shop.id]
    assert (stl.fee, stl.net) == (100, 7_900)
    [after] = service.merchant_figures(session, merchants=only, since=since, until=until).items
    assert (after.payable, after.in_transit, after.receivable) == (0, 7_900, 7_900)
    assert (after.sales, after.refunded, after.settled, after.fees, after.paid) == (10_000, 2_000, 7_900, 100, 0)
    # The whole books moved by what the run settled, the shop's 7,900 among it.
    moved = sum(s.net for s in run.created if s.status == SettlementStatus.SETTLED)
    assert moved >= 7_900
    assert service.tiles(session).in_transit - whole["tiles"].in_transit == moved
    assert balance_of(snapshot(session, yesterday)["trial_balance"], "payout") - balance_of(
        whole["trial_balance"], "payout") == -moved
    assert service.daily_activity(session, days=2)[0].settled - whole["days"][yesterday].settled == moved
    assert ledger.verify(session).ok
