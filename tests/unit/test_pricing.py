import dataclasses
import datetime as dt
import math
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benefits.pricing import (Applied, Quote, Shopper, Terms, discount_on, percent_of, period_key, price,
                              refusal, round_half_up)

UTC = dt.UTC
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Wednesday 2026-06-10, 12:00 in Shanghai.
NOW = dt.datetime(2026, 6, 10, 4, 0, tzinfo=UTC)


def local(*args) -> dt.datetime:
    """A Shanghai wall-clock time, as the UTC instant pricing receives."""
    return dt.datetime(*args, tzinfo=SHANGHAI).astimezone(UTC)


def offer(id: str = "o1", **fields) -> Terms:
    fields.setdefault("lineage", id)
    fields.setdefault("kind", "percent_off")
    fields.setdefault("value", 1000)
    fields.setdefault("merchant_id", "M1")
    return Terms(id=id, **fields)


def shopper(amount: int = 10_000, **fields) -> Shopper:
    fields.setdefault("merchant_id", "M1")
    fields.setdefault("merchant_category", "dining")
    fields.setdefault("family", "everyday")
    fields.setdefault("now", NOW)
    return Shopper(amount=amount, **fields)


def single(terms: Terms, amount: int = 10_000, **fields) -> Quote:
    return price([terms], shopper(amount, **fields))


# --- helpers ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("numerator, denominator, expected", [
    (0, 1, 0),
    (0, 10_000, 0),
    (1, 2, 1),
    (3, 2, 2),
    (5, 2, 3),
    (1, 3, 0),
    (2, 3, 1),
    (7, 4, 2),
    (4_999, 10_000, 0),
    (5_000, 10_000, 1),
    (15_000, 10_000, 2),
    (25_000, 10_000, 3),
    (10**20 + 5, 10, 10**19 + 1),
])
def test_round_half_up(numerator, denominator, expected):
    assert round_half_up(numerator, denominator) == expected


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=1, max_value=10**9))
def test_round_half_up_matches_exact_arithmetic(numerator, denominator):
    assert round_half_up(numerator, denominator) == math.floor(Fraction(numerator, denominator) + Fraction(1, 2))


@pytest.mark.parametrize("amount, basis_points, expected", [
    (1, 5_000, 1),
    (3, 5_000, 2),
    (2, 5_000, 1),
    (1, 4_999, 0),
    (1_999, 1_200, 240),
    (999, 1_250, 125),
    (10_000, 1_200, 1_200),
    (10_000, 10_000, 10_000),
    (12_345, 0, 0),
    (0, 5_000, 0),
])
def test_percent_of_is_basis_points_rounded_half_up(amount, basis_points, expected):
    assert percent_of(amount, basis_points) == expected


@pytest.mark.parametrize("now, period, expected", [
    (dt.datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "day", "d:2027-01-01"),
    (dt.datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "month", "m:2027-01"),
    (dt.datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "year", "y:2027"),
    (dt.datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "ever", "ever"),
    (dt.datetime(2026, 12, 31, 15, 59, tzinfo=UTC), "day", "d:2026-12-31"),
    (dt.datetime(2026, 12, 31, 15, 59, tzinfo=UTC), "month", "m:2026-12"),
    (dt.datetime(2026, 12, 31, 15, 59, tzinfo=UTC), "year", "y:2026"),
    (dt.datetime(2026, 12, 31, 16, 0, tzinfo=UTC), "day", "d:2027-01-01"),
    (dt.datetime(2026, 3, 31, 16, 0, tzinfo=UTC), "month", "m:2026-04"),
    (dt.datetime(2026, 3, 31, 20, 0, tzinfo=ZoneInfo("America/New_York")), "day", "d:2026-04-01"),
    (dt.datetime(2027, 1, 1, 0, 30, tzinfo=SHANGHAI), "day", "d:2027-01-01"),
    (dt.datetime(2001, 1, 1, tzinfo=UTC), "ever", "ever"),
])
def test_period_key_uses_the_shanghai_calendar(now, period, expected):
    assert period_key(period, now) == expected


