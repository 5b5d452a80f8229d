"""Daily settlement: each merchant's statement for a closed business day, and the move towards its payout.

A business day is a calendar day in Asia/Shanghai: it closes at 00:00 of the next. Settling day D
takes, per merchant, every payment and refund made before D closed that no settlement has counted yet
(so a late one of an earlier day is not lost), marks them with the new settlement in the same
transaction, and posts one ledger transaction:

    debit merchant payable (net + fee), credit payout:in-transit net, credit union:fees fee

With a net of zero or less nothing is paid: only the fee moves, and the net (negative) is carried into
the merchant's next settlement. A failed payout whose exception finance has resolved is carried in
again too, so its money is paid with the next one. A positive net gets a payout, due on D + N days;
above the approval threshold it waits for a second person.

One merchant is one database transaction, and the merchant row is locked while it settles, so a re-run
or two runs at once settle each merchant and day once (the unique key makes sure) and never count a
payment twice (a payment carries the settlement that counted it). A run stopped half-way is finished by
running it again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.orm import Session

from benefits.pricing import percent_of
from core import audit
from core.auth import Actor
from core.db import utcnow
from core.errors import NotFound, RuleViolation, ValidationFailed
from core import i18n
from core.i18n import BUSINESS_TZ
from core.ids import new_public_id
from core.models import FINANCE_ROLES, Role
from core.pagination import Page, paginate
from merchants.models import Merchant
from payments import ledger
from payments.accounts import FEES, IN_TRANSIT, open_platform_accounts
from payments.checkout.models import Payment, Refund
from payments.ledger import credit, debit
from payments.payouts.models import ExceptionStatus, Payout, PayoutStatus
from payments.settlement.models import Settlement, SettlementStatus

BP = 10_000
MAX_DELAY_DAYS = 30
# How far back a business date may be settled: older days were settled by earlier runs or are a typo.
MAX_AGE_DAYS = 366
READERS = (*FINANCE_ROLES, Role.AUDITOR)
MERCHANT_READERS = (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER)


@dataclass(frozen=True)
class Terms:
    """How settlement is run: T+N, the fee, and the payout size that needs a second approver."""

    delay_days: int = 1
    fee_bp: int = 0
    approval_above: int = 5_000_000

    @classmethod
    def from_config(cls, config) -> "Terms":
        return cls(delay_days=int(config["SETTLEMENT_DELAY_DAYS"]), fee_bp=int(config["SETTLEMENT_FEE_BP"]),
                   approval_above=int(config["PAYOUT_SECOND_APPROVAL_ABOVE"]))


@dataclass
class SettleRun:
    """What settling one business day did: the settlements it made now and those an earlier run made."""

    business_date: dt.date
    created: list[Settlement] = field(default_factory=list)
    existing: list[Settlement] = field(default_factory=list)

    @property
    def settlements(self) -> list[Settlement]:
        return sorted([*self.created, *self.existing], key=lambda s: s.id)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The business day's start and end (its cut-off) as UTC moments."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=BUSINESS_TZ)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=BUSINESS_TZ)
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def fee_of(amount: int, fee_bp: int) -> int:
    """fee_bp basis points of what the payments brought (none on nothing), rounded half-up to the fen."""
    return percent_of(amount, fee_bp) if amount > 0 else 0


def _check(business_date: dt.date, terms: Terms, now: dt.datetime) -> dt.datetime:
    if not 0 <= terms.delay_days <= MAX_DELAY_DAYS:
        raise ValidationFailed({"delay_days": [f"T+N takes N from 0 to {MAX_DELAY_DAYS}."]})
    if not 0 <= terms.fee_bp < BP:
        raise ValidationFailed({"fee_bp": ["The fee is 0 to 9,999 basis points."]})
    # Both refusals come before the day's bounds are computed: those of a date near year 1 or 9999 overflow.
    today = i18n.business_date(now)
    if business_date >= today:
        raise RuleViolation(f"{business_date.isoformat()} has not closed yet: a business day can be settled "
                            "after 00:00 Asia/Shanghai the next day.", code="business_day_open")
    if business_date < today - dt.timedelta(days=MAX_AGE_DAYS):
        raise ValidationFailed({"business_date": [f"A business date at most {MAX_AGE_DAYS} days back."]})
    return day_bounds(business_date)[1]


def _unsettled_payments(merchant_id, cutoff: dt.datetime):
    return (Payment.merchant_id == merchant_id, Payment.settlement_id.is_(None), Payment.created_at < cutoff)


def _unsettled_refunds(cutoff: dt.datetime):
    return (Refund.settlement_id.is_(None), Refund.created_at < cutoff)


def _merchants_with_work(session: Session, cutoff: dt.datetime) -> list[int]:
    """The merchants with something a settlement has not counted yet, by id."""
    paid = select(Payment.merchant_id).where(Payment.settlement_id.is_(None), Payment.created_at < cutoff)
    refunded = (select(Payment.merchant_id).join(Refund, Refund.payment_id == Payment.id)
                .where(*_unsettled_refunds(cutoff)))
    returned = select(Payout.merchant_id).where(Payout.status == PayoutStatus.FAILED,
                                                Payout.exception_status == ExceptionStatus.RESOLVED,
                                                Payout.carried_into_id.is_(None))
    return sorted(set(session.scalars(paid.union(refunded, returned))))


def settle_day(session: Session, actor: Actor, business_date: dt.date, *, terms: Terms,
               now: dt.datetime | None = None) -> SettleRun:
    """Settle every merchant with something to settle for a closed business day; safe to run again."""
    now = now or utcnow()
    cutoff = _check(business_date, terms, now)
    open_platform_accounts(session)
    session.commit()
    run = SettleRun(business_date)
    for merchant_id in _merchants_with_work(session, cutoff):
        settlement, made = _settle_merchant(session, actor, merchant_id, business_date, cutoff, terms)
        session.commit()
        if settlement is not None:
            (run.created if made else run.existing).append(settlement)
    # Payments, refunds and payouts were marked in bulk: what the session loaded before is stale now.
    session.expire_all()
    counted = {s.id for s in run.created} | {s.id for s in run.existing}
    run.existing += [s for s in session.scalars(select(Settlement).where(Settlement.business_date == business_date))
                     if s.id not in counted]
    return run


def _settle_merchant(session: Session, actor: Actor, merchant_id: int, business_date: dt.date,
                     cutoff: dt.datetime, terms: Terms) -> tuple[Settlement | None, bool]:
    """Settle one merchant in the caller's transaction: (its settlement for the day, whether made now)."""
    merchant = session.scalar(select(Merchant).where(Merchant.id == merchant_id).with_for_update())
    done = session.scalar(select(Settlement).where(Settlement.merchant_id == merchant_id,
                                                   Settlement.business_date == business_date))
    if done is not None:
        return done, False
    settlement = Settlement(public_id=new_public_id("stl"), merchant_id=merchant_id, business_date=business_date,
                            currency="CNY", status=SettlementStatus.CARRIED_FORWARD,
                            payout_due_on=business_date + dt.timedelta(days=terms.delay_days),
                            created_by_id=actor.user_id)
    session.add(settlement)
    session.flush()
    # The figures change one by one; the row is written once they add up again (its check says they must).
    with session.no_autoflush:
        _count_payments(session, settlement, merchant_id, cutoff)
        _count_refunds(session, settlement, merchant_id, cutoff)
        carried_items = _carry_in(session, settlement, merchant_id)
        settlement.fee = fee_of(settlement.charged + settlement.union_subsidy, terms.fee_bp)
        settlement.net = (settlement.charged + settlement.union_subsidy - settlement.refunded
                          - settlement.union_refunded - settlement.fee + settlement.carried_in)
    if not (settlement.payments_count or settlement.refunds_count or carried_items):
        # Another run counted everything between our look and our lock.
        session.rollback()
        return None, False
    pay = max(settlement.net, 0)
    if pay or settlement.fee:
        legs = [debit(merchant.payable_account, pay + settlement.fee)]
        if pay:
            legs.append(credit(IN_TRANSIT, pay))
        if settlement.fee:
            legs.append(credit(FEES, settlement.fee))
        txn = ledger.post(session, kind="settlement", idempotency_key=f"settlement:{settlement.public_id}",
                          entries=legs, reference=settlement.public_id,
                          metadata={"merchant_id": merchant.public_id, "business_date": business_date.isoformat()})
        settlement.transaction_id = txn.public_id
    if pay:
        settlement.status = SettlementStatus.SETTLED
        session.add(Payout(public_id=new_public_id("po"), merchant_id=merchant_id, settlement_id=settlement.id,
                           amount=pay, currency=settlement.currency, method=merchant.settlement_method,
                           status=(PayoutStatus.PENDING_APPROVAL if pay > terms.approval_above
                                   else PayoutStatus.READY),
                           requires_approval=pay > terms.approval_above, due_on=settlement.payout_due_on,
                           stripe_account_id=merchant.stripe_account_id, created_by_id=actor.user_id))
    audit.record(session, actor, "settlement.created", "settlement", settlement.public_id,
                 after={"merchant_id": merchant.public_id, **snapshot(settlement)})
    session.flush()
    return settlement, True


