"""A small province whose every console figure is computed by hand.

The province (甘肃, 620000) is one no other test puts a union or a merchant in:

    甘肃省总工会 (fed) ─ 兰州市总工会 (lz, 620100) ─ 城关区总工会 (cg, 620102) ─ 兰州石化工会 (lz_base)
                      └ 天水市总工会 (ts, 620500) ─ 秦州区总工会 (qz, 620502) ─ 天水林场工会 (ts_base)

members   lz_base: 甲 乙 丙 丁, and 庚 who has left; ts_base: 戊 己         -> 6 active (4 + 2)
hardship  甲 (valid for a year); 戊's entry expired yesterday              -> 1 (in 兰州)
cards     甲 乙 戊 active, 丙 active then frozen, 丁 issued and never activated, 己 none; all issued and
          activated 60 days ago                                           -> issued 5, active 3, frozen 1,
                                                                             not activated 1
payments  (merchants: 面馆 dining in 620102 with 10% off borne by it; 药房 pharmacy in 620102 with ¥20 off paid
          by the federation's program 职工普惠补贴; 饭庄 dining in 620502, no offer)
          甲 ¥100 at 面馆 today          -> discount 10.00 (merchant), charged 90.00
          丙 ¥50 at 药房 today, before the freeze -> discount 20.00 (union), charged 30.00; refunded ¥15 later
                                            today: half of what was charged, so ¥10 of the subsidy goes back
          戊 ¥80 at 饭庄 10 days ago      -> charged 80.00
          乙 ¥60 at 面馆 40 days ago      -> discount 6.00 (merchant), charged 54.00
usage     active cards that paid in the last 30 days: 甲 and 戊 (丙's card is frozen, 乙 paid too long ago)
          province 2 / 3 = 0.6667; 兰州 1 / 2 = 0.5; 天水 1 / 1 = 1.0
merchants active in the province: 面馆 (2 stores), 药房 (1), 饭庄 (1 open, 1 closed); 停业茶馆 suspended;
          外省超市 in 630000 is outside           -> 3 merchants, 4 open stores; dining 2 / 3, pharmacy 1 / 1;
          620100: 2 merchants, 3 stores; 620500: 1 merchant, 1 store
offers    面馆's (everyday) and 药房's (health); a culture offer for 天水's members only; a legal offer that has
          ended; a draft; an offer at 外省超市     -> province: everyday 1, health 1, culture 1;
                                                     兰州: everyday 1, health 1
program   职工普惠补贴 (the federation's): funded ¥1,000, ¥50 paid onto 甲's card by a batch, the ¥20 subsidy
          less ¥10 given back -> funded 100,000, disbursed 5,000, spent = subsidised = 1,000 (a general purse's
          aid mixes with the member's own money, so only the subsidy counts as spent)
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import update

from cards import service as cards
from cards.models import Card
from core.auth import Actor
from core.db import utcnow
from core.models import Role
from members.models import HardshipRecord, MemberStatus
from payments.checkout import service as checkout
from payments.disbursement import service as disbursement
from payments.disbursement.models import ProgramKind, PursePolicy
from stats import service as stats
from tests import factories as f
from tests.checkout.conftest import PIN, card_with_pin, fund, guard, make_offer

PROVINCE = "620000"


def refresh(session, **kw):
    done = stats.refresh(session, **kw)
    session.flush()
    return done


@pytest.fixture
def province(session, cipher, app):
    """The hand-computed province (see the module's text), refreshed."""
    now = utcnow()
    fed = f.union(session, f"甘肃省总工会{f.next_id()}", None, PROVINCE)
    lz = f.union(session, "兰州市总工会", fed, "620100")
    cg = f.union(session, "城关区总工会", lz, "620102")
    lz_base = f.union(session, "兰州石化工会", cg, "620102")
    ts = f.union(session, "天水市总工会", fed, "620500")
    qz = f.union(session, "秦州区总工会", ts, "620502")
    ts_base = f.union(session, "天水林场工会", qz, "620502")
    tree = {"fed": fed, "lz": lz, "cg": cg, "lz_base": lz_base, "ts": ts, "qz": qz, "ts_base": ts_base}

    people = {name: f.member(session, cipher, lz_base, name) for name in ("甲", "乙", "丙", "丁", "庚")}
    people.update({name: f.member(session, cipher, ts_base, name) for name in ("戊", "己")})
    people["庚"].status = MemberStatus.LEFT
    session.add(HardshipRecord(member_id=people["甲"].id, level=2, reason="因病致困",
                               valid_until=(now + dt.timedelta(days=365)).date()))
    session.add(HardshipRecord(member_id=people["戊"].id, level=1, reason="下岗",
                               valid_until=(now - dt.timedelta(days=2)).date()))
    users = {name: f.user(session, Role.MEMBER, member=people[name]) for name in ("甲", "乙", "丙", "戊")}
    card = {name: card_with_pin(session, cipher, app, people[name], users[name]) for name in ("甲", "乙", "丙", "戊")}
    card["丁"] = cards.issue_card(session, cipher, f.PLATFORM, people["丁"].public_id, prefix="880062")
    sixty_days_ago = now - dt.timedelta(days=60)
    session.execute(update(Card).where(Card.id.in_([c.id for c in card.values()]))
                    .values(issued_at=sixty_days_ago))
    session.execute(update(Card).where(Card.id.in_([card[n].id for n in ("甲", "乙", "丙", "戊")]))
                    .values(activated_at=sixty_days_ago))
    for name in ("甲", "乙", "丙", "戊"):
        fund(session, card[name], 100_000)

    noodles = f.merchant(session, cipher, "兰州牛肉面馆", category="dining", region="620102", stores=2)
    pharmacy = f.merchant(session, cipher, "城关药房", category="pharmacy", region="620102")
    inn = f.merchant(session, cipher, "秦州饭庄", category="dining", region="620502", stores=2)
    inn.stores[1].status = "closed"
    teahouse = f.merchant(session, cipher, "停业茶馆", category="dining", region="620102")
    teahouse.status = "suspended"
    elsewhere = f.merchant(session, cipher, "外省超市", category="supermarket", region="630102")
    session.commit()

    staff = {"maker": f.user(session, Role.FINANCE_MAKER), "approver": f.user(session, Role.FINANCE_APPROVER),
             "auditor": f.user(session, Role.AUDITOR), "fed_admin": f.user(session, Role.UNION_ADMIN, union=fed),
             "lz_admin": f.user(session, Role.UNION_ADMIN, union=lz),
             "base_admin": f.user(session, Role.UNION_ADMIN, union=lz_base),
             "ts_admin": f.user(session, Role.UNION_ADMIN, union=ts),
             "platform_admin": f.user(session, Role.UNION_ADMIN),
             "reviewer": f.user(session, Role.MERCHANT_REVIEWER),
             "owner": f.user(session, Role.MERCHANT_OWNER, merchant_id=noodles.id),
             "member": users["甲"]}
    maker, approver = Actor.of(staff["maker"]), Actor.of(staff["approver"])
    program = disbursement.create_program(session, maker, name="职工普惠补贴", kind=ProgramKind.CONSUMPTION_VOUCHER,
                                          purse=PursePolicy.GENERAL, union_id=fed.public_id)
    funding = disbursement.create_funding(session, maker, program.public_id, amount=100_000, currency="CNY",
                                          reference=f"BANK-{f.next_id()}")
    disbursement.approve_funding(session, approver, funding.public_id)
    id_number = cipher.decrypt(people["甲"].id_number_enc, "member.id_number")
    batch = disbursement.create_batch_from_csv(session, cipher, maker, program.public_id,
                                               io.BytesIO(f"id_number,amount\n{id_number},5000\n".encode()),
                                               "aid.csv", max_lines=10)
    disbursement.approve_batch(session, approver, batch.public_id, second_approval_above=10**12)
    disbursement.run_batch(session, batch.public_id)

    # The offers (baseline first: offers for every member anywhere count in every scope).
    baseline = {"fed": dict(stats.offer_groups(session, fed, now)), "lz": dict(stats.offer_groups(session, lz, now))}
    started = now - dt.timedelta(days=90)
    make_offer(session, merchant=noodles, kind="percent_off", value=1000, starts_at=started, title="面馆九折")
    make_offer(session, merchant=pharmacy, kind="amount_off", value=2_000, funding="union",
               program_id=program.public_id, starts_at=started, title="药房立减20元")
    make_offer(session, category="culture", starts_at=started, union_ids=[ts.public_id], title="天水观影")
    make_offer(session, category="legal", starts_at=started, ends_at=now - dt.timedelta(days=1), title="已结束")
    make_offer(session, category="safety", starts_at=started, status="draft", title="草稿")
    make_offer(session, merchant=elsewhere, starts_at=started, title="外省九折")

    codes = cards.PaymentCodes(app.extensions["kv"], b"k" * 32, ttl=60, per_minute=20)

    def pay(who, store, amount, when=None):
        req = checkout.PayRequest(store_id=store.public_id, amount=amount, card_id=card[who].public_id, pin=PIN)
        payment, _ = checkout.pay(session, Actor.of(users[who]), req, codes=codes, pins=guard(app),
                                  max_amount=5_000_000, now=when)
        return payment

    payments = {
        "甲": pay("甲", noodles.stores[0], 10_000),
        "丙": pay("丙", pharmacy.stores[0], 5_000),
        "戊": pay("戊", inn.stores[0], 8_000, now - dt.timedelta(days=10)),
        "乙": pay("乙", noodles.stores[1], 6_000, now - dt.timedelta(days=40)),
    }
    assert [(p.discount, p.charged, p.union_share) for p in payments.values()] == [
        (1_000, 9_000, 0), (2_000, 3_000, 2_000), (0, 8_000, 0), (600, 5_400, 0)]
    refund, _ = checkout.refund(session, _owner(session, pharmacy), payments["丙"].public_id, amount=1_500)
    assert refund.union_back == 1_000
    cards.change_state(session, f.PLATFORM, card["丙"].public_id, "freeze")
    session.commit()
    refresh(session, full=True)
    return {"tree": tree, "people": people, "card": card, "staff": staff, "program": program, "payments": payments,
            "merchants": {"noodles": noodles, "pharmacy": pharmacy, "inn": inn, "teahouse": teahouse,
                          "elsewhere": elsewhere},
            "offer_baseline": baseline, "now": now,
            "h": {name: f.bearer(session, u) for name, u in staff.items()}}


def _owner(session, merchant):
    return Actor.of(f.user(session, Role.MERCHANT_OWNER, merchant_id=merchant.id))