def test_discount_on_reports_the_cap_that_bit_last():
    terms = offer(value=5_000, max_discount=4_000, limit_amount=3_000, budget_left=2_000)
    assert discount_on(terms, 10_000) == (2_000, "budget")
    assert discount_on(terms, 10_000, used_amount=2_500) == (500, "member_limit")
    assert discount_on(terms, 5_000) == (2_000, "budget")
    assert discount_on(offer(value=5_000, max_discount=4_000), 10_000) == (4_000, "max_discount")
    assert discount_on(offer(value=5_000), 10_000) == (5_000, None)


def test_refusal_is_none_for_a_plain_offer():
    assert refusal(offer(), shopper()) is None


def test_negative_amount_is_rejected():
    with pytest.raises(ValueError):
        price([offer()], shopper(-1))


def test_no_offers_charges_the_full_amount():
    quote = price([], shopper(10_000))
    assert quote == Quote(10_000, 0, 10_000, 0, 0, (), {})
    assert quote.offer_id is None


# --- kinds -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amount, basis_points, max_discount, discount, capped_by", [
    (1, 5_000, None, 1, None),
    (3, 5_000, None, 2, None),
    (1_999, 1_200, None, 240, None),
    (10_000, 1_200, None, 1_200, None),
    (10_000, 10_000, None, 10_000, None),
    (10_000, 2_000, 1_500, 1_500, "max_discount"),
    (10_000, 2_000, 2_000, 2_000, None),
    (10_000, 2_000, 5_000, 2_000, None),
    (1_999, 1_200, 239, 239, "max_discount"),
])
def test_percent_off(amount, basis_points, max_discount, discount, capped_by):
    quote = single(offer(kind="percent_off", value=basis_points, max_discount=max_discount), amount)
    assert quote.discount == discount
    assert quote.charged == amount - discount
    assert [(a.offer_id, a.discount, a.capped_by) for a in quote.applied] == [("o1", discount, capped_by)]


@pytest.mark.parametrize("amount, basis_points", [(1, 4_999), (0, 5_000), (10_000, 0)])
def test_percent_off_rounding_to_nothing_applies_nothing(amount, basis_points):
    quote = single(offer(kind="percent_off", value=basis_points), amount)
    assert quote.discount == 0 and quote.charged == amount
    assert quote.applied == ()
    assert quote.not_applied == {"o1": "no_discount"}


@pytest.mark.parametrize("amount, value, min_spend, discount, reason", [
    (4_999, 1_000, 5_000, 0, "below_min_spend"),
    (0, 1_000, 1, 0, "below_min_spend"),
    (5_000, 1_000, 5_000, 1_000, None),
    (5_001, 1_000, 5_000, 1_000, None),
    (20_000, 1_000, 5_000, 1_000, None),
    (10_000, 1_000, 0, 1_000, None),
    (1_500, 2_000, 0, 1_500, None),
    (2_000, 2_000, 0, 2_000, None),
    (2_000, 2_000, 2_000, 2_000, None),
])
def test_amount_off(amount, value, min_spend, discount, reason):
    quote = single(offer(kind="amount_off", value=value, min_spend=min_spend), amount)
    assert quote.discount == discount
    assert quote.charged == amount - discount >= 0
    if reason is None:
        assert [a.discount for a in quote.applied] == [discount]
        assert quote.not_applied == {}
    else:
        assert quote.applied == ()
        assert quote.not_applied == {"o1": reason}


@pytest.mark.parametrize("amount, value, discount", [
    (10_000, 3_000, 7_000),
    (10_000, 0, 10_000),
    (10_000, 9_999, 1),
    (1, 0, 1),
])
def test_fixed_price_makes_the_price_value(amount, value, discount):
    quote = single(offer(kind="fixed_price", value=value), amount)
    assert (quote.discount, quote.charged) == (discount, value)
    assert [a.discount for a in quote.applied] == [discount]


@pytest.mark.parametrize("amount, value", [(10_000, 10_000), (10_000, 12_000), (0, 500)])
def test_fixed_price_above_the_amount_gives_no_discount(amount, value):
    quote = single(offer(kind="fixed_price", value=value), amount)
    assert (quote.discount, quote.charged) == (0, amount)
    assert quote.applied == ()
    assert quote.not_applied == {"o1": "no_discount"}