def _count_payments(session: Session, settlement: Settlement, merchant_id: int, cutoff: dt.datetime) -> None:
    session.execute(update(Payment).where(*_unsettled_payments(merchant_id, cutoff))
                    .values(settlement_id=settlement.id), execution_options={"synchronize_session": False})
    row = session.execute(select(func.count(), func.coalesce(func.sum(Payment.amount), 0),
                                 func.coalesce(func.sum(Payment.discount), 0),
                                 func.coalesce(func.sum(Payment.charged), 0),
                                 func.coalesce(func.sum(Payment.union_share), 0))
                          .where(Payment.settlement_id == settlement.id)).one()
    (settlement.payments_count, settlement.amount, settlement.discount, settlement.charged,
     settlement.union_subsidy) = (int(v) for v in row)


def _count_refunds(session: Session, settlement: Settlement, merchant_id: int, cutoff: dt.datetime) -> None:
    own = exists().where(Payment.id == Refund.payment_id, Payment.merchant_id == merchant_id)
    session.execute(update(Refund).where(*_unsettled_refunds(cutoff), own)
                    .values(settlement_id=settlement.id).execution_options(synchronize_session=False))
    row = session.execute(select(func.count(), func.coalesce(func.sum(Refund.amount), 0),
                                 func.coalesce(func.sum(Refund.union_back), 0))
                          .where(Refund.settlement_id == settlement.id)).one()
    settlement.refunds_count, settlement.refunded, settlement.union_refunded = (int(v) for v in row)


