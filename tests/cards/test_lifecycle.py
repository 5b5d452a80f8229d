"""Issuance, every lifecycle transition allowed and refused, replacement moving the money, cancellation."""

import itertools

import pytest
from sqlalchemy import select, update

from cards import service
from cards.models import Card, CardStatus
from cards.numbers import luhn_valid
from core.models import AuditEvent
from members.models import Member, MemberStatus
from payments import ledger
from tests.cards.conftest import active_card, fund, issue


def test_an_admin_issues_a_card_with_a_masked_number(client, session, world):
    card = issue(client, world)
    assert card["id"].startswith("card_") and card["status"] == "issued"
    assert card["number_masked"].startswith("880064") and card["number_masked"].count("*") == 9
    assert card["member_id"] == world["own"].public_id and card["pin_set"] is False
    row = session.scalar(select(Card).where(Card.public_id == card["id"]))
    assert row.number_masked == card["number_masked"]
    # The whole number is stored only encrypted.
    number = client.get(f"/api/v1/cards/{card['id']}/number", headers=world["h"]["owner"]).get_json()["number"]
    assert luhn_valid(number) and len(number) == 19 and number not in row.number_enc
    assert number[:6] == card["number_masked"][:6] and number[-4:] == card["number_masked"][-4:]
    # The purse exists in the ledger, empty and never negative.
    account = ledger.get_account(session, service.general_account(card["id"]))
    assert account.allow_negative is False and ledger.balance(session, account).posted == 0


def test_the_whole_number_is_shown_to_its_owner_only_and_noted(client, session, world):
    card = issue(client, world)
    for who in ("admin", "finance", "auditor", "platform"):
        assert client.get(f"/api/v1/cards/{card['id']}/number", headers=world["h"][who]).status_code == 403
    assert client.get(f"/api/v1/cards/{card['id']}/number", headers=world["h"]["other"]).status_code == 404
    body = client.get(f"/api/v1/cards/{card['id']}", headers=world["h"]["admin"]).get_data(as_text=True)
    shown = client.get(f"/api/v1/cards/{card['id']}/number", headers=world["h"]["owner"]).get_json()["number"]
    assert shown not in body
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "card.number_shown",
                                                   AuditEvent.object_id == card["id"])) is not None


def test_one_live_card_per_member(client, world):
    issue(client, world)
    again = client.post("/api/v1/cards", json={"member_id": world["own"].public_id}, headers=world["h"]["admin"])
    assert again.status_code == 409 and again.get_json()["error"] == "member_has_card"


def test_issuing_outside_the_admins_subtree_or_to_an_inactive_member_is_refused(client, session, world):
    outside = client.post("/api/v1/cards", json={"member_id": world["other"].public_id}, headers=world["h"]["admin"])
    assert outside.status_code == 404
    unknown = client.post("/api/v1/cards", json={"member_id": "mem_nope"}, headers=world["h"]["admin"])
    assert unknown.status_code == 404
    session.execute(update(Member).where(Member.id == world["own"].id).values(status=MemberStatus.LEFT))
    session.commit()
    left = client.post("/api/v1/cards", json={"member_id": world["own"].public_id}, headers=world["h"]["admin"])
    assert left.status_code == 422 and left.get_json()["error"] == "member_not_active"
    bad = client.post("/api/v1/cards", json={"member_id": 7}, headers=world["h"]["admin"])
    assert bad.status_code == 422 and "member_id" in bad.get_json()["errors"]


ALLOWED = {
    "activate": {"issued": "active"},
    "freeze": {"active": "frozen"},
    "unfreeze": {"frozen": "active"},
    "report-lost": {"issued": "lost", "active": "lost", "frozen": "lost"},
    "replace": {"issued": "replaced", "active": "replaced", "frozen": "replaced", "lost": "replaced"},
    "cancel": {"issued": "cancelled", "active": "cancelled", "frozen": "cancelled", "lost": "cancelled"},
}
STATUSES = [s.value for s in CardStatus]


@pytest.mark.parametrize("action,start", list(itertools.product(ALLOWED, STATUSES)))
def test_every_transition_is_allowed_or_refused_as_the_lifecycle_says(client, session, world, action, start):
    card = issue(client, world)
    session.execute(update(Card).where(Card.public_id == card["id"]).values(status=CardStatus(start)))
    session.commit()
    resp = client.post(f"/api/v1/cards/{card['id']}/{action}", headers=world["h"]["admin"])
    expected = ALLOWED[action].get(start)
    row = session.scalar(select(Card).where(Card.public_id == card["id"]).execution_options(populate_existing=True))
    if expected is None:
        assert resp.status_code == 409, resp.get_json()
        assert resp.get_json()["error"] == "invalid_card_state"
        assert row.status.value == start
        assert session.scalar(select(AuditEvent).where(AuditEvent.object_id == card["id"],
                                                       AuditEvent.action != "card.issued")) is None
    else:
        assert resp.status_code == (201 if action == "replace" else 200), resp.get_json()
        assert row.status.value == expected
        event = session.scalar(select(AuditEvent).where(AuditEvent.object_id == card["id"],
                                                        AuditEvent.action != "card.issued"))
        assert event.before["status"] == start and event.after["status"] == expected
        assert event.actor_id == world["users"]["admin"].id