@pytest.mark.parametrize("amount, value, discount, charged", [
    (5_000, 0, 5_000, 0),
    (5_000, 2_000, 3_000, 2_000),
    (5_000, 5_000, 0, 5_000),
    (5_000, 8_000, 0, 5_000),
    (0, 0, 0, 0),
])
def test_entitlement_is_applied_even_without_discount(amount, value, discount, charged):
    quote = single(offer(kind="entitlement", value=value), amount)
    assert (quote.discount, quote.charged) == (discount, charged)
    assert [(a.offer_id, a.discount) for a in quote.applied] == [("o1", discount)]
    assert quote.offer_id == "o1"
    assert quote.not_applied == {}


# --- member limits ---------------------------------------------------------------------------------------

PERIODS = ["day", "month", "year", "ever"]


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("limit_count, used_count, reason", [
    (1, 0, None),
    (1, 1, "limit_reached"),
    (3, 2, None),
    (3, 3, "limit_reached"),
    (3, 7, "limit_reached"),
    (0, 0, "limit_reached"),
])
def test_count_limit(period, limit_count, used_count, reason):
    terms = offer(kind="amount_off", value=500, limit_count=limit_count, limit_period=period)
    quote = single(terms, used={"o1": (used_count, 0)})
    assert refusal(terms, shopper(used={"o1": (used_count, 0)})) == reason
    if reason is None:
        assert quote.discount == 500
    else:
        assert quote.discount == 0
        assert quote.not_applied == {"o1": reason}


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("limit_amount, used_amount, discount, capped_by", [
    (1_000, 0, 500, None),
    (1_000, 500, 500, None),
    (1_000, 700, 300, "member_limit"),
    (1_000, 501, 499, "member_limit"),
    (1_000, 999, 1, "member_limit"),
    (300, 0, 300, "member_limit"),
])
def test_amount_limit_caps_the_discount_to_what_is_left(period, limit_amount, used_amount, discount, capped_by):
    terms = offer(kind="amount_off", value=500, limit_amount=limit_amount, limit_period=period)
    quote = single(terms, used={"o1": (1, used_amount)})
    assert quote.discount == discount
    assert [(a.discount, a.capped_by) for a in quote.applied] == [(discount, capped_by)]


@pytest.mark.parametrize("period", PERIODS)
@pytest.mark.parametrize("used_amount", [1_000, 1_200])
def test_amount_limit_used_up_refuses(period, used_amount):
    terms = offer(kind="amount_off", value=500, limit_amount=1_000, limit_period=period)
    quote = single(terms, used={"o1": (2, used_amount)})
    assert quote.discount == 0
    assert quote.not_applied == {"o1": "limit_reached"}


def test_limits_are_per_lineage():
    terms = offer("o2", lineage="L", kind="amount_off", value=500, limit_count=1, limit_amount=400)
    assert single(terms, used={"o2": (1, 400)}).discount == 400
    assert single(terms, used={"L": (0, 100)}).discount == 300
    assert single(terms, used={"L": (1, 100)}).not_applied == {"o2": "limit_reached"}


# --- window ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("starts_at, ends_at, reason", [
    (NOW, None, None),
    (NOW - dt.timedelta(days=30), NOW + dt.timedelta(days=30), None),
    (NOW + dt.timedelta(seconds=1), None, "not_started"),
    (NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=2), "not_started"),
    (None, NOW, "ended"),
    (None, NOW - dt.timedelta(seconds=1), "ended"),
    (None, NOW + dt.timedelta(microseconds=1), None),
    (NOW - dt.timedelta(days=2), NOW, "ended"),
])
def test_start_and_end(starts_at, ends_at, reason):
    terms = offer(starts_at=starts_at, ends_at=ends_at)
    assert refusal(terms, shopper()) == reason
    assert single(terms).not_applied == ({} if reason is None else {"o1": reason})


@pytest.mark.parametrize("weekdays, reason", [
    (None, None),
    ((), None),
    ((3,), None),
    ((1, 2, 3, 4, 5), None),
    ((2,), "not_today"),
    ((6, 7), "not_today"),
])
def test_weekdays_are_iso_and_local(weekdays, reason):
    # 04:00 Wednesday in Shanghai is still Tuesday in UTC.
    now = local(2026, 6, 10, 4, 0)
    assert now.isoweekday() == 2
    assert refusal(offer(weekdays=weekdays), shopper(now=now)) == reason


