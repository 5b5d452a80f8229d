"""The `demo` command: a realistic data set for a first look (unions, members, hardship, users)."""

from __future__ import annotations

import datetime as dt
import io
import random

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from core.auth import Actor, create_user
from core.db import db, utcnow
from core.i18n import business_date
from core.models import Role, User
from members import service as members
from members.models import Member, Union
from members.validators import id_check_char

DEMO_PASSWORD = "demo-pass-2026"
FEDERATION = ("宁夏回族自治区总工会", "640000")
CITIES = [
    ("银川市总工会", "640100", [("兴庆区总工会", "640104", ["宁夏电力公司工会", "银川市第一人民医院工会"]),
                                ("金凤区总工会", "640106", ["银川公交集团工会"])]),
    ("石嘴山市总工会", "640200", [("大武口区总工会", "640202", ["石嘴山钢铁厂工会"])]),
    ("吴忠市总工会", "640300", [("利通区总工会", "640302", ["吴忠仪表厂工会"])]),
    ("固原市总工会", "640400", [("原州区总工会", "640402", ["固原市中学教师工会", "六盘山林场工会"])]),
    ("中卫市总工会", "640500", [("沙坡头区总工会", "640502", ["中卫枸杞产业园工会"])]),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史黎贺顾毛郝龚邵万钱覃武戴孔汤庞樊兰殷施陶洪翟安颜倪严牛温芦季俞章鲁葛伍申尤毕聂柴焦向柳邢岳齐沿梅莫庄辛管祝左涂谷祁时舒耿牟卜路詹关苗凌费纪靳盛童欧甄项曲成游阳裴席卫查屈鲍位覃霍翁隋植甘景薄单包司柏宁柯阮桂闵欧阳解强丛华车冉房边辜吉饶刁瞿戚丘米池滕晋苑邬臧畅宫来嵺苟全褚廉简娄盖符奚木穆党燕郎邸冀谈姬屠连郜晏栾郁商蒙计喻揭窦迟宇敖糜鄢冷卓花艾蓝都巩稽井练仲乐虞卞封竺冼原官衣楚佟栗匡宗应台巫鞠僧桑荆谌银扬明沙薄伏岑习胥保和蔺"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英文辉建华玲丹萍鹏华红玉兰飞桂兰鑫波宁斌浩凯婷雪梅琳晨旭阳海燕志强晓东春梅建军海峰丽娟玉梅"
DEMO_STAFF = [
    ("yinchuan-admin", Role.UNION_ADMIN, "银川市总工会管理员", "640100", "银川市总工会 and the unions under it"),
    ("guyuan-admin", Role.UNION_ADMIN, "固原市总工会管理员", "640400", "固原市总工会 and the unions under it"),
    ("reviewer", Role.MERCHANT_REVIEWER, "商户审核员", None, "reviews merchant applications"),
    ("finance-maker", Role.FINANCE_MAKER, "财务经办", None, "prepares fundings and batches"),
    ("finance-approver", Role.FINANCE_APPROVER, "财务复核", None, "approves what the maker prepared"),
    ("auditor", Role.AUDITOR, "审计员", None, "read-only, sees the audit log"),
]
HARDSHIP_REASONS = ["因病致困", "单亲家庭子女就学", "家庭成员重病", "因灾致困", "下岗再就业困难"]


def _id_number(rng: random.Random, region: str) -> str:
    born = dt.date(1965, 1, 1) + dt.timedelta(days=rng.randrange(0, 35 * 365))
    body = f"{region}{born:%Y%m%d}{rng.randrange(0, 1000):03d}"
    return body + id_check_char(body)


def _phone(rng: random.Random) -> str:
    return rng.choice(["139", "138", "137", "150", "151", "186", "189", "177", "199"]) + f"{rng.randrange(10**8):08d}"


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def load_demo(session, cipher, members_per_union: int = 40, seed: int = 2026) -> None:
    """Create the demo org tree, members, hardship entries and a user for every role."""
    rng = random.Random(seed)
    admin = create_user(session, username="admin", password=DEMO_PASSWORD, role=Role.UNION_ADMIN,
                        display_name="平台管理员 Platform admin")
    session.commit()
    root_actor = Actor.of(admin)
    federation = members.create_union(session, root_actor, name=FEDERATION[0], parent_id=None, region=FEDERATION[1])
    grassroots: list[Union] = []
    city_unions: dict[str, Union] = {}
    for city_name, city_region, counties in CITIES:
        city = members.create_union(session, root_actor, name=city_name, parent_id=federation.public_id,
                                    region=city_region)
        city_unions[city_region] = city
        for county_name, county_region, bases in counties:
            county = members.create_union(session, root_actor, name=county_name, parent_id=city.public_id,
                                          region=county_region)
            for base in bases:
                grassroots.append(members.create_union(session, root_actor, name=base, parent_id=county.public_id,
                                                       region=county_region))
    today = dt.date.today()
    first_member = None
    for union in grassroots:
        for _ in range(members_per_union):
            data = members.MemberInput(_name(rng), _id_number(rng, union.region), _phone(rng), union.public_id,
                                       today - dt.timedelta(days=rng.randrange(30, 20 * 365)))
            try:
                member = members.register_member(session, cipher, root_actor, data)
            except Exception:  # a generated duplicate: skip it, the demo only needs "a few hundred"
                session.rollback()
                continue
            first_member = first_member or member
            if rng.random() < 0.12:
                members.set_hardship(session, root_actor, member.public_id, level=rng.choice((1, 2, 2, 3)),
                                     reason=rng.choice(HARDSHIP_REASONS),
                                     valid_until=today + dt.timedelta(days=rng.randrange(60, 720)))
    for username, role, display, city_region, _note in DEMO_STAFF:
        union_id = city_unions[city_region].id if city_region else None
        create_user(session, username=username, password=DEMO_PASSWORD, role=role, display_name=display,
                    union_id=union_id)
    create_user(session, username="member", password=DEMO_PASSWORD, role=Role.MEMBER,
                display_name=first_member.name, member_id=first_member.id)
    if first_member.hardship is None:  # the demo member is on the register: hardship aid and its offers show
        members.set_hardship(session, root_actor, first_member.public_id, level=2, reason=HARDSHIP_REASONS[0],
                             valid_until=today + dt.timedelta(days=365))
    session.commit()
    _demo_cards(session, cipher, root_actor, federation)
    _demo_aid(session, cipher, federation, city_unions["640100"])
    _demo_merchants(session, cipher)
    _demo_offers(session, root_actor)
    session.commit()


def _demo_aid(session, cipher, federation: Union, yinchuan: Union) -> None:
    """Two funded programs: hardship aid paid by rule to 银川's hardship register, medical aid (restricted)
    paid from a CSV to the demo member; and a third batch waiting for the approver."""
    from payments.disbursement import service as aid
    from payments.disbursement.models import ProgramKind, PursePolicy

    maker = Actor.of(session.scalar(select(User).where(User.username == "finance-maker")))
    approver = Actor.of(session.scalar(select(User).where(User.username == "finance-approver")))
    above = current_app.config["DISBURSEMENT_SECOND_APPROVAL_ABOVE"]
    warmth = aid.create_program(session, maker, name="2026年送温暖", kind=ProgramKind.HARDSHIP_AID,
                                purse=PursePolicy.GENERAL, union_id=federation.public_id)
    medical = aid.create_program(session, maker, name="职工医疗互助", kind=ProgramKind.MEDICAL_AID,
                                 purse=PursePolicy.RESTRICTED, union_id=federation.public_id,
                                 allowed_categories=["pharmacy", "medical"],
                                 expires_at=utcnow() + dt.timedelta(days=25))
    for program, amount, reference in ((warmth, 20_000_000, "宁夏银行 2026-11-02 入账"),
                                       (medical, 5_000_000, "宁夏银行 2026-11-05 入账")):
        funding = aid.create_funding(session, maker, program.public_id, amount=amount, currency="CNY",
                                     reference=reference)
        aid.approve_funding(session, approver, funding.public_id)
    paid = aid.create_batch_from_rule(session, maker, warmth.public_id,
                                      aid.Rule(amount=50_000, union_id=yinchuan.public_id, hardship_min_level=1),
                                      note="冬季送温暖：银川市困难职工每户500元", max_lines=10_000)
    demo_member = session.scalar(select(User).where(User.username == "member")).member_id
    id_number = cipher.decrypt(session.get(Member, demo_member).id_number_enc, members.ID_CONTEXT)
    medical_batch = aid.create_batch_from_csv(
        session, cipher, maker, medical.public_id, io.BytesIO(f"id_number,amount,note\n{id_number},30000,住院补助\n"
                                                              .encode()), "医疗互助.csv", max_lines=100)
    for batch in (paid, medical_batch):
        if batch.valid_lines:
            aid.approve_batch(session, approver, batch.public_id, second_approval_above=above)
            aid.run_batch(session, batch.public_id)
    aid.create_batch_from_rule(session, maker, warmth.public_id,
                               aid.Rule(amount=30_000, hardship_min_level=2), note="元旦慰问（待复核）",
                               max_lines=10_000)


DEMO_PIN = "258369"


def _demo_cards(session, cipher, admin: Actor, federation: Union) -> None:
    """Issue every member a card in one bulk run; most are activated, a few frozen; the demo member has a PIN."""
    from cards import service as cards
    from cards.models import Card

    rng = random.Random(7)
    prefix = current_app.config["CARD_PREFIX"]
    run = cards.start_bulk_issuance(session, admin, federation.public_id)
    cards.run_bulk_issuance(session, cipher, run.public_id, prefix=prefix)
    demo_user = session.scalar(select(User).where(User.username == "member"))
    in_demo = select(Member.id).join(Union, Member.union_id == Union.id).where(Union.path.startswith(federation.path))
    for card in session.scalars(select(Card).where(Card.member_id.in_(in_demo)).order_by(Card.id)).all():
        owner = card.member_id == demo_user.member_id
        if owner or rng.random() < 0.85:
            cards.change_state(session, admin, card.public_id, "activate")
            if not owner and rng.random() < 0.03:
                cards.change_state(session, admin, card.public_id, "freeze")
    card = cards.live_card_of(session, demo_user.member_id)
    guard = cards.PinGuard(current_app.extensions["kv"], max_failures=5, lockout=1800)
    cards.set_pin(session, cipher, guard, Actor.of(demo_user), card.public_id, pin=DEMO_PIN, current_pin=None)


HISTORY_MONTHS = 6
# Card payments at 塞上江南餐厅 in each of the last HISTORY_MONTHS months, oldest first: the scheme catching on.
HISTORY_PAYMENTS = (6, 10, 15, 21, 28, 36)


def _demo_history(session, admin: Actor) -> None:
    """Half a year of the scheme, so the union console's months have something to show: members registered
    and their cards issued and activated over the months (their dates set back), a consumption voucher of
    ¥100 paid onto every card, and card payments at 塞上江南餐厅's till growing month by month.

    Their business days have passed unsettled, so yesterday's settlement takes them in (as it would any
    sale an earlier run missed)."""
    from cards import service as cards
    from cards.models import Card, CardStatus
    from merchants.models import Merchant
    from payments.checkout import service as checkout
    from payments.disbursement import service as aid
    from payments.disbursement.models import ProgramKind, PursePolicy

    rng = random.Random(11)
    now = utcnow()
    federation = session.scalar(select(Union).where(Union.parent_id.is_(None), Union.name == FEDERATION[0]))
    in_demo = select(Member.id).join(Union, Member.union_id == Union.id).where(Union.path.startswith(federation.path))
    span = HISTORY_MONTHS * 30 + 20
    for member in session.scalars(select(Member).where(Member.id.in_(in_demo)).order_by(Member.id)):
        registered = now - dt.timedelta(days=rng.randint(span - 40, span), minutes=rng.randint(0, 600))
        member.created_at = registered
        card = cards.live_card_of(session, member.id)
        if card is not None:
            card.issued_at = registered + dt.timedelta(days=rng.randint(1, 10))
            if card.activated_at is not None:
                card.activated_at = card.issued_at + dt.timedelta(days=rng.randint(0, 20))
    session.commit()

    maker = Actor.of(session.scalar(select(User).where(User.username == "finance-maker")))
    approver = Actor.of(session.scalar(select(User).where(User.username == "finance-approver")))
    vouchers = aid.create_program(session, maker, name="2026年职工消费券", kind=ProgramKind.CONSUMPTION_VOUCHER,
                                  purse=PursePolicy.GENERAL, union_id=federation.public_id)
    funding = aid.create_funding(session, maker, vouchers.public_id, amount=5_000_000, currency="CNY",
                                 reference="宁夏银行 2026-05-20 入账")
    aid.approve_funding(session, approver, funding.public_id)
    batch = aid.create_batch_from_rule(session, maker, vouchers.public_id, aid.Rule(amount=10_000),
                                       note="全体会员消费券每人100元", max_lines=10_000)
    aid.approve_batch(session, approver, batch.public_id,
                      second_approval_above=current_app.config["DISBURSEMENT_SECOND_APPROVAL_ABOVE"])
    aid.run_batch(session, batch.public_id)

    cashier = Actor.of(session.scalar(select(User).where(User.username == "shop-cashier")))
    restaurant = session.scalar(select(Merchant).where(Merchant.name == "塞上江南餐厅"))
    codes = cards.PaymentCodes(current_app.extensions["kv"], current_app.config["SECRET_KEY"].encode(), ttl=60,
                               per_minute=1000)
    demo_member = session.scalar(select(User.member_id).where(User.username == "member"))
    payers = list(session.execute(select(Card.public_id, Card.member_id, Card.activated_at)
                                  .where(Card.member_id.in_(in_demo), Card.member_id != demo_member,
                                         Card.status == CardStatus.ACTIVE).order_by(Card.id)))
    left = {card_id: 10_000 for card_id, _m, _a in payers}  # the voucher; the story's member keeps theirs
    for back, count in zip(range(HISTORY_MONTHS, 0, -1), HISTORY_PAYMENTS):
        for _ in range(count):
            when = now - dt.timedelta(days=back * 30 - rng.randint(0, 27), hours=rng.randint(0, 8))
            card_id, member_id, activated = rng.choice(payers)
            amount = rng.randrange(1_500, 6_000, 100)
            if activated is None or activated >= when or left[card_id] < amount:
                continue
            left[card_id] -= amount
            owner = Actor(None, "demo", Role.MEMBER, member_id=member_id)
            code = codes.issue(session, owner, card_id).code
            checkout.pay(session, cashier, checkout.PayRequest(
                store_id=rng.choice(restaurant.stores).public_id, amount=amount,
                payment_code=code), codes=codes, pins=None, max_amount=5_000_000, now=when)


DEMO_MERCHANTS = [
    # username, business, credit code body (17 chars), category, region, address, stores, approve?
    ("shop-owner", "塞上江南餐厅", "91640100MA76DEMX0", "dining", "640104", "银川市兴庆区鼓楼南街3号",
     [("鼓楼店", "鼓楼南街3号", "10:00-22:00"), ("怀远店", "怀远夜市东门", "17:00-02:00")], True),
    ("pharmacy-owner", "固原康民大药房", "91640400MA76DEMX1", "pharmacy", "640402", "固原市原州区文化街12号",
     [("文化街店", "文化街12号", "8:00-21:00")], True),
    ("books-owner", "中卫书香文化", "91640500MA76DEMX2", "culture_sport", "640502", "中卫市沙坡头区鼓楼西街5号",
     [("鼓楼西街店", "鼓楼西街5号", "9:00-21:00")], True),
    ("applicant", "吴忠早茶铺", "91640300MA76DEMX3", "dining", "640302", "吴忠市利通区朝阳街8号",
     [("朝阳街店", "朝阳街8号", "6:30-14:00")], False),
]
DEMO_LICENCE = b"%PDF-1.4\n% demo licence\n"


def _demo_merchants(session, cipher) -> None:
    """Sign up, apply and (mostly) approve a few partner merchants, with a cashier at the first."""
    from merchants import service as merchants
    from merchants.connect import DisabledConnect
    from merchants.models import MerchantCategory
    from merchants.validators import uscc_check_char

    reviewer = Actor.of(session.scalar(select(User).where(User.username == "reviewer")))
    for username, business, code, category, region, address, stores, approve in DEMO_MERCHANTS:
        applicant = merchants.register_applicant(session, cipher, username=username, password=DEMO_PASSWORD,
                                                 phone="13995110000", display_name=business)
        actor = Actor.of(applicant)
        app = merchants.create_application(session, cipher, actor, merchants.ApplicationInput(
            name=business, uscc=code + uscc_check_char(code), legal_representative="负责人",
            contact_phone="13995110000", category=MerchantCategory(category), region=region, address=address,
            stores=[{"name": n, "address": a, "opening_hours": h} for n, a, h in stores],
            proposed_offers=[{"title": "工会会员九折"}],
            settlement={"method": "bank", "bank_name": "宁夏银行", "account_name": business,
                        "account_number": f"622202020011{code[-1]}000"}))
        merchants.add_document(session, actor, app.public_id, io.BytesIO(DEMO_LICENCE),
                               "营业执照.pdf", current_app.config["UPLOAD_FOLDER"])
        merchants.submit_application(session, actor, app.public_id)
        if approve:
            merchant = merchants.approve_application(session, reviewer, app.public_id, comment="资质齐全，同意入驻",
                                                     connect=DisabledConnect())
            if username == "shop-owner":
                merchants.add_staff(session, Actor.of(applicant), merchant.public_id, username="shop-cashier",
                                    password=DEMO_PASSWORD, role="cashier", display_name="收银员小王")


def _demo_offers(session, admin: Actor) -> None:
    """Published 普惠 offers: the restaurant's own discount, a reading offer the union pays half of, and a
    pharmacy offer for the hardship register; then the demo member's first payment at the restaurant."""
    from benefits import service as benefits
    from cards import service as cards
    from merchants.models import Merchant
    from payments.checkout import service as checkout
    from payments.disbursement.models import Program

    def merchant(name: str) -> str:
        return session.scalar(select(Merchant.public_id).where(Merchant.name == name))

    warmth = session.scalar(select(Program.public_id).where(Program.name == "2026年送温暖"))
    for terms in (
        {"title": "工会会员九折", "kind": "percent_off", "value": 1000, "max_discount": 5000, "funding": "merchant",
         "merchant_id": merchant("塞上江南餐厅"), "category": "everyday",
         "description": "堂食消费九折，每单最多优惠50元。"},
        {"title": "书香满100减20", "kind": "amount_off", "value": 2000, "min_spend": 10000, "funding": "split",
         "union_share_bp": 5000, "program_id": warmth, "merchant_id": merchant("中卫书香文化"), "category": "culture",
         "per_member_limit": {"count": 2, "period": "month"}, "budget_amount": 1_000_000,
         "description": "工会与书店各承担一半。"},
        {"title": "困难职工购药八五折", "kind": "percent_off", "value": 1500, "max_discount": 3000, "funding": "merchant",
         "merchant_id": merchant("固原康民大药房"), "category": "health", "eligibility": {"hardship_only": True}},
    ):
        offer = benefits.create_offer(session, admin, terms)
        benefits.publish(session, admin, offer.public_id)
    member = session.scalar(select(User).where(User.username == "member"))
    card = cards.live_card_of(session, member.member_id)
    store = session.scalar(select(Merchant).where(Merchant.name == "塞上江南餐厅")).stores[0]
    kv = current_app.extensions["kv"]
    pins = cards.PinGuard(kv, max_failures=5, lockout=1800)

    def pay(store_id: str, amount: int, when: dt.datetime | None = None):
        payment, _ = checkout.pay(session, Actor.of(member), checkout.PayRequest(
            store_id=store_id, amount=amount, card_id=card.public_id, pin=DEMO_PIN),
            codes=None, pins=pins, max_amount=5_000_000, now=when)
        return payment

    _demo_history(session, admin)
    # Yesterday's sales, a refund, and the settlement of that day: statements and payouts to look at.
    from payments.settlement import service as settlement

    yesterday = business_date() - dt.timedelta(days=1)
    start, _end = settlement.day_bounds(yesterday)
    books = session.scalar(select(Merchant).where(Merchant.name == "中卫书香文化")).stores[0]
    dinner = pay(store.public_id, 12_800, start + dt.timedelta(hours=11, minutes=30))
    pay(books.public_id, 15_000, start + dt.timedelta(hours=7, minutes=15))
    owner = Actor.of(session.scalar(select(User).where(User.username == "shop-owner")))
    checkout.refund(session, owner, dinner.public_id, amount=2_000, reason="一道菜未上",
                    now=start + dt.timedelta(hours=12, minutes=10))
    finance = Actor.of(session.scalar(select(User).where(User.username == "finance-maker")))
    settlement.settle_day(session, finance, yesterday, terms=settlement.Terms.from_config(current_app.config))
    pay(store.public_id, 8_800)
    # The union console's figures, so its first view has them.
    from stats import service as stats

    stats.refresh(session)
    session.commit()


@click.command("demo")
@with_appcontext
@click.option("--members-per-union", default=40, show_default=True, type=click.IntRange(1, 5000))
def demo_command(members_per_union: int) -> None:
    """Load a realistic demo data set and print the logins (does nothing if it is already there)."""
    with db.session_scope() as session:
        if session.scalar(select(User.id).where(User.username == "admin")) is not None:
            click.echo("Demo data is already loaded.")
        else:
            load_demo(session, current_app.extensions["cipher"], members_per_union)
            click.echo(f"Loaded the demo: {len(CITIES)} cities, "
                       f"{members_per_union} members in each grassroots union.")
    click.echo(f"Demo logins (password for all: {DEMO_PASSWORD}):")
    click.echo(f"  {'admin':<18} {'union_admin':<18} whole platform")
    for username, role, _display, _region, note in DEMO_STAFF:
        click.echo(f"  {username:<18} {role.value:<18} {note}")
    click.echo(f"  {'member':<18} {'member':<18} a member of 兴庆区 with an active card (PIN {DEMO_PIN})")
    click.echo(f"  {'shop-owner':<18} {'merchant_owner':<18} 塞上江南餐厅 (two stores)")
    click.echo(f"  {'shop-cashier':<18} {'merchant_cashier':<18} the till at 塞上江南餐厅")
    click.echo(f"  {'applicant':<18} {'applicant':<18} 吴忠早茶铺, an application waiting in the review queue")
