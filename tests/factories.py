"""Builders for test data: unions, members, users and their tokens, and valid ID numbers."""

from __future__ import annotations

import datetime as dt
import itertools
import random

from core.auth import Actor, create_user, issue_token
from core.models import Role, User
from members import service as members
from members.models import Member, Union
from members.validators import id_check_char

PASSWORD = "correct-horse-battery"
_counter = itertools.count(1)
_rng = random.Random(11643)


def next_id() -> int:
    """Return a number unique in this run (for usernames and the like)."""
    return next(_counter)


def id_number(region: str = "640104", born: dt.date = dt.date(1985, 6, 15), seq: int | None = None) -> str:
    """Return a valid 18-character ID number (unique per call unless seq is given)."""
    seq = next(_counter) % 1000 if seq is None else seq
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + id_check_char(body)


def unique_id_number(region: str = "640104") -> str:
    """Return a valid ID number unlikely to collide with any other in the run."""
    born = dt.date(1960, 1, 1) + dt.timedelta(days=_rng.randrange(0, 40 * 365))
    return id_number(region, born, _rng.randrange(1000))


def phone() -> str:
    return "139" + f"{_rng.randrange(10**8):08d}"


PLATFORM = Actor(None, "test", Role.UNION_ADMIN)


def union(session, name: str | None = None, parent: Union | None = None, region: str | None = None) -> Union:
    """Create a union (a federation root when no parent is given)."""
    if region is None:
        region = parent.region if parent is not None else "640000"
    return members.create_union(session, PLATFORM, name=name or f"Union {next(_counter)}",
                                parent_id=parent.public_id if parent else None, region=region)


def org_tree(session) -> dict[str, Union]:
    """Create federation -> two cities -> a county under each -> a grassroots union under each."""
    fed = union(session, "宁夏总工会", None, "640000")
    yc = union(session, "银川市总工会", fed, "640100")
    gy = union(session, "固原市总工会", fed, "640400")
    xq = union(session, "兴庆区总工会", yc, "640104")
    yz = union(session, "原州区总工会", gy, "640402")
    yc_base = union(session, "电力公司工会", xq, "640104")
    gy_base = union(session, "林场工会", yz, "640402")
    return {"fed": fed, "yc": yc, "gy": gy, "xq": xq, "yz": yz, "yc_base": yc_base, "gy_base": gy_base}


def member(session, cipher, in_union: Union, name: str = "张三", **kwargs) -> Member:
    """Register a member in a union."""
    data = members.MemberInput(name, kwargs.get("id_number") or unique_id_number(in_union.region),
                               kwargs.get("phone") or phone(), in_union.public_id, kwargs.get("join_date"))
    return members.register_member(session, cipher, PLATFORM, data)


def user(session, role: Role, *, union: Union | None = None, member: Member | None = None,
         merchant_id: int | None = None, username: str | None = None, password: str = PASSWORD) -> User:
    """Create a user with a role and scope."""
    u = create_user(session, username=username or f"{role.value.replace('_', '-')}-{next(_counter)}",
                    password=password, role=role, union_id=union.id if union else None,
                    member_id=member.id if member else None, merchant_id=merchant_id)
    session.commit()
    return u


def user_per_role(session, *, union: Union, member: Member, merchant_id: int) -> dict[Role, User]:
    """One user of every role: the union admin over `union`, the member `member`, merchant staff of
    `merchant_id`, the others unscoped."""
    users = {}
    for role in Role:
        scope = {}
        if role == Role.UNION_ADMIN:
            scope["union"] = union
        if role == Role.MEMBER:
            scope["member"] = member
        if role in (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER):
            scope["merchant_id"] = merchant_id
        users[role] = user(session, role, **scope)
    return users


def bearer(session, u: User) -> dict[str, str]:
    """Return an Authorization header with a fresh token for the user."""
    plain, _token = issue_token(session, u, 3600)
    session.commit()
    return {"Authorization": f"Bearer {plain}"}


# --- merchants ---------------------------------------------------------------------------------

VALID_USCCS = ["91350100M000100Y43", "91110000600037341L", "91440300708461136T"]


def uscc(seed: int | None = None) -> str:
    """Return a valid unified social credit code, unique per call."""
    from merchants.validators import uscc_check_char

    n = next(_counter) if seed is None else seed
    body = f"9164010{n:09d}A"
    return body + uscc_check_char(body)


def merchant(session, cipher, name: str = "银川好味餐厅", category: str = "dining", region: str = "640104",
             stores: int = 1):
    """Create an active merchant with stores and its ledger payable, as approval would."""
    from merchants.models import Merchant, MerchantCategory, MerchantStatus, SettlementMethod
    from merchants.service import _new_store
    from payments import ledger

    from core.ids import new_public_id

    public = new_public_id("mch")
    m = Merchant(public_id=public, name=name, uscc=uscc(), legal_representative="王老板",
                 contact_phone_enc=cipher.encrypt("13900001111", "merchant.contact_phone"),
                 contact_phone_masked="139****1111", category=MerchantCategory(category), region=region,
                 address="银川市兴庆区解放街1号", status=MerchantStatus.ACTIVE, settlement_method=SettlementMethod.BANK,
                 bank_name="宁夏银行", bank_account_name=name,
                 bank_account_enc=cipher.encrypt("6222020200112233", "merchant.bank_account"),
                 bank_account_masked="************2233", payable_account=f"merchant:{public}:payable")
    session.add(m)
    session.flush()
    ledger.open_account(session, m.payable_account, normal_side="credit", allow_negative=True, mode="append_only",
                        owner_kind="merchant", owner_id=public)
    for i in range(stores):
        session.add(_new_store(m, {"name": f"{name}{i + 1}号店", "address": f"解放街{i + 1}号"}))
    session.commit()
    return m


# --- aid programs and offers ---------------------------------------------------------------------

FINANCE = Actor(None, "test-finance", Role.FINANCE_MAKER)


def aid_program(session, union: Union, name: str = "职工普惠补贴"):
    """Create an active aid program of a union (unfunded: offers only name it)."""
    from payments.disbursement import service as disbursement
    from payments.disbursement.models import ProgramKind, PursePolicy

    return disbursement.create_program(session, FINANCE, name=name, kind=ProgramKind.CONSUMPTION_VOUCHER,
                                       purse=PursePolicy.GENERAL, union_id=union.public_id)


def offer_terms(**over) -> dict:
    """Return a valid offer input (10% off at every everyday-shopping partner, merchant-funded)."""
    return {"title": "会员9折", "kind": "percent_off", "value": 1000, "funding": "merchant",
            "category": "everyday"} | over


def offer(session, actor: Actor, *, publish: bool = False, **over):
    """Create an offer through the catalog's service, and publish it when asked."""
    from benefits import service as benefits

    created = benefits.create_offer(session, actor, offer_terms(**over))
    return benefits.publish(session, actor, created.public_id) if publish else created