@pytest.mark.parametrize("hours_from, hours_to, hour, minute, reason", [
    ("09:00", "17:00", 12, 0, None),
    ("09:00", "17:00", 9, 0, None),
    ("09:00", "17:00", 16, 59, None),
    ("09:00", "17:00", 17, 0, "outside_hours"),
    ("09:00", "17:00", 8, 59, "outside_hours"),
    ("09:30", "10:15", 10, 14, None),
    ("09:30", "10:15", 9, 29, "outside_hours"),
    ("22:00", "02:00", 22, 0, None),
    ("22:00", "02:00", 23, 30, None),
    ("22:00", "02:00", 0, 0, None),
    ("22:00", "02:00", 1, 59, None),
    ("22:00", "02:00", 2, 0, "outside_hours"),
    ("22:00", "02:00", 12, 0, "outside_hours"),
    ("22:00", "02:00", 21, 59, "outside_hours"),
    ("00:00", "23:59", 23, 58, None),
    ("00:00", "23:59", 23, 59, "outside_hours"),
])
def test_hours_are_local(hours_from, hours_to, hour, minute, reason):
    terms = offer(hours_from=hours_from, hours_to=hours_to)
    assert refusal(terms, shopper(now=local(2026, 6, 10, hour, minute))) == reason


def test_hours_need_both_ends():
    night = shopper(now=local(2026, 6, 10, 3, 0))
    assert refusal(offer(hours_from="09:00"), night) is None
    assert refusal(offer(hours_to="17:00"), night) is None


def test_weekday_of_a_window_over_midnight_is_the_local_day_of_payment():
    friday_nights = offer(weekdays=(5,), hours_from="22:00", hours_to="02:00")
    assert refusal(friday_nights, shopper(now=local(2026, 6, 12, 23, 0))) is None
    assert refusal(friday_nights, shopper(now=local(2026, 6, 13, 1, 0))) == "not_today"
    assert refusal(friday_nights, shopper(now=local(2026, 6, 12, 1, 0))) is None


# --- eligibility -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("hardship_only, on_register, reason", [
    (False, False, None),
    (False, True, None),
    (True, True, None),
    (True, False, "hardship_only"),
])
def test_hardship_only(hardship_only, on_register, reason):
    terms = offer(hardship_only=hardship_only)
    assert refusal(terms, shopper(on_hardship_register=on_register)) == reason


MEMBER_UNIONS = frozenset({"U-workshop", "U-factory", "U-city", "U-province"})


@pytest.mark.parametrize("union_ids, unions, reason", [
    (None, frozenset(), None),
    ((), frozenset(), None),
    (("U-workshop",), MEMBER_UNIONS, None),
    (("U-city",), MEMBER_UNIONS, None),
    (("U-province",), MEMBER_UNIONS, None),
    (("U-elsewhere", "U-factory"), MEMBER_UNIONS, None),
    (("U-elsewhere",), MEMBER_UNIONS, "other_union"),
    (("U-city",), frozenset(), "other_union"),
])
def test_union_ids_reach_the_unions_subtree(union_ids, unions, reason):
    assert refusal(offer(union_ids=union_ids), shopper(unions=unions)) == reason


@pytest.mark.parametrize("merchant_id, category, merchant_category, store, reason", [
    ("M1", None, None, ("M1", "dining", "everyday"), None),
    ("M2", None, None, ("M1", "dining", "everyday"), "other_merchant"),
    ("M2", "everyday", "dining", ("M1", "dining", "everyday"), "other_merchant"),
    (None, None, None, ("M1", "dining", "everyday"), None),
    (None, "everyday", None, ("M1", "dining", "everyday"), None),
    (None, "everyday", None, ("M7", "supermarket", "everyday"), None),
    (None, "health", None, ("M1", "dining", "everyday"), "other_category"),
    (None, "everyday", "dining", ("M1", "dining", "everyday"), None),
    (None, "everyday", "dining", ("M7", "supermarket", "everyday"), "other_category"),
    (None, None, "pharmacy", ("M3", "pharmacy", "health"), None),
    (None, None, "pharmacy", ("M4", "medical", "health"), "other_category"),
])
def test_merchant_and_category(merchant_id, category, merchant_category, store, reason):
    terms = offer(merchant_id=merchant_id, category=category, merchant_category=merchant_category)
    store_merchant, store_category, store_family = store
    who = shopper(merchant_id=store_merchant, merchant_category=store_category, family=store_family)
    assert refusal(terms, who) == reason


