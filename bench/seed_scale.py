"""A province-scale data set for the union console: 500,000 members, 5,000 merchants and 10,000,000 card payments.

What it makes, in a PostgreSQL database migrated to head (empty, or at least without these bench rows):
- the org tree of a province: the federation (640000), its five cities, their 22 counties and about one
  grassroots union per 500 members under the counties, each made by `members.service.create_union`;
- the members, spread over the grassroots unions and registered over the `months` months before now (most of
  them early, as the registry's first imports), 96 % active; about 3 % on the hardship register. Every ID
  number and phone is encrypted and blind-indexed with the app's own cipher, one value per row;
- a card for about 93 % of members (active, issued and not activated, frozen, lost), numbers encrypted and
  blind-indexed like the members'; no general purses (nothing here needs one);
- the partner merchants over the counties and the nine trades, one to three stores each, each with its payable
  ledger account opened as approval would;
- aid programs of the federation and of every city, funded, approved, and paid onto the hardship members' cards
  by rule-picked disbursement batches through `payments.disbursement.service` (restricted purses, real ledger
  transactions); two more federation programs only funded;
- about 150 published offers over the six families, at merchants and for whole trades, some union-funded;
- the card payments, in time order, by the cards that were active then, at the stores open then, priced with
  the best offer that applied, and 1 % of them refunded. The payments and refunds are rows only: no ledger
  transactions stand behind them (the console's figures read the rows, not the ledger).

Members, cards, merchants, stores and payments go in by COPY. The payments table is loaded with its secondary
indexes, unique constraints and foreign keys dropped, which are then made again from their own definitions
(read from the catalog first, compared after) and the tables vacuumed and analysed.

Run: .venv/bin/python bench/seed_scale.py [--members N --merchants N --payments N --months N --seed N]
     [--database-url URL | --keep] [--quick (20,000 members, 200 merchants, 200,000 payments)]
Without --database-url it seeds a scratch database on the server in DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/postgres) and drops it afterwards; --keep keeps it and prints its URL.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import math
import os
import random
import tempfile
import time

from _support import id_number, knob, scratch_database
from sqlalchemy import text

SERVER = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATA_KEY = "bench-data-key"
SECRET_KEY = "bench-secret-key"
PASSWORD = "bench-password"
CARD_PREFIX = "880064"
MEMBERS_PER_UNION = 500
COPY_CHUNK = 50_000  # rows per write to a COPY
NULL = "\\N"  # in COPY's text format
PAYMENT_CHUNK = 100_000

FEDERATION = ("640000", "宁夏回族自治区总工会")
# City region, name, share of the province's members (and, a little more concentrated, of its merchants).
CITIES = [("640100", "银川市", 0.40), ("640200", "石嘴山市", 0.11), ("640300", "吴忠市", 0.20),
          ("640400", "固原市", 0.17), ("640500", "中卫市", 0.12)]
COUNTIES = {
    "640100": [("640104", "兴庆区"), ("640105", "西夏区"), ("640106", "金凤区"), ("640121", "永宁县"),
               ("640122", "贺兰县"), ("640181", "灵武市")],
    "640200": [("640202", "大武口区"), ("640205", "惠农区"), ("640221", "平罗县")],
    "640300": [("640302", "利通区"), ("640303", "红寺堡区"), ("640323", "盐池县"), ("640324", "同心县"),
               ("640381", "青铜峡市")],
    "640400": [("640402", "原州区"), ("640422", "西吉县"), ("640423", "隆德县"), ("640424", "泾源县"),
               ("640425", "彭阳县")],
    "640500": [("640502", "沙坡头区"), ("640521", "中宁县"), ("640522", "海原县")],
}
EMPLOYERS = ["供电公司", "第一中学", "人民医院", "建筑公司", "物流公司", "煤业公司", "化工厂", "商贸城", "农业合作社",
             "交通运输公司", "自来水公司", "邮政分公司", "纺织厂", "税务局", "实验小学", "职业技术学院"]
SURNAMES = "王李张刘陈杨马黄赵周吴徐孙胡朱高林何郭罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
HARDSHIP_REASONS = ["因病致困", "子女就学困难", "下岗失业", "因灾致困", "单亲家庭", "家庭成员残疾"]
# Trade, share of merchants, and the word a shop of it is called by.
TRADES = [("dining", 0.30, "餐厅"), ("supermarket", 0.20, "超市"), ("pharmacy", 0.10, "大药房"),
          ("medical", 0.06, "诊所"), ("culture_sport", 0.08, "文体中心"), ("legal", 0.03, "律师事务所"),
          ("education", 0.06, "培训学校"), ("travel", 0.07, "旅行社"), ("other", 0.10, "便民服务部")]
FAMILY_TITLES = {"culture": "文化惠民", "legal": "法律服务", "health": "健康关爱", "safety": "安全守护",
                 "entertainment": "文旅休闲", "everyday": "生活普惠"}
# Till amounts in fen: log-normal around ¥40, from ¥1 to ¥500.
AMOUNT_MU, AMOUNT_SIGMA, AMOUNT_MIN, AMOUNT_MAX = math.log(4000), 0.8, 100, 50_000
# Three payments in four are by the fifth of the cards that are used often; the rest by any card.
REGULAR_SHARE, REGULAR_EVERY = 0.75, 5
REFUND_RATE = 0.01
HOURS = (7, 22)  # the tills' day, Asia/Shanghai


def _copy(conn, table: str, columns: list[str], lines) -> int:
    """COPY text-format lines (tab-separated, \\N for NULL, newline-ended) into the table; return how many."""
    n = 0
    with conn.connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        chunk = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= COPY_CHUNK:
                copy.write("".join(chunk).encode())
                n += len(chunk)
                chunk = []
        if chunk:
            copy.write("".join(chunk).encode())
            n += len(chunk)
    return n


def _ts(moment: dt.datetime) -> str:
    return moment.isoformat()


def _spread(n: int, weights: list[float], minimum: int = 0) -> list[int]:
    """Split n into parts in proportion to the weights (largest remainder), each at least `minimum`."""
    total = sum(weights)
    parts = [max(minimum, int(n * w / total)) for w in weights]
    remainders = sorted(range(len(weights)), key=lambda k: n * weights[k] / total - parts[k], reverse=True)
    for k in remainders[:max(0, n - sum(parts))]:
        parts[k] += 1
    return parts


class Seeder:
    """The data set, made step by step in one app context; each step prints its time."""

    def __init__(self, app, *, members: int, merchants: int, payments: int, months: int, seed: int):
        from core.db import db

        self.app, self.session, self.cipher = app, db.session, app.extensions["cipher"]
        self.n_members, self.n_merchants, self.n_payments, self.months = members, merchants, payments, months
        self.rnd = random.Random(seed)
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.start = self.now - dt.timedelta(days=round(months * 365.25 / 12))
        self.span = (self.now - self.start).total_seconds()
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, label: str):
        started = time.perf_counter()
        yield
        self.timings[label] = time.perf_counter() - started
        print(f"  {label:<58}{self.timings[label]:>8.1f} s", flush=True)

    def commit(self):
        self.session.commit()

    # --- people and the org tree ----------------------------------------------------------------

    def users(self) -> None:
        from core.auth import Actor, create_user
        from core.models import Role

        s = self.session
        self.admin_user = create_user(s, username="seed-admin", password=PASSWORD, role=Role.UNION_ADMIN)
        maker = create_user(s, username="seed-maker", password=PASSWORD, role=Role.FINANCE_MAKER)
        approvers = [create_user(s, username=f"seed-approver-{k}", password=PASSWORD, role=Role.FINANCE_APPROVER)
                     for k in (1, 2)]
        self.commit()
        self.admin, self.maker = Actor.of(self.admin_user), Actor.of(maker)
        self.approvers = [Actor.of(u) for u in approvers]

    def org_tree(self) -> None:
        """The federation, cities, counties and grassroots unions, through the registry's own service."""
        from members import service as members

        s, admin = self.session, self.admin
        self.federation = members.create_union(s, admin, name=FEDERATION[1], parent_id=None, region=FEDERATION[0])
        self.cities = {}
        counties = []
        for region, name, share in CITIES:
            city = members.create_union(s, admin, name=f"{name}总工会", parent_id=self.federation.public_id,
                                        region=region)
            self.cities[region] = city
            for county_region, county_name in COUNTIES[region]:
                county = members.create_union(s, admin, name=f"{county_name}总工会", parent_id=city.public_id,
                                              region=county_region)
                counties.append((county, county_name, share / len(COUNTIES[region])))
        self.counties = counties
        wanted = max(len(counties), round(self.n_members / MEMBERS_PER_UNION))
        per_county = _spread(wanted, [w for _c, _n, w in counties], minimum=1)
        self.grassroots = []
        for (county, county_name, _w), n in zip(counties, per_county):
            for k in range(n):
                employer = EMPLOYERS[k % len(EMPLOYERS)]
                name = f"{county_name}{employer}工会" if k < len(EMPLOYERS) else \
                    f"{county_name}{employer}第{k // len(EMPLOYERS) + 1}分会"
                self.grassroots.append(members.create_union(s, admin, name=name, parent_id=county.public_id,
                                                            region=county.region))

    def members(self) -> None:
        """Members by COPY, registered front-loaded over the period; ids read back in order."""
        from core.crypto import mask_id_number, mask_phone

        rnd, cipher, span, start = self.rnd, self.cipher, self.span, self.start
        n = self.n_members
        # Half of the registry came in the first quarter of the period (the first imports), the rest after.
        offsets = sorted(span * rnd.random() ** 2 for _ in range(n))
        unions = [u.id for u in self.grassroots]
        self.member_created: list[dt.datetime] = []
        self.member_status: list[str] = []

        def lines():
            for i in range(n):
                created = start + dt.timedelta(seconds=offsets[i])
                r = rnd.random()
                status = "active" if r < 0.96 else "transferred" if r < 0.985 else "left"
                self.member_created.append(created)
                self.member_status.append(status)
                ident, phone = id_number(i), f"139{i:08d}"
                name = SURNAMES[i % len(SURNAMES)] + GIVEN[(i // len(SURNAMES)) % len(GIVEN)] + GIVEN[i % 7]
                joined = (created - dt.timedelta(days=rnd.randrange(30, 7300))).date()
                yield (f"mem_s{i:09d}\t{name}\t{cipher.encrypt(ident, 'member.id_number')}\t"
                       f"{cipher.blind_index(ident, 'member.id_number')}\t{mask_id_number(ident)}\t"
                       f"{cipher.encrypt(phone, 'member.phone')}\t{cipher.blind_index(phone, 'member.phone')}\t"
                       f"{mask_phone(phone)}\t{unions[rnd.randrange(len(unions))]}\t{status}\t{joined}\t"
                       f"{_ts(created)}\t{_ts(created)}\n")

        conn = self.session.connection()
        _copy(conn, "members", ["public_id", "name", "id_number_enc", "id_number_index", "id_number_masked",
                                "phone_enc", "phone_index", "phone_masked", "union_id", "status", "join_date",
                                "created_at", "updated_at"], lines())
        self.member_ids = list(self.session.scalars(text(
            r"SELECT id FROM members WHERE public_id LIKE 'mem\_s%' ORDER BY public_id")))
        assert len(self.member_ids) == n, len(self.member_ids)
        self.commit()

    def hardship(self) -> int:
        """About 3 % of members on the hardship register, most entries valid for a while yet."""
        rnd, today = self.rnd, self.now.date()
        admin_id = self.admin_user.id
        picked = [i for i in range(self.n_members) if rnd.random() < 0.03]

        def lines():
            for i in picked:
                level = 1 if (r := rnd.random()) < 0.5 else 2 if r < 0.85 else 3
                until = today + dt.timedelta(days=rnd.randrange(30, 720)) if rnd.random() < 0.88 \
                    else today - dt.timedelta(days=rnd.randrange(1, 365))
                updated = min(self.member_created[i] + dt.timedelta(days=rnd.randrange(0, 60)), self.now)
                yield (f"{self.member_ids[i]}\t{level}\t{HARDSHIP_REASONS[rnd.randrange(len(HARDSHIP_REASONS))]}\t"
                       f"{until}\t{_ts(updated)}\t{admin_id}\n")

        count = _copy(self.session.connection(), "hardship_records",
                      ["member_id", "level", "reason", "valid_until", "updated_at", "updated_by_id"], lines())
        self.commit()
        return count

    def cards(self) -> int:
        """A card for 97 % of active members: mostly active, some not yet activated, a few frozen or lost."""
        from cards.numbers import luhn_check_digit, mask_card_number

        rnd, cipher, now = self.rnd, self.cipher, self.now
        latest = now - dt.timedelta(minutes=1)
        admin_id = self.admin_user.id

        def lines():
            k = 0
            for i in range(self.n_members):
                if self.member_status[i] != "active" or rnd.random() >= 0.97:
                    continue
                r = rnd.random()
                status = "active" if r < 0.905 else "issued" if r < 0.975 else "frozen" if r < 0.995 else "lost"
                created = self.member_created[i]
                issued = max(created, min(created + dt.timedelta(seconds=rnd.uniform(0, 14 * 86400)), latest))
                activated = None
                if status != "issued":
                    activated = max(issued, min(issued + dt.timedelta(seconds=rnd.uniform(3600, 30 * 86400)),
                                                latest))
                body = f"{CARD_PREFIX}{k:012d}"
                number = body + luhn_check_digit(body)
                frozen_by_staff = "t" if status == "frozen" and rnd.random() < 0.3 else "f"
                yield (f"card_s{k:09d}\t{self.member_ids[i]}\t{cipher.encrypt(number, 'card.number')}\t"
                       f"{cipher.blind_index(number, 'card.number')}\t{mask_card_number(number)}\t{status}\t"
                       f"{frozen_by_staff}\t{admin_id}\t{_ts(issued)}\t"
                       f"{_ts(activated) if activated else NULL}\t{_ts(activated or issued)}\n")
                k += 1

        count = _copy(self.session.connection(), "cards",
                      ["public_id", "member_id", "number_enc", "number_index", "number_masked", "status",
                       "frozen_by_staff", "issued_by_id", "issued_at", "activated_at", "updated_at"], lines())
        self.commit()
        return count

    # --- merchants, programs and offers --------------------------------------------------------

    def merchants(self) -> tuple[int, int]:
        """Merchants over the counties and trades by COPY, one to three stores each, a payable each."""
        from core.crypto import mask_account_number, mask_phone
        from merchants.validators import uscc_check_char
        from payments import ledger

        rnd, cipher, now = self.rnd, self.cipher, self.now
        n = self.n_merchants
        # Merchants gather in the capital a little more than members do.
        weights = [w * (1.3 if c.region.startswith("6401") else 1.0) for c, _n, w in self.counties]
        trade_weights = [w for _t, w, _word in TRADES]
        rows = []
        for i in range(n):
            county, county_name, _w = rnd.choices(self.counties, weights)[0]
            trade, _share, word = rnd.choices(TRADES, trade_weights)[0]
            # Three in ten signed before the period began (the launch), the rest over it.
            created = (self.start - dt.timedelta(days=rnd.uniform(0, 60)) if rnd.random() < 0.3
                       else self.start + dt.timedelta(seconds=rnd.uniform(0, self.span - 86400)))
            r = rnd.random()
            status = "active" if r < 0.94 else "suspended" if r < 0.98 else "terminated"
            name = f"{county_name}{SURNAMES[i % len(SURNAMES)]}记{word}{i:05d}"
            rows.append((i, county, county_name, trade, word, created, status, name))
        self.merchant_rows = rows

        def merchant_lines():
            for i, county, county_name, trade, _word, created, status, name in rows:
                body = f"92{county.region}{i:08d}0"
                phone, account = f"138{i:08d}", f"62220202{i:011d}"
                changed = created if status == "active" else min(created + dt.timedelta(days=rnd.uniform(30, 200)),
                                                                   now)
                reason = NULL if status == "active" else "合作协议终止" if status == "terminated" else "消费者投诉核查中"
                yield (f"mch_s{i:07d}\t{name}\t{body + uscc_check_char(body)}\t{SURNAMES[i % len(SURNAMES)]}经理\t"
                       f"{cipher.encrypt(phone, 'merchant.contact_phone')}\t{mask_phone(phone)}\t{trade}\t"
                       f"{county.region}\t{county_name}建设路{i + 1}号\t{status}\tbank\t宁夏银行\t{name}\t"
                       f"{cipher.encrypt(account, 'merchant.bank_account')}\t{mask_account_number(account)}\t"
                       f"merchant:mch_s{i:07d}:payable\t{_ts(created)}\t{_ts(changed)}\t{reason}\n")

        conn = self.session.connection()
        _copy(conn, "merchants", ["public_id", "name", "uscc", "legal_representative", "contact_phone_enc",
                                  "contact_phone_masked", "category", "region", "address", "status",
                                  "settlement_method", "bank_name", "bank_account_name", "bank_account_enc",
                                  "bank_account_masked", "payable_account", "created_at", "status_changed_at",
                                  "status_reason"], merchant_lines())
        self.merchant_ids = list(self.session.scalars(text(
            r"SELECT id FROM merchants WHERE public_id LIKE 'mch\_s%' ORDER BY public_id")))
        assert len(self.merchant_ids) == n

        stores = []

        def store_lines():
            k = 0
            for i, _county, county_name, _trade, _word, created, status, name in rows:
                for shop in range(1, 1 + rnd.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]):
                    open_ = status != "terminated" and rnd.random() >= 0.03
                    stores.append((k, i, created))
                    yield (f"sto_s{k:07d}\t{self.merchant_ids[i]}\t{name}{shop}号店\t"
                           f"{county_name}建设路{i + 1}号{shop}号铺\t09:00-21:00\t{'open' if open_ else 'closed'}\t"
                           f"{_ts(created)}\n")
                    k += 1

        count = _copy(conn, "stores", ["public_id", "merchant_id", "name", "address", "opening_hours", "status",
                                       "created_at"], store_lines())
        store_ids = list(self.session.scalars(text(
            r"SELECT id FROM stores WHERE public_id LIKE 'sto\_s%' ORDER BY public_id")))
        self.stores = [(store_ids[k], i, created) for k, i, created in stores]
        for i in range(n):
            ledger.open_account(self.session, f"merchant:mch_s{i:07d}:payable", normal_side="credit",
                                allow_negative=True, mode="append_only", owner_kind="merchant",
                                owner_id=f"mch_s{i:07d}")
        self.commit()
        return n, count

    def programs(self) -> dict[str, int]:
        """Aid programs of the federation and the cities, funded and paid out through the finance services."""
        from payments.disbursement import service as aid
        from payments.disbursement.models import ProgramKind, PursePolicy

        s, maker, approvers = self.session, self.maker, self.approvers
        year_on = self.now + dt.timedelta(days=365)
        made = {"programs": 0, "fundings": 0, "batches": 0, "lines_paid": 0, "paid": 0}

        def program(union, name, kind, purse, funding, categories=None, expires=None):
            p = aid.create_program(s, maker, name=name, kind=kind, purse=purse, union_id=union.public_id,
                                   allowed_categories=categories, expires_at=expires)
            f = aid.create_funding(s, maker, p.public_id, amount=funding, currency="CNY", reference=f"SEED-{name}")
            aid.approve_funding(s, approvers[0], f.public_id)
            made["programs"] += 1
            made["fundings"] += 1
            return p

        def pay(p, amount, level, union=None):
            batch = aid.create_batch_from_rule(s, maker, p.public_id,
                                               aid.Rule(amount=amount, union_id=union.public_id if union else None,
                                                        hardship_min_level=level),
                                               note="困难职工帮扶", max_lines=self.app.config["DISBURSEMENT_MAX_LINES"])
            if not batch.valid_lines:
                return
            above = self.app.config["DISBURSEMENT_SECOND_APPROVAL_ABOVE"]
            batch = aid.approve_batch(s, approvers[0], batch.public_id, second_approval_above=above)
            if batch.approvals_needed == 2:
                aid.approve_batch(s, approvers[1], batch.public_id, second_approval_above=above)
            batch = aid.run_batch(s, batch.public_id, chunk=self.app.config["DISBURSEMENT_CHUNK"])
            made["batches"] += 1
            made["lines_paid"] += batch.done_lines
            made["paid"] += batch.done_amount

        fed, scale = self.federation, max(1, self.n_members)
        hardship = program(fed, "困难职工帮扶金", ProgramKind.HARDSHIP_AID, PursePolicy.RESTRICTED, scale * 2_000,
                           ["supermarket", "pharmacy", "dining", "medical"], year_on)
        self.voucher = program(fed, "普惠消费补贴", ProgramKind.CONSUMPTION_VOUCHER, PursePolicy.GENERAL, scale * 1_000)
        program(fed, "金秋助学", ProgramKind.STUDENT_AID, PursePolicy.GENERAL, scale * 500)
        pay(hardship, 50_000, 2)
        for region, name, _share in CITIES:
            city = self.cities[region]
            medical = program(city, f"{name}职工医疗互助", ProgramKind.MEDICAL_AID, PursePolicy.RESTRICTED,
                              scale * 400, ["pharmacy", "medical"], self.now + dt.timedelta(days=180))
            pay(medical, 20_000, 1, city)
        return made

    def offers(self) -> int:
        """About 150 published offers: at merchants (mostly merchant-funded) and for whole trades or families."""
        from benefits.models import FAMILY_OF_MERCHANT_CATEGORY, Offer
        from merchants.models import MerchantCategory

        rnd, now = self.rnd, self.now
        admin_id, voucher = self.admin_user.id, self.voucher.public_id
        active = [row for row in self.merchant_rows if row[6] == "active"]
        offers, self.offer_terms = [], []

        def window(earliest: dt.datetime):
            starts = earliest + dt.timedelta(seconds=rnd.uniform(0, max(1.0, (now - earliest).total_seconds()
                                                                        - 86400)))
            r = rnd.random()
            ends = None if r < 0.8 else now + dt.timedelta(days=rnd.uniform(10, 200)) if r < 0.95 \
                else now - dt.timedelta(days=rnd.uniform(1, 20))
            return starts, ends

        def terms(percent: bool, funding: str):
            value = rnd.choice((500, 800, 1000, 1200, 1500)) if percent else rnd.choice((500, 1000, 2000))
            min_spend = rnd.choice((0, 2000, 5000)) if percent else value * rnd.choice((3, 5, 10))
            cap = rnd.choice((1000, 2000, 3000, 5000)) if percent else None
            share = {"merchant": 0, "union": 10_000, "split": 5_000}[funding]
            return value, min_spend, cap, share

        def offer(merchant_row, category, merchant_category, title, percent, funding, union_ids=None):
            earliest = self.start - dt.timedelta(days=30)
            if merchant_row is not None:
                earliest = max(earliest, merchant_row[5])
            starts, ends = window(earliest)
            value, min_spend, cap, share = terms(percent, funding)
            public = f"off_s{len(offers):05d}"
            offers.append({
                "public_id": public, "lineage": public, "version": 1,
                "merchant_id": self.merchant_ids[merchant_row[0]] if merchant_row else None, "category": category,
                "merchant_category": merchant_category, "title": title, "description": "", "kind":
                    "percent_off" if percent else "amount_off", "value": value, "min_spend": min_spend,
                "max_discount": cap, "funding": funding, "union_share_bp": share,
                "program_id": voucher if funding != "merchant" else None, "starts_at": starts, "ends_at": ends,
                "hardship_only": False, "union_ids": union_ids, "stackable": False, "priority": 0,
                "status": "published", "created_by_id": admin_id, "decided_by_id": admin_id,
                "created_at": starts - dt.timedelta(days=3), "proposed_at": None, "published_at": starts})
            # What checkout's pricing would weigh at a store: offers for some unions only are left out here.
            if union_ids is None:
                self.offer_terms.append((merchant_row[0] if merchant_row else None, merchant_category, category,
                                         (public, percent, value, min_spend, cap, share,
                                          voucher if funding != "merchant" else None, starts.timestamp(),
                                          ends.timestamp() if ends else math.inf)))

        families = list(FAMILY_TITLES)
        for k, row in enumerate(rnd.sample(active, min(len(active), 90))):
            word = row[4]
            funding = "split" if k % 5 == 0 else "merchant"
            offer(row, None, None, f"{word}会员专享{'折扣' if k % 3 else '满减'}", k % 3 != 0, funding)
        for k in range(60):
            family = families[k % len(families)]
            trades = [t for t in MerchantCategory if FAMILY_OF_MERCHANT_CATEGORY[t].value == family]
            trade = rnd.choice(trades).value if trades and k % 2 else None
            funding = ("union", "split", "merchant")[k % 3]
            union_ids = [self.cities[CITIES[k % len(CITIES)][0]].public_id] if k % 10 == 9 else None
            offer(None, family, trade, f"{FAMILY_TITLES[family]}·第{k // len(families) + 1}期", k % 4 != 3, funding,
                  union_ids)
        self.session.execute(Offer.__table__.insert(), offers)
        self.commit()
        return len(offers)

    # --- payments -------------------------------------------------------------------------------

    def _store_offers(self) -> list[tuple]:
        """Each store's offers as pricing weighs them: its merchant's, and those for its trade or family."""
        from benefits.models import FAMILY_OF_MERCHANT_CATEGORY
        from merchants.models import MerchantCategory

        out = []
        for _store_id, i, _created in self.stores:
            trade = self.merchant_rows[i][3]
            family = FAMILY_OF_MERCHANT_CATEGORY[MerchantCategory(trade)].value
            out.append(tuple(t for merchant, merchant_category, category, t in self.offer_terms
                             if merchant == i or (merchant is None and (merchant_category == trade or (
                                 merchant_category is None and category == family)))))
        return out

    def _days(self, card_times: list[float], store_times: list[float]) -> list[tuple]:
        """The tills' hours of each business day, the cards and stores in use by then, and the day's payments."""
        from core.i18n import BUSINESS_TZ

        days, weights = [], []
        first = self.start.astimezone(BUSINESS_TZ).date()
        last = self.now.astimezone(BUSINESS_TZ).date()
        day = first
        while day <= last:
            midnight = dt.datetime.combine(day, dt.time(0), BUSINESS_TZ)
            opens = max(midnight + dt.timedelta(hours=HOURS[0]), self.start)
            closes = min(midnight + dt.timedelta(hours=HOURS[1]), self.now - dt.timedelta(seconds=1))
            if closes > opens:
                cards = bisect.bisect_left(card_times, opens.timestamp())
                stores = bisect.bisect_left(store_times, opens.timestamp())
                hours = (closes - opens).total_seconds() / 3600
                weight = cards * hours * (1.3 if day.isoweekday() >= 6 else 1.0) if stores else 0
                days.append([day, midnight, opens, closes, cards, stores, 0])
                weights.append(weight)
            day += dt.timedelta(days=1)
        if not sum(weights):
            raise RuntimeError("No card was active on any day of the period: nothing can pay.")
        # Payments follow the cards in use: the day's share of the whole is its active cards times its hours.
        total, done, running = sum(weights), 0, 0.0
        for entry, weight in zip(days, weights):
            running += weight
            upto = round(self.n_payments * running / total)
            entry[6] = upto - done
            done = upto
        return [tuple(d) for d in days if d[6]]

    def payments(self) -> tuple[int, int]:
        """Payments and refunds by COPY, into the payments table stripped of its secondary indexes and keys."""
        from cards.service import general_account
        from core.money import bp_of

        s = self.session
        active = s.execute(text(r"""
            SELECT id, member_id, public_id, extract(epoch FROM activated_at) FROM cards
            WHERE status = 'active' AND public_id LIKE 'card\_s%' ORDER BY activated_at, id""")).all()
        card_ids = [r[0] for r in active]
        card_members = [r[1] for r in active]
        card_public = [r[2] for r in active]
        card_times = [float(r[3]) for r in active]
        order = sorted(range(len(self.stores)), key=lambda k: (self.stores[k][2], self.stores[k][0]))
        store_offers_all = self._store_offers()
        store_ids = [self.stores[k][0] for k in order]
        store_merchants = [self.merchant_ids[self.stores[k][1]] for k in order]
        store_offers = [store_offers_all[k] for k in order]
        store_times = [self.stores[k][2].timestamp() for k in order]
        days = self._days(card_times, store_times)
        till = self._till()
        first_id = (s.scalar(text("SELECT coalesce(max(id), 0) FROM payments")) or 0) + 1
        self.commit()

        rnd = self.rnd
        rand, gauss, exp = rnd.random, rnd.gauss, math.exp
        now_epoch = self.now.timestamp() - 1
        refunds: list[str] = []
        progress = {"rows": 0, "started": time.perf_counter()}

        def lines():
            g = first_id - 1
            for day, midnight, opens, closes, k_cards, k_stores, n in days:
                prefix = f"{day.isoformat()} "
                base_us = int((opens - midnight).total_seconds() * 1_000_000)
                width_us = int((closes - opens).total_seconds() * 1_000_000)
                midnight_epoch = midnight.timestamp()
                opens_epoch = opens.timestamp()
                for i in range(n):
                    g += 1
                    j = int(rand() * k_cards)
                    if rand() < REGULAR_SHARE:
                        j -= j % REGULAR_EVERY
                    st = int(rand() * k_stores)
                    amount = int(exp(gauss(AMOUNT_MU, AMOUNT_SIGMA)))
                    amount = AMOUNT_MIN if amount < AMOUNT_MIN else AMOUNT_MAX if amount > AMOUNT_MAX else amount
                    discount = union_share = 0
                    offer_id = program_id = NULL
                    for public, percent, value, min_spend, cap, share, program, o_start, o_end in store_offers[st]:
                        if amount < min_spend or not o_start <= opens_epoch < o_end:
                            continue
                        if percent:
                            d = bp_of(amount, value)
                            if cap is not None and d > cap:
                                d = cap
                        else:
                            d = value if value < amount else amount
                        if d > discount:
                            discount, offer_id = d, public
                            union_share = d if share == 10_000 else bp_of(d, share) if share else 0
                            program_id = program or NULL
                    charged = amount - discount
                    us = base_us + width_us * (i + rand()) // n
                    h, rest = divmod(int(us), 3_600_000_000)
                    m, rest = divmod(rest, 60_000_000)
                    sec, micro = divmod(rest, 1_000_000)
                    status, refunded, union_back = "completed", 0, 0
                    if rand() < REFUND_RATE:
                        full = rand() < 0.7
                        refunded = charged if full else max(1, charged // 2)
                        union_back = union_share if full else union_share * refunded // charged
                        status = "refunded" if full else "partially_refunded"
                        paid_at = midnight_epoch + us / 1_000_000
                        when = dt.datetime.fromtimestamp(min(paid_at + rand() * 3 * 86400 + 600, now_epoch), dt.UTC)
                        legs = (f'[{{"account": "{general_account(card_public[j])}", "amount": {refunded}, '
                                f'"purse_kind": "general", "program_id": null}}]')
                        refunds.append(f"rfd_s{g:010d}\t{g}\t{refunded}\t{union_back}\t退货退款\t{legs}\t"
                                       f"txn_s{g:010d}\t{till}\t{g:064x}\t{when.isoformat()}\n")
                    yield (f"{g}\tpay_s{g:010d}\t{store_ids[st]}\t{store_merchants[st]}\t{card_ids[j]}\t"
                           f"{card_members[j]}\t{'pin' if rand() < 0.4 else 'payment_code'}\tCNY\t{amount}\t"
                           f"{discount}\t{charged}\t{union_share}\t{discount - union_share}\t{program_id}\t"
                           f"{offer_id}\t{status}\t{refunded}\t{union_back}\t{till}\t{g:064x}\t"
                           f"{prefix}{h:02d}:{m:02d}:{sec:02d}.{micro:06d}+08\n")
                progress["rows"] += n
                if progress["rows"] // 1_000_000 != (progress["rows"] - n) // 1_000_000:
                    spent = time.perf_counter() - progress["started"]
                    print(f"    {progress['rows']:>12,} payments ({day}), {progress['rows'] / spent:,.0f}/s",
                          flush=True)

        engine = s.get_bind()
        with engine.connect() as conn:
            conn.execute(text("SET maintenance_work_mem = '1GB'"))
            with self.step("payments: secondary indexes and keys dropped"):
                deferred = _Deferred(conn, "payments")
                deferred.drop()
            with self.step("payments: COPY (generated in time order)"):
                count = _copy(conn, "payments", ["id", "public_id", "store_id", "merchant_id", "card_id",
                                                 "member_id", "method", "currency", "amount", "discount", "charged",
                                                 "union_share", "merchant_share", "program_id", "offer_id",
                                                 "status", "refunded", "union_refunded", "created_by_id",
                                                 "request_hash", "created_at"], lines())
                conn.execute(text("SELECT setval(pg_get_serial_sequence('payments', 'id'), "
                                  "(SELECT max(id) FROM payments))"))
                conn.commit()
            with self.step("payments: indexes and unique constraints rebuilt"):
                deferred.rebuild_indexes()
            with self.step("payments: foreign keys added back (checked)"):
                deferred.rebuild_foreign_keys()
                deferred.check()
            with self.step("refunds: COPY"):
                refunded = _copy(conn, "refunds", ["public_id", "payment_id", "amount", "union_back", "reason", "legs",
                                                   "transaction_id", "created_by_id", "request_hash", "created_at"],
                                 refunds)
                conn.commit()
        return count, refunded

    def _till(self) -> int:
        """The cashier every payment is recorded as taken by (one bench user, at the first merchant)."""
        from core.auth import create_user
        from core.models import Role

        user = create_user(self.session, username="seed-till", password=PASSWORD, role=Role.MERCHANT_CASHIER,
                           merchant_id=self.merchant_ids[0])
        self.commit()
        return user.id

    def vacuum(self) -> None:
        with self.session.get_bind().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))