def _carry_in(session: Session, settlement: Settlement, merchant_id: int) -> int:
    """Take in the merchant's earlier negative nets and its failed payouts that finance has resolved; return
    how many there were."""
    negative = session.execute(
        update(Settlement).where(Settlement.merchant_id == merchant_id,
                                 Settlement.status == SettlementStatus.CARRIED_FORWARD,
                                 Settlement.carried_into_id.is_(None), Settlement.id != settlement.id)
        .values(carried_into_id=settlement.id).execution_options(synchronize_session=False))
    returned = session.execute(
        update(Payout).where(Payout.merchant_id == merchant_id, Payout.status == PayoutStatus.FAILED,
                             Payout.exception_status == ExceptionStatus.RESOLVED, Payout.carried_into_id.is_(None))
        .values(carried_into_id=settlement.id).execution_options(synchronize_session=False))
    carried = 0
    if negative.rowcount:
        carried += int(session.scalar(select(func.sum(Settlement.net)).where(
            Settlement.carried_into_id == settlement.id)))
    if returned.rowcount:
        carried += int(session.scalar(select(func.sum(Payout.amount)).where(
            Payout.carried_into_id == settlement.id)))
    settlement.carried_in = carried
    return negative.rowcount + returned.rowcount


def snapshot(s: Settlement) -> dict:
    return {"business_date": s.business_date.isoformat(), "payments_count": s.payments_count, "charged": s.charged,
            "union_subsidy": s.union_subsidy, "refunds_count": s.refunds_count, "refunded": s.refunded,
            "union_refunded": s.union_refunded, "fee": s.fee, "carried_in": s.carried_in, "net": s.net,
            "status": s.status.value, "transaction_id": s.transaction_id}