# --- budget ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("budget_left, discount, capped_by, reason", [
    (None, 500, None, None),
    (10_000, 500, None, None),
    (500, 500, None, None),
    (499, 499, "budget", None),
    (300, 300, "budget", None),
    (1, 1, "budget", None),
    (0, 0, None, "budget_used_up"),
    (-50, 0, None, "budget_used_up"),
])
def test_budget(budget_left, discount, capped_by, reason):
    quote = single(offer(kind="amount_off", value=500, budget_left=budget_left))
    assert quote.discount == discount
    if reason is None:
        assert [(a.discount, a.capped_by) for a in quote.applied] == [(discount, capped_by)]
    else:
        assert quote.applied == ()
        assert quote.not_applied == {"o1": reason}


def test_budget_caps_after_the_member_limit():
    terms = offer(kind="amount_off", value=500, limit_amount=1_000, budget_left=200)
    quote = single(terms, used={"o1": (1, 600)})
    assert [(a.discount, a.capped_by) for a in quote.applied] == [(200, "budget")]


# --- best offer and stacking -----------------------------------------------------------------------------

def test_the_best_exclusive_offer_wins():
    offers = [
        offer("a", kind="amount_off", value=800),
        offer("b", kind="percent_off", value=1_200),
        offer("c", kind="fixed_price", value=9_500),
    ]
    quote = price(offers, shopper(10_000))
    assert quote.offer_id == "b"
    assert (quote.discount, quote.charged) == (1_200, 8_800)
    assert [a.offer_id for a in quote.applied] == ["b"]
    assert quote.not_applied == {"a": "not_best", "c": "not_best"}


def test_exclusive_offers_never_combine():
    offers = [offer("a", kind="amount_off", value=500), offer("b", kind="amount_off", value=500)]
    quote = price(offers, shopper(10_000))
    assert quote.discount == 500
    assert len(quote.applied) == 1


def test_stackable_offers_apply_in_priority_order_to_what_is_left():
    percent = offer("p", kind="percent_off", value=1_000, stackable=True, priority=2)
    amount = offer("a", kind="amount_off", value=500, stackable=True, priority=1)
    quote = price([amount, percent], shopper(10_000))
    assert [(a.offer_id, a.discount) for a in quote.applied] == [("p", 1_000), ("a", 500)]
    assert (quote.discount, quote.charged) == (1_500, 8_500)

    quote = price([dataclasses.replace(amount, priority=3), percent], shopper(10_000))
    assert [(a.offer_id, a.discount) for a in quote.applied] == [("a", 500), ("p", 950)]
    assert quote.discount == 1_450


def test_stackable_offers_with_equal_priority_go_in_id_order():
    first = offer("a", kind="amount_off", value=500, stackable=True)
    second = offer("b", kind="percent_off", value=1_000, stackable=True)
    quote = price([second, first], shopper(10_000))
    assert [(a.offer_id, a.discount) for a in quote.applied] == [("a", 500), ("b", 950)]


def test_a_stack_never_discounts_more_than_the_amount():
    offers = [
        offer("a", kind="amount_off", value=700, stackable=True, priority=3),
        offer("b", kind="amount_off", value=700, stackable=True, priority=2),
        offer("c", kind="amount_off", value=700, stackable=True, priority=1),
    ]
    quote = price(offers, shopper(1_000))
    assert [(a.offer_id, a.discount) for a in quote.applied] == [("a", 700), ("b", 300)]
    assert (quote.discount, quote.charged) == (1_000, 0)
    assert quote.not_applied == {"c": "not_best"}


def test_a_stack_beats_a_smaller_exclusive_offer():
    offers = [
        offer("x", kind="amount_off", value=1_400),
        offer("p", kind="percent_off", value=1_000, stackable=True, priority=2),
        offer("a", kind="amount_off", value=500, stackable=True, priority=1),
    ]
    quote = price(offers, shopper(10_000))
    assert [a.offer_id for a in quote.applied] == ["p", "a"]
    assert quote.discount == 1_500
    assert quote.offer_id == "p"
    assert quote.not_applied == {"x": "not_best"}


