"""One small world whose every figure is computed by hand: a restricted aid program funded, paid out by a
batch (one line failing), spent at a pharmacy with a union-funded offer, refunded, clawed back, expired and
refunded after expiry; a general program paid onto a card and spent; three settlements and their payouts
(one waiting, one paid, one failed) made as the ledger contract says.

The hand computation, in fen:

restricted program R (pharmacy only), funded 1,000,000 (a 5,000 funding rejected, a 7,000 one pending):
  batch A 50,000, B 50,000, C 50,000 reserved 150,000; C's card is lost before the run: 50,000 returned
  A pays 30,000 at the pharmacy: offer 2,000 off, paid by R   -> aid 28,000, subsidy 2,000
  B pays 12,000 at the pharmacy: offer 2,000 off              -> aid 10,000, subsidy 2,000
  A is refunded 14,000 (half)                                 -> 14,000 to A's purse, subsidy 1,000 back to R
  B's line is clawed back: B's purse holds 40,000             -> 40,000 to R
  the purses expire: A's holds 50,000 - 28,000 + 14,000       -> 36,000 swept to R
  B is refunded 10,000 (all) after expiry                     -> 10,000 to R (expired aid), subsidy 2,000 back
  funded 1,000,000; disbursed 100,000 - 40,000 = 60,000; subsidised 4,000 - 3,000 = 1,000;
  spent (38,000 - 14,000 - 10,000) + 1,000 = 15,000; expired 36,000; returned 50,000 + 40,000 + 10,000 =
  100,000; clawed back 40,000; balance 1,000,000 - 150,000 + 50,000 - 4,000 + 1,000 + 40,000 + 36,000
  + 12,000 = 985,000
general program G, funded 200,000: D 20,000 onto the general purse; D pays 5,000 at the restaurant
  funded 200,000; disbursed 20,000; spent 0 (general purses mix the member's own money); balance 180,000

pharmacy (630104): sales 28,000 + 10,000 = 38,000 in 2 payments; union subsidy 4,000; refunds 14,000 +
  10,000 = 24,000 (subsidy back 1,000 + 2,000 = 3,000); payable 42,000 - 27,000 = 15,000 before settling;
  settled 10,000 (fee 100, payout waiting) two days ago, 3,000 (paid) yesterday, 1,000 (failed, back on the
  payable) today: payable 15,000 - 10,100 - 3,000 - 1,000 + 1,000 = 1,900, in transit 10,000,
  receivable 11,900, paid 3,000, settled 14,000, fees 100
restaurant (630202, dining): sales 5,000; payable 5,000; receivable 5,000

The database may hold other tests' rows, committed for real (races on PostgreSQL share one database per run,
and ledger entries can never be deleted). So the story's merchants sit in a province of their own (630000)
and the tests ask for them by region, its programs are asked for by id, and the figures that add up the
whole database (the dashboard tiles, each day's activity, the totals of every program, the trial balance)
are compared with a snapshot taken just before the story: the story moves them by the hand-computed amounts.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest

from cards import service as cards
from core.auth import Actor
from core.db import utcnow
from core.i18n import BUSINESS_TZ
from core.ids import new_public_id
from core.models import Role
from merchants.models import SettlementMethod
from payments import ledger
from payments.accounts import BANK, FEES, IN_TRANSIT, open_platform_accounts
from payments.checkout import service as checkout
from payments.disbursement import service as disbursement
from payments.disbursement.models import ProgramKind, PursePolicy
from payments.ledger import credit, debit
from payments.payouts.models import ExceptionStatus, Payout, PayoutStatus
from payments.reports import service as reports
from payments.settlement.models import Settlement, SettlementStatus
from tests import factories as f
from tests.checkout.conftest import PIN, card_with_pin, guard, make_offer

PREFIX = "880064"

# The story's merchants, in a province no other test puts a merchant in: the pharmacy in one city, the
# restaurant in another, and a third city with no merchant at all.
PROVINCE = "630000"
PHARMACY_CITY, PHARMACY_REGION = "630100", "630104"
SHOP_CITY, SHOP_REGION = "630200", "630202"
EMPTY_CITY = "630300"


def id_of(cipher, member) -> str:
    return cipher.decrypt(member.id_number_enc, "member.id_number")


def batch_csv(cipher, lines) -> io.BytesIO:
    body = "id_number,amount\n" + "".join(f"{id_of(cipher, m)},{amount}\n" for m, amount in lines)
    return io.BytesIO(body.encode())


def settle_by_hand(session, merchant, day: dt.date, net: int, fee: int, status: PayoutStatus, *,
                   user_id: int | None = None) -> Payout:
    """A settlement and its payout, and their ledger transactions, as settlement and payouts make them."""
    open_platform_accounts(session)
    stl = Settlement(public_id=new_public_id("stl"), merchant_id=merchant.id, business_date=day, payments_count=1,
                     charged=net + fee, fee=fee, net=net, status=SettlementStatus.SETTLED,
                     payout_due_on=day + dt.timedelta(days=1), created_by_id=user_id)
    session.add(stl)
    session.flush()
    legs = [debit(merchant.payable_account, net + fee), credit(IN_TRANSIT, net)] + ([credit(FEES, fee)] if fee else [])
    stl.transaction_id = ledger.post(session, kind="settlement", idempotency_key=f"settlement:{stl.public_id}",
                                     entries=legs, reference=stl.public_id).public_id
    payout = Payout(public_id=new_public_id("po"), merchant_id=merchant.id, settlement_id=stl.id, amount=net,
                    method=SettlementMethod.BANK, status=status, due_on=stl.payout_due_on)
    session.add(payout)
    session.flush()
    now = utcnow()
    if status == PayoutStatus.PAID:
        payout.paid_at = now
        payout.paid_transaction_id = ledger.post(
            session, kind="payout_paid", idempotency_key=f"payout:{payout.public_id}:paid", reference=payout.public_id,
            entries=[debit(IN_TRANSIT, net), credit(BANK, net)]).public_id
    elif status == PayoutStatus.FAILED:
        payout.failed_at, payout.exception_status = now, ExceptionStatus.OPEN
        payout.returned_transaction_id = ledger.post(
            session, kind="payout_failed", idempotency_key=f"payout:{payout.public_id}:failed",
            reference=payout.public_id, entries=[debit(IN_TRANSIT, net), credit(merchant.payable_account, net)]
        ).public_id
    session.commit()
    return payout


def snapshot(session, today: dt.date) -> dict:
    """The figures that add up the whole database, as they stand: the dashboard tiles, the last 30 days'
    activity, every program's figures added up (all time, and this month), and the trial balance's rows."""
    since, until = reports.period(today.replace(day=1), today)
    return {"tiles": reports.tiles(session),
            "days": {d.day: d for d in reports.daily_activity(session, today=today)},
            "programs": reports.sum_programs(reports.program_figures(session)),
            "month": reports.sum_programs(reports.program_months(session, since=since, until=until)),
            "trial_balance": {(r.group, r.currency): r for r in ledger.trial_balance(session).rows}}


def balance_of(trial_balance: dict, group: str) -> int:
    """A group's balance (debits less credits, CNY) in a snapshot's trial balance; 0 if it has no accounts."""
    row = trial_balance.get((group, "CNY"))
    return row.balance if row is not None else 0


@pytest.fixture
def rworld(session, cipher, app):
    """The world and its parts: people, merchants, users, bearer headers and actors."""
    tree = f.org_tree(session)
    people = {name: f.member(session, cipher, tree["yc_base"], name) for name in ("甲", "乙", "丙", "丁")}
    pharmacy = f.merchant(session, cipher, "仁心药房", category="pharmacy", region=PHARMACY_REGION)
    shop = f.merchant(session, cipher, "好味餐厅", category="dining", region=SHOP_REGION)
    users = {
        "maker": f.user(session, Role.FINANCE_MAKER),
        "approver": f.user(session, Role.FINANCE_APPROVER),
        "auditor": f.user(session, Role.AUDITOR),
        "admin": f.user(session, Role.UNION_ADMIN),
        "reviewer": f.user(session, Role.MERCHANT_REVIEWER),
        "pharmacy_owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=pharmacy.id),
        "pharmacy_manager": f.user(session, Role.MERCHANT_MANAGER, merchant_id=pharmacy.id),
        "pharmacy_cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=pharmacy.id),
        "shop_owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id),
    }
    for name in ("甲", "乙", "丁"):
        users[name] = f.user(session, Role.MEMBER, member=people[name])
    users["applicant"] = f.user(session, Role.APPLICANT)
    card = {name: card_with_pin(session, cipher, app, people[name], users[name]) for name in ("甲", "乙", "丁")}
    card["丙"] = cards.issue_card(session, cipher, f.PLATFORM, people["丙"].public_id, prefix=PREFIX)
    cards.change_state(session, f.PLATFORM, card["丙"].public_id, "activate")
    return {"tree": tree, "people": people, "pharmacy": pharmacy, "shop": shop, "users": users, "card": card,
            "h": {name: f.bearer(session, u) for name, u in users.items()},
            "a": {name: Actor.of(u) for name, u in users.items()}}


@pytest.fixture
def scenario(session, cipher, app, rworld):
    """Run the hand-computed story (see the module's docstring) and return the world with its programs."""
    a, card, people = rworld["a"], rworld["card"], rworld["people"]
    maker, approver = a["maker"], a["approver"]
    today = utcnow().astimezone(BUSINESS_TZ).date()
    before = snapshot(session, today)
    expires = utcnow() + dt.timedelta(days=30)
    aid = disbursement.create_program(session, maker, name="医药救助", kind=ProgramKind.MEDICAL_AID,
                                      purse=PursePolicy.RESTRICTED, union_id=rworld["tree"]["yc"].public_id,
                                      allowed_categories=["pharmacy"], expires_at=expires)
    general = disbursement.create_program(session, maker, name="消费券", kind=ProgramKind.CONSUMPTION_VOUCHER,
                                          purse=PursePolicy.GENERAL, union_id=rworld["tree"]["yc"].public_id)
    idle = disbursement.create_program(session, maker, name="尚未拨款", kind=ProgramKind.STUDENT_AID,
                                       purse=PursePolicy.GENERAL, union_id=rworld["tree"]["yc"].public_id)
    for program, amount in ((aid, 1_000_000), (general, 200_000)):
        funding = disbursement.create_funding(session, maker, program.public_id, amount=amount, currency="CNY",
                                              reference=f"BANK-{f.next_id()}")
        disbursement.approve_funding(session, approver, funding.public_id)
    rejected = disbursement.create_funding(session, maker, aid.public_id, amount=5_000, currency="CNY", reference="NO")
    disbursement.reject_funding(session, approver, rejected.public_id)
    disbursement.create_funding(session, maker, aid.public_id, amount=7_000, currency="CNY", reference="LATER")

    batch = disbursement.create_batch_from_csv(
        session, cipher, maker, aid.public_id,
        batch_csv(cipher, [(people["甲"], 50_000), (people["乙"], 50_000), (people["丙"], 50_000)]), "aid.csv",
        max_lines=10)
    disbursement.approve_batch(session, approver, batch.public_id, second_approval_above=10**12)
    cards.change_state(session, f.PLATFORM, card["丙"].public_id, "report_lost")
    batch = disbursement.run_batch(session, batch.public_id)
    assert (batch.done_amount, batch.failed_amount, batch.returned_amount) == (100_000, 50_000, 50_000)
    vouchers = disbursement.create_batch_from_csv(session, cipher, maker, general.public_id,
                                                  batch_csv(cipher, [(people["丁"], 20_000)]), "v.csv", max_lines=10)
    disbursement.approve_batch(session, approver, vouchers.public_id, second_approval_above=10**12)
    disbursement.run_batch(session, vouchers.public_id)

    make_offer(session, merchant=rworld["pharmacy"], kind="amount_off", value=2_000, funding="union",
               program_id=aid.public_id, title="药房立减20元", starts_at=utcnow() - dt.timedelta(days=1))
    codes = cards.PaymentCodes(app.extensions["kv"], b"k" * 32, ttl=60, per_minute=20)

    def pay(who, store, amount):
        req = checkout.PayRequest(store_id=store.public_id, amount=amount, card_id=card[who].public_id, pin=PIN)
        payment, _ = checkout.pay(session, a[who], req, codes=codes, pins=guard(app), max_amount=5_000_000)
        return payment

    pay_a = pay("甲", rworld["pharmacy"].stores[0], 30_000)
    pay_b = pay("乙", rworld["pharmacy"].stores[0], 12_000)
    pay_d = pay("丁", rworld["shop"].stores[0], 5_000)
    assert (pay_a.charged, pay_a.union_share, pay_b.charged, pay_b.union_share) == (28_000, 2_000, 10_000, 2_000)
    assert [p.purse_kind for p in pay_a.purses] == ["restricted"]
    checkout.refund(session, a["pharmacy_owner"], pay_a.public_id, amount=14_000)

    clawback = disbursement.request_clawback(session, maker, batch.public_id, 2, "重复发放")
    assert disbursement.approve_clawback(session, approver, clawback.public_id).amount_taken == 40_000
    assert disbursement.sweep_expired(session, now=expires + dt.timedelta(minutes=1)) == 2
    late, _ = checkout.refund(session, a["pharmacy_owner"], pay_b.public_id, amount=10_000,
                              now=expires + dt.timedelta(minutes=2))
    assert {leg["to"]: leg["amount"] for leg in late.legs} == {"program": 10_000, "subsidy": 2_000}

    owner_id = rworld["users"]["approver"].id
    waiting = settle_by_hand(session, rworld["pharmacy"], today - dt.timedelta(days=2), 10_000, 100,
                             PayoutStatus.READY, user_id=owner_id)
    paid = settle_by_hand(session, rworld["pharmacy"], today - dt.timedelta(days=1), 3_000, 0, PayoutStatus.PAID)
    failed = settle_by_hand(session, rworld["pharmacy"], today, 1_000, 0, PayoutStatus.FAILED)
    assert ledger.verify(session).ok
    return {**rworld, "aid": aid, "general": general, "idle": idle, "batch": batch, "today": today,
            "expires": expires, "payments": {"a": pay_a, "b": pay_b, "d": pay_d}, "late_refund": late,
            "payouts": {"waiting": waiting, "paid": paid, "failed": failed},
            "program_ids": [aid.public_id, general.public_id, idle.public_id], "before": before}
