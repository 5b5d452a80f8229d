"""A world for settlement tests: the checkout world (a member's funded card, two merchants with staff, a
funded program), payments and refunds made at chosen moments."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from core.auth import Actor
from payments.checkout import service as checkout
from payments.ledger.models import Transaction
from payments.settlement import service as settlement
from tests.checkout.conftest import PIN, fund, funded_program, guard, make_offer, world  # noqa: F401

DAY = dt.date(2026, 11, 23)  # a Monday
TERMS = settlement.Terms(delay_days=1, fee_bp=0, approval_above=10_000_000)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    """A moment of a business day, local time in 银川, as UTC."""
    from core.i18n import BUSINESS_TZ

    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BUSINESS_TZ).astimezone(dt.timezone.utc)


class Till:
    """Payments by the member's card (with the PIN) and refunds by the merchant's owner, at set moments."""

    def __init__(self, session, app, world):  # noqa: F811
        self.session, self.app, self.world = session, app, world

    def pay(self, amount: int, when: dt.datetime, *, store=None, card=None, member="member"):
        store = store or self.world["store"]
        card = card or self.world["card"]
        payment, _ = checkout.pay(self.session, self.world["a"][member], checkout.PayRequest(
            store_id=store.public_id, amount=amount, card_id=card.public_id, pin=PIN),
            codes=None, pins=guard(self.app), max_amount=10**7, now=when)
        return payment

    def refund(self, payment, amount: int, when: dt.datetime, *, owner="owner"):
        refund, _ = checkout.refund(self.session, self.world["a"][owner], payment.public_id, amount=amount, now=when)
        return refund


@pytest.fixture
def till(session, app, world):  # noqa: F811
    return Till(session, app, world)


def settle(session, day: dt.date, terms=TERMS, actor=None, now=None):
    return settlement.settle_day(session, actor or Actor(None, "test", None), day, terms=terms,
                                 now=now or at(day + dt.timedelta(days=2), 9))


def transaction_count(session) -> int:
    return session.scalar(select(func.count()).select_from(Transaction))
