"""A world for disbursement tests: members with cards in two cities, finance staff, a funded program."""

import datetime as dt
import io

import pytest

from cards import service as cards
from core.auth import Actor
from core.models import Role
from payments.disbursement import service
from payments.disbursement.models import ProgramKind, PursePolicy
from tests import factories as f

PREFIX = "880064"


def card_for(session, cipher, member, status="active"):
    card = cards.issue_card(session, cipher, f.PLATFORM, member.public_id, prefix=PREFIX)
    if status in ("active", "lost"):
        cards.change_state(session, f.PLATFORM, card.public_id, "activate")
    if status == "lost":
        cards.change_state(session, f.PLATFORM, card.public_id, "report_lost")
    return card


@pytest.fixture
def dworld(session, cipher):
    tree = f.org_tree(session)
    people = [f.member(session, cipher, tree["yc_base"], f"会员{i}") for i in range(4)]
    card_list = [card_for(session, cipher, m) for m in people]
    users = {name: f.user(session, role) for name, role in (
        ("maker", Role.FINANCE_MAKER), ("approver", Role.FINANCE_APPROVER), ("approver2", Role.FINANCE_APPROVER),
        ("auditor", Role.AUDITOR))}
    users["admin"] = f.user(session, Role.UNION_ADMIN, union=tree["yc"])
    headers = {name: f.bearer(session, u) for name, u in users.items()}
    actors = {name: Actor.of(u) for name, u in users.items()}
    return {"tree": tree, "people": people, "cards": card_list, "users": users, "h": headers, "a": actors}


def program(session, dworld, *, purse=PursePolicy.GENERAL, union="yc", funds=1_000_000, **kw):
    """A program owned by a union, funded through maker + approver."""
    if purse == PursePolicy.RESTRICTED:
        kw.setdefault("allowed_categories", ["pharmacy", "medical"])
        kw.setdefault("expires_at", dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=60))
    p = service.create_program(session, dworld["a"]["maker"], name=kw.pop("name", "送温暖"),
                               kind=kw.pop("kind", ProgramKind.HARDSHIP_AID), purse=purse,
                               union_id=dworld["tree"][union].public_id, **kw)
    if funds:
        funding = service.create_funding(session, dworld["a"]["maker"], p.public_id, amount=funds, currency="CNY",
                                         reference=f"BANK-{f.next_id()}")
        service.approve_funding(session, dworld["a"]["approver"], funding.public_id)
    return p


def csv_file(lines, header="id_number,amount,note"):
    return io.BytesIO(("\n".join([header, *lines]) + "\n").encode())