def test_a_larger_exclusive_offer_beats_a_stack():
    offers = [
        offer("x", kind="amount_off", value=1_600),
        offer("p", kind="percent_off", value=1_000, stackable=True, priority=2),
        offer("a", kind="amount_off", value=500, stackable=True, priority=1),
    ]
    quote = price(offers, shopper(10_000))
    assert [a.offer_id for a in quote.applied] == ["x"]
    assert quote.discount == 1_600
    assert quote.not_applied == {"p": "not_best", "a": "not_best"}


@pytest.mark.parametrize("priorities, winner", [
    ({"a": 1, "b": 2}, "b"),
    ({"a": 2, "b": 1}, "a"),
    ({"a": 0, "b": 0}, "a"),
    ({"a": -1, "b": 0}, "b"),
])
def test_equal_exclusive_discounts_go_to_the_higher_priority_then_lower_id(priorities, winner):
    offers = [offer(id, kind="amount_off", value=500, priority=p) for id, p in priorities.items()]
    for ordered in (offers, offers[::-1]):
        quote = price(ordered, shopper(10_000))
        assert quote.offer_id == winner
        loser = "b" if winner == "a" else "a"
        assert quote.not_applied == {loser: "not_best"}


@pytest.mark.parametrize("exclusive_priority, stack_priority, winner", [
    (1, 2, ["s1", "s2"]),
    (3, 2, ["x"]),
])
def test_a_tie_between_a_stack_and_an_exclusive_offer_goes_to_the_higher_priority(
        exclusive_priority, stack_priority, winner):
    offers = [
        offer("x", kind="amount_off", value=1_000, priority=exclusive_priority),
        offer("s1", kind="amount_off", value=600, stackable=True, priority=stack_priority),
        offer("s2", kind="amount_off", value=400, stackable=True, priority=0),
    ]
    quote = price(offers, shopper(10_000))
    assert [a.offer_id for a in quote.applied] == winner
    assert quote.discount == 1_000


def test_not_applied_explains_every_offer_that_did_not_apply():
    offers = [
        offer("best", kind="amount_off", value=1_000),
        offer("worse", kind="amount_off", value=200),
        offer("elsewhere", merchant_id="M2"),
        offer("later", starts_at=NOW + dt.timedelta(days=1)),
        offer("over", ends_at=NOW),
        offer("weekend", weekdays=(6, 7)),
        offer("night", hours_from="22:00", hours_to="06:00"),
        offer("hardship", hardship_only=True),
        offer("other union", union_ids=("U-x",)),
        offer("health", merchant_id=None, category="health"),
        offer("big spend", kind="amount_off", value=5_000, min_spend=50_000),
        offer("once", limit_count=1),
        offer("spent", limit_amount=100),
        offer("no budget", budget_left=0),
        offer("too dear", kind="fixed_price", value=20_000),
    ]
    quote = price(offers, shopper(10_000, used={"once": (1, 10), "spent": (1, 100)}))
    assert [a.offer_id for a in quote.applied] == ["best"]
    assert quote.not_applied == {
        "worse": "not_best",
        "elsewhere": "other_merchant",
        "later": "not_started",
        "over": "ended",
        "weekend": "not_today",
        "night": "outside_hours",
        "hardship": "hardship_only",
        "other union": "other_union",
        "health": "other_category",
        "big spend": "below_min_spend",
        "once": "limit_reached",
        "spent": "limit_reached",
        "no budget": "budget_used_up",
        "too dear": "no_discount",
    }


def test_an_entitlement_without_discount_still_applies_when_nothing_else_does():
    offers = [offer("free", kind="entitlement", value=6_000), offer("dear", kind="fixed_price", value=7_000)]
    quote = price(offers, shopper(5_000))
    assert [(a.offer_id, a.discount) for a in quote.applied] == [("free", 0)]
    assert quote.charged == 5_000
    assert quote.not_applied == {"dear": "no_discount"}


def test_an_entitlement_in_a_stack_is_kept_even_at_zero():
    offers = [
        offer("a", kind="amount_off", value=5_000, stackable=True, priority=2),
        offer("e", kind="entitlement", value=0, stackable=True, priority=1),
    ]
    quote = price(offers, shopper(5_000))
    assert [(a.offer_id, a.discount) for a in quote.applied] == [("a", 5_000), ("e", 0)]
    assert quote.charged == 0