class _Deferred:
    """A table's secondary indexes, unique constraints and foreign keys, dropped for a bulk load and made again
    from the definitions the catalog gave before (the primary key stays: other tables' keys point at it)."""

    def __init__(self, conn, table: str):
        self.conn, self.table = conn, table
        self.before = self._schema()
        self.constraints = conn.execute(text("""
            SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = CAST(:t AS regclass) AND contype IN ('u', 'f') ORDER BY conname"""),
                                        {"t": table}).all()
        self.indexes = conn.execute(text("""
            SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary
              AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                                                              AND k.conrelid = i.indrelid)
            ORDER BY c.relname"""), {"t": table}).all()

    def _schema(self) -> set[tuple[str, str]]:
        rows = self.conn.execute(text("""
            SELECT 'index ' || c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i
            JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = CAST(:t AS regclass)
            UNION ALL
            SELECT 'constraint ' || conname,
                   CAST(contype AS text) || ' ' || pg_get_constraintdef(oid) || ' valid ' || CAST(convalidated AS text)
            FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"""), {"t": self.table}).all()
        return {(name, definition) for name, definition in rows}

    def drop(self) -> None:
        for name, _kind, _definition in sorted(self.constraints, key=lambda c: c[1] != "f"):
            self.conn.execute(text(f'ALTER TABLE {self.table} DROP CONSTRAINT "{name}"'))
        for name, _definition in self.indexes:
            self.conn.execute(text(f'DROP INDEX "{name}"'))
        self.conn.commit()

    def rebuild_indexes(self) -> None:
        for _name, definition in self.indexes:
            self.conn.execute(text(definition))
        for name, kind, definition in self.constraints:
            if kind == "u":
                self.conn.execute(text(f'ALTER TABLE {self.table} ADD CONSTRAINT "{name}" {definition}'))
        self.conn.commit()

    def rebuild_foreign_keys(self) -> None:
        for name, kind, definition in self.constraints:
            if kind == "f":
                self.conn.execute(text(f'ALTER TABLE {self.table} ADD CONSTRAINT "{name}" {definition}'))
        self.conn.commit()

    def check(self) -> None:
        after = self._schema()
        assert after == self.before, (sorted(self.before - after), sorted(after - self.before))