# --- reading ---------------------------------------------------------------------------------------

def _scope(actor: Actor):
    """The settlements the actor may see: all for finance and auditors, its own for a merchant's owner and
    manager, none otherwise (a condition on Settlement)."""
    if actor.has(*READERS):
        return None
    if actor.has(*MERCHANT_READERS) and actor.merchant_id is not None:
        return Settlement.merchant_id == actor.merchant_id
    return False


def get_settlement(session: Session, actor: Actor, public_id: str) -> Settlement:
    """One settlement the actor may see (404 for another merchant's)."""
    scope = _scope(actor)
    settlement = session.scalar(select(Settlement).where(Settlement.public_id == public_id))
    if settlement is None or scope is False or (scope is not None and settlement.merchant_id != actor.merchant_id):
        raise NotFound("No such settlement.")
    return settlement


def list_settlements(session: Session, actor: Actor, *, business_date: dt.date | None = None,
                     merchant_id: str | None = None, status: SettlementStatus | None = None,
                     limit: int, cursor: str | None) -> Page:
    """Settlements newest first, filtered; a merchant's staff see only their own."""
    scope = _scope(actor)
    query = select(Settlement)
    if scope is False:
        return Page([], None)
    if scope is not None:
        query = query.where(scope)
    if business_date is not None:
        query = query.where(Settlement.business_date == business_date)
    if merchant_id is not None:
        query = query.join(Merchant, Merchant.id == Settlement.merchant_id).where(Merchant.public_id == merchant_id)
    if status is not None:
        query = query.where(Settlement.status == status)
    return paginate(session, query, Settlement.id, limit=limit, cursor=cursor, descending=True)


@dataclass(frozen=True)
class StatementLine:
    """One payment or refund of a settlement, as the merchant's statement shows it."""

    kind: str  # payment | refund
    id: str
    created_at: dt.datetime
    amount: int  # the list price of a payment, the refund's amount
    discount: int
    charged: int
    union_share: int  # the subsidy a payment brings, or (negative) what a refund gives back
    to_merchant: int  # what it adds to (or takes from) the merchant's net


def statement_lines(session: Session, settlement: Settlement, *, limit: int = 500,
                    offset: int = 0) -> list[StatementLine]:
    """The settlement's payments and refunds, oldest first (a page of them)."""
    payments = select(Payment.public_id, Payment.created_at, Payment.amount, Payment.discount, Payment.charged,
                      Payment.union_share).where(Payment.settlement_id == settlement.id)
    refunds = select(Refund.public_id, Refund.created_at, Refund.amount, Refund.union_back).where(
        Refund.settlement_id == settlement.id)
    lines = [StatementLine("payment", p, at, amount, discount, charged, share, charged + share)
             for p, at, amount, discount, charged, share in session.execute(payments)]
    lines += [StatementLine("refund", r, at, amount, 0, -amount, -back, -(amount + back))
              for r, at, amount, back in session.execute(refunds)]
    lines.sort(key=lambda line: (line.created_at, line.id))
    return lines[offset:offset + limit]


def payout_of(session: Session, settlement: Settlement) -> Payout | None:
    return payouts_of(session, [settlement]).get(settlement.id)


