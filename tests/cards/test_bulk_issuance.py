"""Bulk issuance: every active member of a subtree without a card gets exactly one, resumably."""

import uuid

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from cards import service
from cards.models import Card, CardIssuanceRun, IssuanceStatus
from core.models import AuditEvent, Role
from members.models import Member, MemberStatus
from payments import ledger
from tests import factories as f
from tests.cards.conftest import issue


def members_of(session, cipher, union, n):
    return [f.member(session, cipher, union, f"成员{i}") for i in range(n)]


def test_a_union_gets_cards_for_everyone_without_one(client, session, cipher, world):
    base = world["tree"]["yc_base"]
    people = members_of(session, cipher, base, 4)
    issue(client, world, people[0])
    session.execute(update(Member).where(Member.id == people[1].id).values(status=MemberStatus.LEFT))
    session.commit()
    resp = client.post("/api/v1/card-issuances", json={"union_id": base.public_id}, headers=world["h"]["admin"])
    assert resp.status_code == 201, resp.get_json()
    run = resp.get_json()
    # world["own"] and people[2], people[3]: three active members without a card.
    assert (run["status"], run["total"], run["processed"], run["issued"], run["skipped"]) == ("completed", 3, 3, 3, 0)
    assert resp.headers["Location"].endswith(run["id"])
    for person, expected in ((people[0], 1), (people[1], 0), (people[2], 1), (people[3], 1), (world["own"], 1)):
        assert session.scalar(select(func.count(Card.id)).where(Card.member_id == person.id)) == expected
    new_cards = session.scalars(select(Card).where(Card.member_id.in_([people[2].id, world["own"].id]))).all()
    for card in new_cards:
        assert card.status.value == "issued" and card.number_masked.startswith("880064")
        assert ledger.balance(session, service.general_account(card.public_id)).posted == 0
        assert [p.kind.value for p in card.purses] == ["general"]
    assert session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "card.issued", AuditEvent.after["run"].as_string() == run["id"])) == 3
    # A second run finds nobody left.
    again = client.post("/api/v1/card-issuances", json={"union_id": base.public_id}, headers=world["h"]["admin"])
    assert again.status_code == 201 and again.get_json()["issued"] == 0
    assert ledger.verify(session).ok


def test_a_large_run_is_queued_and_polled(client, session, cipher, world, app, monkeypatch):
    monkeypatch.setitem(app.config, "CARD_ISSUANCE_INLINE", 0)
    members_of(session, cipher, world["tree"]["yc_base"], 3)
    resp = client.post("/api/v1/card-issuances", json={"union_id": world["tree"]["yc"].public_id},
                       headers=world["h"]["admin"])
    assert resp.status_code == 202
    run = client.get(resp.headers["Location"], headers=world["h"]["admin"]).get_json()
    assert run["status"] == "completed" and run["issued"] == 4  # the jobs run inline in tests


def test_a_run_that_fails_midway_resumes_where_it_stopped(client, session, cipher, world, monkeypatch):
    base = world["tree"]["yc_base"]
    members_of(session, cipher, base, 5)
    run = service.start_bulk_issuance(session, world["actors"]["admin"], base.public_id)
    real = service._issue_chunk
    calls = []

    def crash_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "_issue_chunk", crash_on_second_chunk)
    with pytest.raises(RuntimeError):
        service.run_bulk_issuance(session, cipher, run.public_id, prefix="880064", chunk=2)
    failed = session.scalar(select(CardIssuanceRun).where(CardIssuanceRun.id == run.id))
    assert failed.status == IssuanceStatus.FAILED and failed.processed == 2 and "resume" in failed.error
    assert service.stalled(failed)
    resumed = client.post(f"/api/v1/card-issuances/{run.public_id}/resume", headers=world["h"]["admin"])
    assert resumed.status_code == 202
    done = client.get(f"/api/v1/card-issuances/{run.public_id}", headers=world["h"]["admin"]).get_json()
    assert (done["status"], done["processed"], done["issued"]) == ("completed", 6, 6)
    per_member = session.execute(select(Card.member_id, func.count()).join(Member).where(
        Member.union_id == base.id).group_by(Card.member_id)).all()
    assert len(per_member) == 6 and all(n == 1 for _m, n in per_member)
    assert ledger.verify(session).ok


def test_one_run_per_union_at_a_time(client, session, world):
    service.start_bulk_issuance(session, world["actors"]["admin"], world["tree"]["yc_base"].public_id)
    resp = client.post("/api/v1/card-issuances", json={"union_id": world["tree"]["yc_base"].public_id},
                       headers=world["h"]["admin"])
    assert resp.status_code == 409 and resp.get_json()["error"] == "issuance_running"


# --- races on PostgreSQL: real commits from several threads --------------------------------------

@pytest.fixture
def committed(postgres, engine, app, cipher):
    with Session(engine, expire_on_commit=False) as sess:
        fed = f.union(sess, f"发卡并发{uuid.uuid4().hex[:8]}", None, "640000")
        city = f.union(sess, "银川市总工会", fed, "640100")
        people = [f.member(sess, cipher, city, f"成员{i}") for i in range(30)]
        admin = f.user(sess, Role.UNION_ADMIN)
        return {"fed": fed, "city": city, "people": people, "headers": f.bearer(sess, admin)}