# --- funding ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("funding, union_share_bp, discount, union_share, merchant_share", [
    ("merchant", 0, 1_000, 0, 1_000),
    ("merchant", 5_000, 1_000, 0, 1_000),
    ("union", 0, 1_000, 1_000, 0),
    ("union", 3_000, 1_000, 1_000, 0),
    ("split", 5_000, 1_000, 500, 500),
    ("split", 5_000, 3, 2, 1),
    ("split", 5_000, 1, 1, 0),
    ("split", 3_333, 100, 33, 67),
    ("split", 2_500, 333, 83, 250),
    ("split", 7_500, 333, 250, 83),
    ("split", 10_000, 999, 999, 0),
    ("split", 0, 999, 0, 999),
])
def test_funding(funding, union_share_bp, discount, union_share, merchant_share):
    terms = offer(kind="amount_off", value=discount, funding=funding, union_share_bp=union_share_bp,
                  program_id="P1")
    quote = single(terms, 10_000)
    (applied,) = quote.applied
    assert (applied.discount, applied.union_share, applied.merchant_share) == (discount, union_share, merchant_share)
    assert (quote.union_share, quote.merchant_share) == (union_share, merchant_share)
    assert quote.union_share + quote.merchant_share == quote.discount
    assert applied.program_id == ("P1" if union_share else None)


def test_funding_of_a_stack_adds_up():
    offers = [
        offer("u", kind="amount_off", value=1_000, funding="union", program_id="P1", stackable=True, priority=3),
        offer("s", kind="amount_off", value=301, funding="split", union_share_bp=5_000, program_id="P2",
              stackable=True, priority=2),
        offer("m", kind="amount_off", value=200, stackable=True, priority=1),
    ]
    quote = price(offers, shopper(10_000))
    assert [(a.offer_id, a.union_share, a.merchant_share, a.program_id) for a in quote.applied] == [
        ("u", 1_000, 0, "P1"), ("s", 151, 150, "P2"), ("m", 0, 200, None)]
    assert (quote.discount, quote.union_share, quote.merchant_share) == (1_501, 1_151, 350)


# --- properties ------------------------------------------------------------------------------------------

def reference_discount(terms: Terms, amount: int, used_amount: int) -> int:
    """What one offer takes off `amount`, computed the long way with exact fractions."""
    if terms.kind == "percent_off":
        raw = math.floor(Fraction(amount * terms.value, 10_000) + Fraction(1, 2))
    elif terms.kind == "amount_off":
        raw = terms.value
    else:
        raw = amount - terms.value
    caps = [amount]
    if terms.max_discount is not None:
        caps.append(terms.max_discount)
    if terms.limit_amount is not None:
        caps.append(terms.limit_amount - used_amount)
    if terms.budget_left is not None:
        caps.append(terms.budget_left)
    return max(0, min([raw, *caps]))


def reference_stack(offers: list[Terms], who: Shopper) -> int:
    left = who.amount
    for terms in sorted(offers, key=lambda t: (-t.priority, t.id)):
        left -= reference_discount(terms, left, who.used.get(terms.lineage, (0, 0))[1])
    return who.amount - left


@st.composite
def offer_lists(draw, max_size=6):
    count = draw(st.integers(min_value=0, max_value=max_size))
    offers = []
    for n in range(count):
        kind = draw(st.sampled_from(["percent_off", "amount_off", "fixed_price", "entitlement"]))
        if kind == "percent_off":
            value = draw(st.integers(min_value=0, max_value=10_000))
        else:
            value = draw(st.integers(min_value=0, max_value=30_000))
        funding = draw(st.sampled_from(["merchant", "union", "split"]))
        offers.append(Terms(
            id=f"o{n}",
            lineage=f"L{n}",
            kind=kind,
            value=value,
            funding=funding,
            union_share_bp=draw(st.integers(min_value=0, max_value=10_000)),
            program_id=draw(st.sampled_from([None, "P1"])),
            merchant_id=draw(st.sampled_from(["M1", "M1", "M2", None])),
            category=draw(st.sampled_from([None, "everyday", "health"])),
            min_spend=draw(st.sampled_from([0, 0, 1_000, 10_000])),
            max_discount=draw(st.none() | st.integers(min_value=0, max_value=20_000)),
            limit_count=draw(st.none() | st.integers(min_value=0, max_value=3)),
            limit_amount=draw(st.none() | st.integers(min_value=0, max_value=20_000)),
            limit_period=draw(st.sampled_from([None, "day", "month", "year", "ever"])),
            budget_left=draw(st.none() | st.integers(min_value=-100, max_value=20_000)),
            hardship_only=draw(st.booleans()),
            stackable=draw(st.booleans()),
            priority=draw(st.integers(min_value=-2, max_value=3)),
        ))
    return offers