def test_a_cancelled_card_never_comes_back(client, session, world):
    card = issue(client, world)
    assert client.post(f"/api/v1/cards/{card['id']}/cancel", headers=world["h"]["admin"]).status_code == 200
    for action in ALLOWED:
        resp = client.post(f"/api/v1/cards/{card['id']}/{action}", headers=world["h"]["admin"])
        assert resp.status_code == 409 and "never comes back" in resp.get_json()["message"]
    # The member may be issued a new card, though.
    assert issue(client, world)["id"] != card["id"]


def test_the_owner_runs_their_own_card_but_cannot_cancel_it(client, world):
    card = issue(client, world)
    h = world["h"]["owner"]
    assert client.post(f"/api/v1/cards/{card['id']}/activate", headers=h).get_json()["status"] == "active"
    assert client.post(f"/api/v1/cards/{card['id']}/freeze", headers=h).get_json()["status"] == "frozen"
    assert client.post(f"/api/v1/cards/{card['id']}/unfreeze", headers=h).get_json()["status"] == "active"
    assert client.post(f"/api/v1/cards/{card['id']}/cancel", headers=h).status_code == 403
    for action in ("activate", "freeze", "unfreeze", "report-lost", "replace"):
        assert client.post(f"/api/v1/cards/{card['id']}/{action}", headers=world["h"]["other"]).status_code == 404
        assert client.post(f"/api/v1/cards/{card['id']}/{action}", headers=world["h"]["gy_admin"]).status_code == 404
        assert client.post(f"/api/v1/cards/{card['id']}/{action}", headers=world["h"]["finance"]).status_code == 403


def test_a_card_the_union_froze_only_the_union_unfreezes(client, world):
    card = active_card(client, world)
    frozen = client.post(f"/api/v1/cards/{card['id']}/freeze", headers=world["h"]["admin"]).get_json()
    assert frozen["frozen_by_staff"] is True
    refused = client.post(f"/api/v1/cards/{card['id']}/unfreeze", headers=world["h"]["owner"])
    assert refused.status_code == 409 and refused.get_json()["error"] == "frozen_by_union"
    assert client.post(f"/api/v1/cards/{card['id']}/unfreeze", headers=world["h"]["admin"]).status_code == 200


def test_reporting_lost_stops_the_card_at_once(client, world):
    card = active_card(client, world)
    lost = client.post(f"/api/v1/cards/{card['id']}/report-lost", headers=world["h"]["owner"])
    assert lost.status_code == 200 and lost.get_json()["status"] == "lost"
    code = client.post(f"/api/v1/cards/{card['id']}/payment-codes", headers=world["h"]["owner"])
    assert code.status_code == 409 and code.get_json()["error"] == "card_lost"
    # Found again? A lost card stays lost: it is replaced.
    assert client.post(f"/api/v1/cards/{card['id']}/unfreeze", headers=world["h"]["admin"]).status_code == 409


def test_replacement_moves_every_purse_to_the_new_card_in_one_transaction(client, session, world):
    card = active_card(client, world)
    h = world["h"]["owner"]
    assert client.put(f"/api/v1/cards/{card['id']}/pin", json={"pin": "583920"}, headers=h).status_code == 204
    fund(session, card["id"], 12_345)
    fund(session, card["id"], 50_000, program_id="prg_medical", categories=["pharmacy", "medical"])
    fund(session, card["id"], 0 + 700, program_id="prg_voucher", categories=["supermarket"], key="v1")
    client.post(f"/api/v1/cards/{card['id']}/report-lost", headers=h)

    resp = client.post(f"/api/v1/cards/{card['id']}/replace", headers=world["h"]["admin"])
    assert resp.status_code == 201, resp.get_json()
    new = resp.get_json()
    assert new["id"] != card["id"] and new["status"] == "issued" and new["replaces_id"] == card["id"]
    assert new["pin_set"] is True and resp.headers["Location"].endswith(new["id"])

    old_balances = client.get(f"/api/v1/cards/{card['id']}/balances", headers=h).get_json()
    assert old_balances["data"] == [] and old_balances["total"] == 0
    balances = client.get(f"/api/v1/cards/{new['id']}/balances", headers=h).get_json()
    by_program = {p["program_id"]: p for p in balances["data"]}
    assert by_program[None]["amount"] == 12_345 and by_program[None]["purse"] == "general"
    assert by_program["prg_medical"]["amount"] == 50_000
    assert by_program["prg_medical"]["allowed_categories"] == ["medical", "pharmacy"]
    assert by_program["prg_voucher"]["amount"] == 700 and balances["total"] == 63_045
    # One ledger transaction moved it all; the old accounts are closed.
    moves = session.scalars(select(ledger.Transaction).where(ledger.Transaction.kind == "card_replacement")).all()
    assert len(moves) == 1 and moves[0].reference == new["id"]
    for code in (service.general_account(card["id"]), service.aid_account(card["id"], "prg_medical")):
        assert ledger.get_account(session, code).status == ledger.AccountStatus.CLOSED
        assert ledger.balance(session, code).posted == 0
    assert ledger.verify(session).ok
    # The new card's statement shows the money arriving.
    lines = client.get(f"/api/v1/cards/{new['id']}/transactions", headers=h).get_json()["data"]
    assert [(line["kind"], line["amount"], line["balance"]) for line in lines] == [
        ("card_replacement", 63_045, 63_045)]
    # The successor of the old card is the new one (refunds to the old card's purses land there).
    old_row = session.scalar(select(Card).where(Card.public_id == card["id"]))
    assert service.successor(session, old_row).public_id == new["id"]
    # The old card cannot be replaced again, and the new card activates with the same PIN.
    assert client.post(f"/api/v1/cards/{card['id']}/replace", headers=h).status_code == 409
    assert client.post(f"/api/v1/cards/{new['id']}/activate", headers=h).status_code == 200