def test_two_admins_issuing_to_one_member_at_once_get_one_card(app, engine, committed):
    from tests.integration.test_concurrency import run_in_threads

    body = {"member_id": committed["people"][0].public_id}
    responses = run_in_threads(*[lambda: app.test_client().post("/api/v1/cards", json=body,
                                                                headers=committed["headers"]) for _ in range(4)])
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    with Session(engine) as sess:
        assert sess.scalar(select(func.count(Card.id)).where(Card.member_id == committed["people"][0].id)) == 1


def test_overlapping_bulk_runs_at_once_give_each_member_one_card(app, engine, committed, cipher):
    from tests.integration.test_concurrency import run_in_threads

    with Session(engine, expire_on_commit=False) as sess:
        admin = f.user(sess, Role.UNION_ADMIN)
        from core.auth import Actor

        runs = [service.start_bulk_issuance(sess, Actor.of(admin), committed[u].public_id) for u in ("fed", "city")]

    def worker(run_id):
        def go():
            with Session(engine, expire_on_commit=False) as sess:
                return service.run_bulk_issuance(sess, cipher, run_id, prefix="880064", chunk=7)
        return go

    results = run_in_threads(*[worker(r.public_id) for r in runs])
    assert all(isinstance(r, CardIssuanceRun) for r in results), results
    assert sum(r.issued for r in results) == 30
    with Session(engine) as sess:
        ids = [p.id for p in committed["people"]]
        counts = sess.execute(select(Card.member_id, func.count()).where(Card.member_id.in_(ids))
                              .group_by(Card.member_id)).all()
        assert len(counts) == 30 and all(n == 1 for _m, n in counts)
        assert ledger.verify(sess).ok


def test_two_replacements_of_one_card_at_once_make_one_new_card(app, engine, committed, cipher):
    from tests.integration.test_concurrency import run_in_threads

    headers = committed["headers"]
    client = app.test_client()
    card = client.post("/api/v1/cards", json={"member_id": committed["people"][1].public_id}, headers=headers)
    card_id = card.get_json()["id"]
    responses = run_in_threads(*[lambda: app.test_client().post(f"/api/v1/cards/{card_id}/replace", headers=headers)
                                 for _ in range(3)])
    assert sorted(r.status_code for r in responses) == [201, 409, 409], [r.get_json() for r in responses]
    with Session(engine) as sess:
        assert sess.scalar(select(func.count(Card.id)).where(Card.member_id == committed["people"][1].id)) == 2
        assert ledger.verify(sess).ok


def test_an_inline_run_that_fails_answers_202_with_the_failed_run_to_resume(client, session, cipher, world,
                                                                           monkeypatch):
    members_of(session, cipher, world["tree"]["yc_base"], 2)

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(service, "_issue_chunk", broken)
    resp = client.post("/api/v1/card-issuances", json={"union_id": world["tree"]["yc_base"].public_id},
                       headers=world["h"]["admin"])
    assert resp.status_code == 202 and resp.get_json()["status"] == "failed"
    monkeypatch.undo()
    resumed = client.post(f"/api/v1/card-issuances/{resp.get_json()['id']}/resume", headers=world["h"]["admin"])
    assert resumed.status_code == 202
    done = client.get(resp.headers["Location"], headers=world["h"]["admin"]).get_json()
    assert done["status"] == "completed" and done["issued"] == 3


def test_a_running_run_that_keeps_moving_is_not_stalled(session, world):
    import datetime as dt

    run = service.start_bulk_issuance(session, world["actors"]["admin"], world["tree"]["yc_base"].public_id)
    now = dt.datetime.now(dt.timezone.utc)
    run.status = IssuanceStatus.RUNNING
    run.started_at = now - dt.timedelta(hours=2)
    run.progressed_at = now - dt.timedelta(seconds=30)
    assert not service.stalled(run, now)
    run.progressed_at = now - dt.timedelta(minutes=6)
    assert service.stalled(run, now)


def test_a_number_drawn_twice_is_drawn_again_and_nobody_is_skipped(client, session, cipher, world, monkeypatch):
    taken = issue(client, world)  # world["own"] has a card now
    taken_row = session.scalar(select(Card).where(Card.public_id == taken["id"]))
    people = members_of(session, cipher, world["tree"]["yc_base"], 3)
    real, calls = service._card_fields, []

    def first_draw_collides(cipher_, prefix):
        calls.append(1)
        fields = real(cipher_, prefix)
        if len(calls) == 1:  # the very first number drawn is one already on a card
            fields.update(number_index=taken_row.number_index, number_enc=taken_row.number_enc)
        return fields

    monkeypatch.setattr(service, "_card_fields", first_draw_collides)
    resp = client.post("/api/v1/card-issuances", json={"union_id": world["tree"]["yc_base"].public_id},
                       headers=world["h"]["admin"])
    run = resp.get_json()
    assert (run["status"], run["issued"], run["skipped"]) == ("completed", 3, 0), run
    for person in people:
        assert session.scalar(select(func.count(Card.id)).where(Card.member_id == person.id)) == 1