def payouts_of(session: Session, settlements: list[Settlement]) -> dict[int, Payout]:
    """The payouts of these settlements, by settlement id, in one query (a carried-forward one has none)."""
    if not settlements:
        return {}
    rows = session.scalars(select(Payout).where(Payout.settlement_id.in_([s.id for s in settlements])))
    return {p.settlement_id: p for p in rows}


def carried_from(session: Session, settlement: Settlement) -> tuple[list[Settlement], list[Payout]]:
    """What this settlement carried in: earlier negative nets and returned payouts."""
    earlier = list(session.scalars(select(Settlement).where(Settlement.carried_into_id == settlement.id)
                                   .order_by(Settlement.business_date)))
    payouts = list(session.scalars(select(Payout).where(Payout.carried_into_id == settlement.id)
                                   .order_by(Payout.id)))
    return earlier, payouts


def day_totals(session: Session, business_date: dt.date) -> dict[str, int]:
    """The day's settlements added up, for the console."""
    row = session.execute(select(func.count(), func.coalesce(func.sum(Settlement.charged), 0),
                                 func.coalesce(func.sum(Settlement.union_subsidy), 0),
                                 func.coalesce(func.sum(Settlement.refunded + Settlement.union_refunded), 0),
                                 func.coalesce(func.sum(Settlement.fee), 0),
                                 func.coalesce(func.sum(Settlement.net), 0))
                          .where(Settlement.business_date == business_date)).one()
    return dict(zip(("settlements", "charged", "union_subsidy", "refunded", "fees", "net"), (int(v) for v in row)))


def unsettled_before(session: Session, cutoff: dt.datetime) -> dict[str, int]:
    """What no settlement has counted yet from before a cut-off: payments and refunds (counts)."""
    payments = session.scalar(select(func.count()).where(Payment.settlement_id.is_(None), Payment.created_at < cutoff))
    refunds = session.scalar(select(func.count()).select_from(Refund).where(*_unsettled_refunds(cutoff)))
    return {"payments": int(payments), "refunds": int(refunds)}



@dataclass(frozen=True)
class MerchantFigures:
    """A merchant's dashboard: sales today and this month, what it is owed, and its latest statements."""

    today_sales: int
    month_sales: int
    month_discounts: int
    subsidies_receivable: int  # the union's share of discounts, not settled yet
    payable: int  # owed and not settled yet
    settlements: list[Settlement]


def merchant_figures(session: Session, merchant: Merchant, *, now: dt.datetime | None = None,
                     latest: int = 5) -> MerchantFigures:
    """The figures of a merchant's dashboard (business days in Asia/Shanghai)."""
    today = i18n.business_date(now)
    day_start, _end = day_bounds(today)
    month_start, _end = day_bounds(today.replace(day=1))
    mine = Payment.merchant_id == merchant.id
    month = session.execute(select(
        func.coalesce(func.sum(Payment.amount), 0),
        func.coalesce(func.sum(Payment.discount), 0),
        func.coalesce(func.sum(case((Payment.created_at >= day_start, Payment.amount), else_=0)), 0),
    ).where(mine, Payment.created_at >= month_start)).one()
    subsidy = session.scalar(select(func.coalesce(func.sum(Payment.union_share), 0)).where(
        mine, Payment.settlement_id.is_(None)))
    given_back = session.scalar(select(func.coalesce(func.sum(Refund.union_back), 0)).join(
        Payment, Payment.id == Refund.payment_id).where(mine, Refund.settlement_id.is_(None)))
    statements = list(session.scalars(select(Settlement).where(Settlement.merchant_id == merchant.id)
                                      .order_by(Settlement.business_date.desc()).limit(latest)))
    return MerchantFigures(today_sales=int(month[2]), month_sales=int(month[0]), month_discounts=int(month[1]),
                           subsidies_receivable=int(subsidy) - int(given_back),
                           payable=ledger.balance(session, merchant.payable_account).posted, settlements=statements)