def test_replacing_an_empty_card_posts_nothing(client, session, world):
    card = active_card(client, world)
    new = client.post(f"/api/v1/cards/{card['id']}/replace", headers=world["h"]["owner"]).get_json()
    assert new["status"] == "issued"
    assert session.scalar(select(ledger.Transaction).where(ledger.Transaction.kind == "card_replacement")) is None
    assert ledger.verify(session).ok


def test_a_card_holding_money_cannot_be_cancelled(client, session, world):
    card = active_card(client, world)
    fund(session, card["id"], 100)
    resp = client.post(f"/api/v1/cards/{card['id']}/cancel", headers=world["h"]["admin"])
    assert resp.status_code == 409 and resp.get_json()["error"] == "card_has_balance"
    assert session.scalar(select(Card.status).where(Card.public_id == card["id"])) == CardStatus.ACTIVE


def test_cancelling_an_empty_card_closes_its_purses(client, session, world):
    card = active_card(client, world)
    assert client.post(f"/api/v1/cards/{card['id']}/cancel", headers=world["h"]["admin"]).status_code == 200
    assert ledger.get_account(session, service.general_account(card["id"])).status == ledger.AccountStatus.CLOSED


def test_listing_cards_is_scoped(client, world):
    mine = issue(client, world)
    theirs = issue(client, world, world["other"], who="platform")
    ids = lambda who: {c["id"] for c in client.get("/api/v1/cards", headers=world["h"][who]).get_json()["data"]}  # noqa: E731
    assert ids("owner") == {mine["id"]}
    assert ids("other") == {theirs["id"]}
    assert ids("admin") == {mine["id"]}
    assert ids("gy_admin") == {theirs["id"]}
    assert ids("platform") >= {mine["id"], theirs["id"]}
    assert ids("auditor") >= {mine["id"], theirs["id"]}
    filtered = client.get(f"/api/v1/cards?member_id={world['own'].public_id}&status=issued",
                          headers=world["h"]["platform"]).get_json()["data"]
    assert [c["id"] for c in filtered] == [mine["id"]]
    assert client.get(f"/api/v1/cards?member_id={world['other'].public_id}", headers=world["h"]["admin"]).status_code == 404
    assert client.get("/api/v1/cards?status=melted", headers=world["h"]["admin"]).status_code == 422


def test_a_member_reading_another_members_card_gets_404(client, world):
    card = issue(client, world)
    for path in ("", "/balances", "/transactions"):
        assert client.get(f"/api/v1/cards/{card['id']}{path}", headers=world["h"]["other"]).status_code == 404
        assert client.get(f"/api/v1/cards/{card['id']}{path}", headers=world["h"]["gy_admin"]).status_code == 404
        assert client.get(f"/api/v1/cards/{card['id']}{path}", headers=world["h"]["cashier"]).status_code == 403
        for who in ("owner", "admin", "finance", "auditor"):
            assert client.get(f"/api/v1/cards/{card['id']}{path}", headers=world["h"][who]).status_code == 200


def test_purses_are_drawn_restricted_first_soonest_expiry_first_then_general(client, session, world):
    import datetime as dt

    card = active_card(client, world)
    now = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    fund(session, card["id"], 100)
    fund(session, card["id"], 200, program_id="prg_late", categories=["pharmacy"], expires_at=now + dt.timedelta(days=90))
    fund(session, card["id"], 300, program_id="prg_soon", categories=["pharmacy", "dining"],
         expires_at=now + dt.timedelta(days=10))
    fund(session, card["id"], 400, program_id="prg_forever", categories=["pharmacy"])
    fund(session, card["id"], 500, program_id="prg_gone", categories=["pharmacy"], expires_at=now - dt.timedelta(days=1))
    fund(session, card["id"], 600, program_id="prg_books", categories=["culture_sport"])
    row = session.scalar(select(Card).where(Card.public_id == card["id"]))
    order = [p.program_id for p in service.spending_order(row, "pharmacy", now)]
    assert order == ["prg_soon", "prg_late", "prg_forever", None]
    assert [p.program_id for p in service.spending_order(row, "dining", now)] == ["prg_soon", None]
    assert [p.program_id for p in service.spending_order(row, "travel", now)] == [None]