COUNTED = ["unions", "members", "hardship_records", "cards", "merchants", "stores", "offers", "aid_programs",
           "program_fundings", "disbursement_lines", "card_purses", "ledger_accounts", "ledger_transactions",
           "ledger_entries", "payments", "refunds"]


def seed(url: str, *, members: int = 500_000, merchants: int = 5_000, payments: int = 10_000_000, months: int = 12,
         seed: int = 2026) -> dict[str, int]:
    """Fill the database at `url` (migrated to head) with the province; print each part's time; return the counts."""
    from core import create_app
    from core.db import db

    app = create_app({"DATABASE_URL": url, "REDIS_URL": None, "INSTANCE_PATH": tempfile.mkdtemp(),
                      "SECRET_KEY": SECRET_KEY, "DATA_KEY": DATA_KEY, "JOBS_MODE": "sync",
                      "PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_KIB": 1024})
    print(f"seeding {members:,} members, {merchants:,} merchants, {payments:,} payments over {months} months",
          flush=True)
    started = time.perf_counter()
    with app.app_context():
        s = Seeder(app, members=members, merchants=merchants, payments=payments, months=months, seed=seed)
        with s.step("org tree (members.service.create_union)"):
            s.users()
            s.org_tree()
        with s.step("members (encrypted, blind-indexed, COPY)"):
            s.members()
        with s.step("hardship register (COPY)"):
            s.hardship()
        with s.step("cards (encrypted, blind-indexed, COPY)"):
            s.cards()
        with s.step("merchants and stores (COPY), payables opened"):
            s.merchants()
        with s.step("aid programs: funded, batches approved and run"):
            made = s.programs()
        with s.step("offers"):
            s.offers()
        with s.step("payments and refunds, all told"):
            s.payments()
        with s.step("VACUUM ANALYZE"):
            s.vacuum()
        session = db.session
        counts = {table: session.scalar(text(f"SELECT count(*) FROM {table}")) for table in COUNTED}
        counts["disbursed_lines_paid"] = made["lines_paid"]
        counts["disbursed_fen"] = made["paid"]
        counts["database_bytes"] = session.scalar(text("SELECT pg_database_size(current_database())"))
        session.rollback()
    db.engine.dispose()
    total = time.perf_counter() - started
    print(f"  {'seeded in all':<58}{total:>8.1f} s")
    for name, value in counts.items():
        print(f"  {name:<58}{value:>14,}")
    print("  (payments and refunds are rows only, with no ledger transactions behind them; the aid programs' "
          "fundings and disbursements are real ledger transactions)", flush=True)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description="Seed a province-scale data set for the union console.")
    parser.add_argument("--members", type=int, default=knob("BENCH_MEMBERS", 500_000, 20_000))
    parser.add_argument("--merchants", type=int, default=knob("BENCH_MERCHANTS", 5_000, 200))
    parser.add_argument("--payments", type=int, default=knob("BENCH_PAYMENTS", 10_000_000, 200_000))
    parser.add_argument("--months", type=int, default=knob("BENCH_MONTHS", 12, 12))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--database-url", help="a database migrated to head to fill (default: a scratch database)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database and print its URL")
    parser.add_argument("--quick", action="store_true", help="small default sizes (BENCH_QUICK=1 does the same)")
    args = parser.parse_args()
    sizes = {"members": args.members, "merchants": args.merchants, "payments": args.payments, "months": args.months,
             "seed": args.seed}
    if args.database_url:
        from core import migrate

        url = args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        migrate.upgrade(url)
        seed(url, **sizes)
        return
    with scratch_database(SERVER, keep=args.keep) as url:
        seed(url, **sizes)
    if args.keep:
        print(f"kept: {url}")


if __name__ == "__main__":
    main()