@st.composite
def shoppers(draw, offers):
    used = {}
    for terms in offers:
        if draw(st.booleans()):
            used[terms.lineage] = (draw(st.integers(min_value=0, max_value=4)),
                                   draw(st.integers(min_value=0, max_value=25_000)))
    return shopper(
        draw(st.integers(min_value=0, max_value=50_000)),
        on_hardship_register=draw(st.booleans()),
        used=used,
    )


@st.composite
def priced(draw, exclusive_only=False):
    offers = draw(offer_lists())
    if exclusive_only:
        offers = [dataclasses.replace(t, stackable=False) for t in offers]
    who = draw(shoppers(offers))
    return offers, who


@settings(max_examples=300)
@given(priced())
def test_quote_invariants(case):
    offers, who = case
    quote = price(offers, who)
    assert quote.amount == who.amount
    assert 0 <= quote.discount <= quote.amount
    assert quote.charged == quote.amount - quote.discount >= 0
    assert quote.charged + quote.discount == quote.amount
    assert quote.union_share + quote.merchant_share == quote.discount
    assert 0 <= quote.union_share <= quote.discount
    assert quote.discount == sum(a.discount for a in quote.applied)
    assert quote.union_share == sum(a.union_share for a in quote.applied)
    for applied in quote.applied:
        assert isinstance(applied, Applied)
        assert applied.discount >= 0
        assert 0 <= applied.union_share <= applied.discount
        assert applied.union_share + applied.merchant_share == applied.discount


@settings(max_examples=300)
@given(priced())
def test_every_offer_is_either_applied_or_explained(case):
    offers, who = case
    quote = price(offers, who)
    applied_ids = [a.offer_id for a in quote.applied]
    assert len(applied_ids) == len(set(applied_ids))
    assert set(applied_ids).isdisjoint(quote.not_applied)
    assert set(applied_ids) | set(quote.not_applied) == {t.id for t in offers}
    by_id = {t.id: t for t in offers}
    for offer_id in applied_ids:
        assert refusal(by_id[offer_id], who) is None
    for offer_id, reason in quote.not_applied.items():
        if reason not in ("not_best", "no_discount"):
            assert refusal(by_id[offer_id], who) == reason
    if len(quote.applied) > 1:
        assert all(by_id[offer_id].stackable for offer_id in applied_ids)


@settings(max_examples=300)
@given(priced(exclusive_only=True))
def test_exclusive_offers_give_the_best_single_discount(case):
    offers, who = case
    quote = price(offers, who)
    singles = [reference_discount(t, who.amount, who.used.get(t.lineage, (0, 0))[1])
               for t in offers if refusal(t, who) is None]
    assert quote.discount == max(singles, default=0)
    assert len(quote.applied) <= 1


@settings(max_examples=300)
@given(priced())
def test_the_quote_is_the_best_of_the_singles_and_the_stack(case):
    offers, who = case
    quote = price(offers, who)
    live = [t for t in offers if refusal(t, who) is None]
    singles = [reference_discount(t, who.amount, who.used.get(t.lineage, (0, 0))[1])
               for t in live if not t.stackable]
    stack = reference_stack([t for t in live if t.stackable], who)
    assert quote.discount == max([*singles, stack], default=0)


@settings(max_examples=200)
@given(priced(), st.randoms(use_true_random=False))
def test_price_does_not_depend_on_the_order_of_offers(case, rnd):
    offers, who = case
    shuffled = list(offers)
    rnd.shuffle(shuffled)
    assert price(shuffled, who) == price(offers, who)
    assert price(offers[::-1], who) == price(offers, who)


@settings(max_examples=200)
@given(priced())
def test_price_is_deterministic(case):
    offers, who = case
    assert price(offers, who) == price(list(offers), who)
