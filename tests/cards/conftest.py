"""A small world for card tests: two members in different city unions, their accounts, and staff."""

import pytest

from cards import service
from cards.models import Card
from core.auth import Actor
from core.models import Role
from payments import ledger
from payments.ledger import credit, debit
from tests import factories as f

FUNDING = "test:funding"


@pytest.fixture
def world(session, cipher):
    tree = f.org_tree(session)
    own = f.member(session, cipher, tree["yc_base"], "王芳", phone="13912345678")
    other = f.member(session, cipher, tree["gy_base"], "李强")
    users = {
        "owner": f.user(session, Role.MEMBER, member=own),
        "other": f.user(session, Role.MEMBER, member=other),
        "admin": f.user(session, Role.UNION_ADMIN, union=tree["yc"]),
        "gy_admin": f.user(session, Role.UNION_ADMIN, union=tree["gy"]),
        "platform": f.user(session, Role.UNION_ADMIN),
        "finance": f.user(session, Role.FINANCE_MAKER),
        "auditor": f.user(session, Role.AUDITOR),
        "cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=f.merchant(session, cipher).id),
    }
    headers = {name: f.bearer(session, u) for name, u in users.items()}
    return {"tree": tree, "own": own, "other": other, "users": users, "h": headers,
            "actors": {name: Actor.of(u) for name, u in users.items()}}


def issue(client, world, member=None, who="admin") -> dict:
    member = member or world["own"]
    resp = client.post("/api/v1/cards", json={"member_id": member.public_id}, headers=world["h"][who])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def active_card(client, world, member=None, owner="owner") -> dict:
    card = issue(client, world, member, who="admin" if member is None else "platform")
    resp = client.post(f"/api/v1/cards/{card['id']}/activate", headers=world["h"][owner])
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def fund(session, card_public_id: str, amount: int, *, program_id: str | None = None, categories=None,
         expires_at=None, key: str | None = None) -> None:
    """Put money on a card's purse (its general purse, or a program's restricted purse) from a test account."""
    ledger.get_or_create_account(session, FUNDING, normal_side="debit", allow_negative=True)
    card = session.query(Card).filter_by(public_id=card_public_id).one()
    if program_id is None:
        code = service.general_account(card.public_id)
    else:
        code = service.open_restricted_purse(session, card, program_id=program_id, label=f"aid {program_id}",
                                             allowed_categories=categories, expires_at=expires_at).account_code
    ledger.post(session, kind="test_credit", idempotency_key=key or f"fund:{code}:{amount}",
                entries=[debit(FUNDING, amount), credit(code, amount)], metadata={"description": "test credit"})
    session.commit()
