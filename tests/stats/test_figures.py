"""The console's figures against the hand-computed province (tests/stats/conftest.py), how they refresh, and
whose subtree each reader sees."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import func, select

from core.auth import Actor
from core.db import utcnow
from core.errors import Forbidden, NotFound, ValidationFailed
from core.i18n import BUSINESS_TZ
from payments.checkout import service as checkout
from payments.checkout.models import Payment
from payments.reports import service as reports
from stats import service as stats
from stats.models import StatsState, UnionDay
from tests.checkout.conftest import PIN, guard
from tests.stats.conftest import refresh

CARDS = ("cards_issued", "cards_active", "cards_frozen", "cards_not_activated", "cards_lost", "cards_used_30d")


def offers_added(o, baseline) -> dict[str, int]:
    return {k: n - baseline.get(k, 0) for k, n in o.offers_by_category}


def test_province_overview_matches_the_hand_computation(session, province):
    o = stats.overview(session, province["tree"]["fed"])
    c = o.counts
    assert (c.members, c.hardship_members) == (6, 1)
    assert {k: getattr(c, k) for k in CARDS} == {"cards_issued": 5, "cards_active": 3, "cards_frozen": 1,
                                                 "cards_not_activated": 1, "cards_lost": 0, "cards_used_30d": 2}
    assert o.usage_rate == 0.6667  # 2 of 3 active cards paid in the last 30 days
    t = o.total
    assert (t.payments, t.amount, t.discount, t.charged) == (4, 29_000, 3_600, 25_400)
    assert (t.merchant_share, t.union_share, t.refunds, t.refunded, t.union_refunded) == (1_600, 2_000, 1, 1_500, 1_000)
    assert t.union_subsidised == 1_000
    assert (t.members_joined, t.cards_issued, t.cards_activated) == (7, 5, 4)
    recent = o.last_30_days
    assert (recent.payments, recent.charged, recent.merchant_share, recent.union_share) == (3, 20_000, 1_000, 2_000)
    assert (o.merchants, o.stores) == (3, 4)
    categories = {g.key: (g.merchants, g.stores) for g in o.merchants_by_category}
    assert categories == {"dining": (2, 3), "pharmacy": (1, 1), "supermarket": (0, 0), "medical": (0, 0),
                          "culture_sport": (0, 0), "legal": (0, 0), "education": (0, 0), "travel": (0, 0),
                          "other": (0, 0)}
    assert [(g.key, g.name, g.merchants, g.stores) for g in o.merchants_by_city] == [
        ("620100", "兰州市总工会", 2, 3), ("620500", "天水市总工会", 1, 1)]
    assert offers_added(o, province["offer_baseline"]["fed"]) == {
        "culture": 1, "legal": 0, "health": 1, "safety": 0, "entertainment": 0, "everyday": 1}
    [p] = o.programs
    assert (p.program_id, p.name, p.union_name) == (province["program"].public_id, "职工普惠补贴",
                                                    province["tree"]["fed"].name)
    assert (p.funded, p.disbursed, p.spent, p.subsidised, p.expired, p.returned, p.balance) == (
        100_000, 5_000, 1_000, 1_000, 0, 0, 94_000)
    [report] = reports.program_figures(session, program_ids=[p.program_id])
    assert {k: getattr(report, k) for k in stats.PROGRAM_FIGURES} == {k: getattr(p, k) for k in stats.PROGRAM_FIGURES}
    kids = {k.union.name: k for k in o.children}
    assert list(kids) == ["兰州市总工会", "天水市总工会"]
    lz, ts = kids["兰州市总工会"], kids["天水市总工会"]
    assert (lz.counts.members, lz.counts.hardship_members, lz.counts.cards_issued, lz.counts.cards_active,
            lz.counts.cards_frozen, lz.counts.cards_used_30d, lz.counts.usage_rate) == (4, 1, 4, 2, 1, 1, 0.5)
    assert (lz.last_30_days.payments, lz.last_30_days.charged) == (2, 12_000)
    assert (ts.counts.members, ts.counts.cards_issued, ts.counts.cards_active, ts.counts.usage_rate) == (2, 1, 1, 1.0)
    assert (ts.last_30_days.payments, ts.last_30_days.charged) == (1, 8_000)


def test_a_city_sees_its_own_subtree_region_and_offers(session, province):
    tree = province["tree"]
    o = stats.overview(session, tree["lz"])
    assert (o.counts.members, o.counts.cards_active, o.counts.cards_used_30d, o.usage_rate) == (4, 2, 1, 0.5)
    assert (o.total.payments, o.total.charged) == (3, 17_400)
    assert (o.merchants, o.stores) == (2, 3)  # 面馆 and 药房; the suspended teahouse is left out
    assert offers_added(o, province["offer_baseline"]["lz"]) == {
        "culture": 0, "legal": 0, "health": 1, "safety": 0, "entertainment": 0, "everyday": 1}
    assert [k.union.name for k in o.children] == ["城关区总工会"]
    assert o.programs == []  # the federation runs the program, not the city
    grassroots = stats.overview(session, tree["lz_base"])
    assert (grassroots.counts.members, grassroots.children) == (4, [])
    tianshui = stats.overview(session, tree["ts"])
    assert (tianshui.counts.members, tianshui.usage_rate, tianshui.total.charged) == (2, 1.0, 8_000)


def test_the_whole_platform_adds_up_every_federation(session, province):
    fed = province["tree"]["fed"]
    everything = stats.overview(session, None)
    ours = next(k for k in everything.children if k.union.id == fed.id)
    assert ours.counts == stats.overview(session, fed).counts
    roots = stats._sum_counts(k.counts for k in everything.children)
    assert everything.counts == roots
    assert everything.merchants >= 4  # the province's three and 外省超市 at least
    assert province["program"].public_id in [p.program_id for p in everything.programs]


def test_trends_by_month(session, province):
    now = province["now"]
    months = {}
    for when, charged, merchant_share, who in ((now, 9_000, 1_000, "甲"), (now, 3_000, 0, "丙"),
                                               (now - dt.timedelta(days=10), 8_000, 0, "戊"),
                                               (now - dt.timedelta(days=40), 5_400, 600, "乙")):
        key = when.astimezone(BUSINESS_TZ).strftime("%Y-%m")
        row = months.setdefault(key, {"charged": 0, "merchant_share": 0, "payments": 0, "users": set()})
        row["charged"] += charged
        row["merchant_share"] += merchant_share
        row["payments"] += 1
        row["users"].add(who)
    today = now.astimezone(BUSINESS_TZ).date()
    first, last = stats.trend_window(None, None, today)
    rows = stats.trends(session, province["tree"]["fed"], first, last)
    assert len(rows) == 12 and rows[-1].month == f"{today:%Y-%m}"
    assert [r.month for r in rows] == sorted(r.month for r in rows)
    by_month = {r.month: r for r in rows}
    for key, want in months.items():
        r = by_month[key]
        assert (r.payments, r.charged, r.merchant_share) == (want["payments"], want["charged"], want["merchant_share"])
        # Four cards were activated 60 days ago and none closed: each of these months had four in use.
        assert (r.card_users, r.live_cards) == (len(want["users"]), 4)
        assert r.usage_rate == round(len(want["users"]) / 4, 4)
    this = by_month[f"{today:%Y-%m}"]
    assert (this.members_joined, this.union_share, this.union_subsidised, this.refunded) == (7, 2_000, 1_000, 1_500)
    assert (this.aid_funded, this.aid_disbursed, this.aid_spent) == (100_000, 5_000, 1_000)
    issued = by_month[(now - dt.timedelta(days=60)).astimezone(BUSINESS_TZ).strftime("%Y-%m")]
    assert (issued.cards_issued, issued.cards_activated) == (5, 4)
    quiet = [r for r in rows if r.month not in months and r.month != issued.month]
    assert all(r.payments == 0 and r.charged == 0 for r in quiet)
    assert sum(r.payments for r in rows) == 4


def test_trend_window_limits():
    today = dt.date(2026, 11, 26)
    assert stats.trend_window(None, None, today) == (dt.date(2025, 12, 1), dt.date(2026, 11, 1))
    assert stats.trend_window(dt.date(2026, 1, 15), dt.date(2026, 3, 2), today) == (dt.date(2026, 1, 1),
                                                                                      dt.date(2026, 3, 1))
    with pytest.raises(ValidationFailed):
        stats.trend_window(dt.date(2026, 5, 1), dt.date(2026, 4, 1), today)
    with pytest.raises(ValidationFailed):
        stats.trend_window(dt.date(2023, 1, 1), dt.date(2026, 1, 1), today)


def test_figures_are_read_from_the_aggregates_until_the_next_refresh(session, province, app):
    """A payment after a refresh is not in the figures (the pages read the aggregates, not the payments);
    the next refresh, which recomputes only yesterday and today, brings it in."""
    fed, card = province["tree"]["fed"], province["card"]["乙"]
    before = stats.overview(session, fed)
    from cards import service as cards
    from core.models import User

    user = session.scalar(select(User).where(User.member_id == province["people"]["乙"].id))
    codes = cards.PaymentCodes(app.extensions["kv"], b"k" * 32, ttl=60, per_minute=20)
    checkout.pay(session, Actor.of(user), checkout.PayRequest(
        store_id=province["merchants"]["inn"].stores[0].public_id, amount=2_500, card_id=card.public_id, pin=PIN),
        codes=codes, pins=guard(app), max_amount=5_000_000)
    assert session.scalar(select(func.count()).select_from(Payment).where(Payment.card_id == card.id)) == 2
    unchanged = stats.overview(session, fed)
    assert (unchanged.total, unchanged.counts) == (before.total, before.counts)

    done = refresh(session)
    assert done.days == 2 and done.first_day == done.through - dt.timedelta(days=1)
    after = stats.overview(session, fed)
    assert (after.total.payments, after.total.charged) == (before.total.payments + 1, before.total.charged + 2_500)
    assert (after.counts.cards_used_30d, after.usage_rate) == (3, 1.0)  # 乙's card has now paid too
    assert after.refreshed_at >= before.refreshed_at


def test_refresh_is_idempotent_and_resumes_from_its_state(session, province):
    fed = province["tree"]["fed"]
    first = stats.overview(session, fed)
    rows = session.scalar(select(func.count()).select_from(UnionDay))
    refresh(session)
    refresh(session, full=True)
    again = stats.overview(session, fed)
    assert dataclasses.replace(again, refreshed_at=None) == dataclasses.replace(first, refreshed_at=None)
    assert session.scalar(select(func.count()).select_from(UnionDay)) == rows
    state = session.get(StatsState, stats.STATE)
    assert state.through == utcnow().astimezone(BUSINESS_TZ).date() and state.days >= 60


def test_refresh_since_a_day_recomputes_from_it(session, province):
    today = utcnow().astimezone(BUSINESS_TZ).date()
    done = refresh(session, since=today - dt.timedelta(days=45))
    assert (done.first_day, done.days) == (today - dt.timedelta(days=45), 46)
    assert stats.overview(session, province["tree"]["fed"]).total.payments == 4


def test_scope_of_each_reader(session, province):
    tree, staff = province["tree"], province["staff"]
    actor = {name: Actor.of(u) for name, u in staff.items()}
    assert stats.scope_for(session, actor["fed_admin"], None).id == tree["fed"].id
    assert stats.scope_for(session, actor["fed_admin"], tree["qz"].public_id).id == tree["qz"].id
    assert stats.scope_for(session, actor["lz_admin"], None).id == tree["lz"].id
    assert stats.scope_for(session, actor["lz_admin"], tree["lz_base"].public_id).id == tree["lz_base"].id
    for who, outside in (("lz_admin", "ts"), ("lz_admin", "fed"), ("lz_admin", "ts_base"), ("base_admin", "cg"),
                         ("ts_admin", "lz")):
        with pytest.raises(NotFound):
            stats.scope_for(session, actor[who], tree[outside].public_id)
    for who in ("maker", "approver", "auditor", "platform_admin"):
        assert stats.scope_for(session, actor[who], None) is None
        assert stats.scope_for(session, actor[who], tree["ts"].public_id).id == tree["ts"].id
        with pytest.raises(NotFound):
            stats.scope_for(session, actor[who], "uni_nosuchunion")
    for who in ("reviewer", "owner", "member"):
        with pytest.raises(Forbidden):
            stats.scope_for(session, actor[who], None)


def test_breadcrumbs_start_at_the_readers_top(session, province):
    tree = province["tree"]
    assert [u.name for u in stats.breadcrumbs(session, tree["lz_base"], tree["lz"])] == [
        "兰州市总工会", "城关区总工会", "兰州石化工会"]
    assert [u.id for u in stats.breadcrumbs(session, tree["cg"], None)] == [tree["fed"].id, tree["lz"].id,
                                                                             tree["cg"].id]
    assert stats.breadcrumbs(session, None, None) == []
