"""The offer catalog's use cases on the real database: drafts, versions, publication, budgets, merchant
proposals, scope, validation and the audit log."""

import datetime as dt

import pytest
from sqlalchemy import func, select, text

from benefits import service
from benefits.models import Offer, OfferBudget, OfferStatus
from core.db import utcnow
from core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from core.models import AuditEvent
from merchants.models import MerchantStatus
from tests import factories as f
from tests.benefits.conftest import audit_actions, offer_row


def offers_count(session) -> int:
    return session.scalar(select(func.count(Offer.id)))


def live_ids(session, store) -> set[str]:
    return {o.public_id for o in service.live_offers(session, store)}


# --- drafts and who may write them -----------------------------------------------------------------

def test_a_platform_admin_creates_a_draft_that_is_the_first_version_of_its_lineage(session, world):
    offer = service.create_offer(session, world["a"]["platform"], f.offer_terms(title="超市95折", value=500))
    assert offer.status == OfferStatus.DRAFT and offer.version == 1 and offer.previous_id is None
    assert offer.public_id.startswith("off_") and offer.lineage == offer.public_id
    assert offer.union_ids is None and offer.starts_at <= utcnow() and offer.ends_at is None
    assert (offer.union_share_bp, offer.program_id, offer.stackable, offer.priority) == (0, None, False, 0)
    event = session.scalar(select(AuditEvent).where(AuditEvent.object_id == offer.public_id))
    assert event.action == "offer.created" and event.before is None
    assert event.after["status"] == "draft" and event.after["value"] == 500 and event.after["title"] == "超市95折"
    assert live_ids(session, world["shop"].stores[0]) == set()  # a draft never applies


def test_a_scoped_admins_offer_is_for_their_own_union_unless_they_name_unions_of_their_subtree(session, world):
    tree = world["tree"]
    mine = service.create_offer(session, world["a"]["admin"], f.offer_terms())
    assert mine.union_ids == [tree["yc"].public_id]
    narrower = service.create_offer(session, world["a"]["admin"], f.offer_terms(
        eligibility={"union_ids": [tree["xq"].public_id, tree["yc_base"].public_id], "hardship_only": True}))
    assert narrower.union_ids == [tree["xq"].public_id, tree["yc_base"].public_id] and narrower.hardship_only
    with pytest.raises(ValidationFailed) as outside:
        service.create_offer(session, world["a"]["admin"], f.offer_terms(
            eligibility={"union_ids": [tree["xq"].public_id, tree["gy_base"].public_id]}))
    assert list(outside.value.errors) == ["eligibility.union_ids"]
    with pytest.raises(ValidationFailed) as program:
        service.create_offer(session, world["a"]["admin"], f.offer_terms(
            funding="union", program_id=world["programs"]["gy"].public_id))
    assert "program_id" in program.value.errors


def test_a_merchant_owner_proposes_for_their_own_merchant_only_and_pays_for_it(session, world):
    owner = world["a"]["owner"]
    offer = service.create_offer(session, owner, {"title": "午餐88折", "kind": "percent_off", "value": 1200,
                                                  "merchant_id": world["pharmacy"].public_id})
    assert offer.merchant_id == world["shop"].id  # forced to the owner's merchant
    assert offer.funding.value == "merchant" and offer.category.value == "everyday"  # dining's family
    assert offer.status == OfferStatus.DRAFT and offer.created_by_id == world["users"]["owner"].id
    with pytest.raises(ValidationFailed) as refused:
        service.create_offer(session, owner, f.offer_terms(
            funding="split", union_share_bp=5000, program_id=world["programs"]["yc"].public_id,
            eligibility={"union_ids": [world["tree"]["yc"].public_id]}))
    assert {"funding", "program_id", "union_share_bp", "eligibility.union_ids"} <= set(refused.value.errors)


@pytest.mark.parametrize("who", ["manager", "cashier", "member", "auditor", "maker", "reviewer"])
def test_other_roles_may_not_create_or_change_offers(session, world, who):
    draft = service.create_offer(session, world["a"]["platform"], f.offer_terms())
    actor = world["a"][who]
    for call in (lambda: service.create_offer(session, actor, f.offer_terms()),
                 lambda: service.update_offer(session, actor, draft.public_id, {"title": "x"}),
                 lambda: service.publish(session, actor, draft.public_id),
                 lambda: service.withdraw(session, actor, draft.public_id),
                 lambda: service.reject(session, actor, draft.public_id, "no")):
        with pytest.raises(Forbidden):
            call()
    with pytest.raises(Forbidden):
        service.propose(session, actor, draft.public_id)


# --- validation ----------------------------------------------------------------------------------

def closed_program(session, world):
    program = f.aid_program(session, world["tree"]["fed"], "已结束的补贴")
    session.execute(text("UPDATE aid_programs SET status = 'closed' WHERE public_id = :p"), {"p": program.public_id})
    session.commit()
    return program.public_id


INVALID = [
    ("no title", {"title": "  "}, "title"),
    ("long title", {"title": "长" * 101}, "title"),
    ("no kind", {"kind": None}, "kind"),
    ("unknown kind", {"kind": "bogof"}, "kind"),
    ("no value", {"value": None}, "value"),
    ("negative value", {"value": -1}, "value"),
    ("fractional value", {"value": 12.5}, "value"),
    ("zero percent", {"value": 0}, "value"),
    ("over 100 percent", {"value": 10001}, "value"),
    ("no funding", {"funding": None}, "funding"),
    ("unknown funding", {"funding": "state"}, "funding"),
    ("neither merchant nor family", {"category": None}, "category"),
    ("unknown family", {"category": "food"}, "category"),
    ("unknown merchant", {"merchant_id": "mch_nobody"}, "merchant_id"),
    ("trade outside the family", {"category": "health", "merchant_category": "dining"}, "merchant_category"),
    ("unknown trade", {"merchant_category": "casino"}, "merchant_category"),
    ("split without share", {"funding": "split", "program_id": "fed"}, "union_share_bp"),
    ("split of everything", {"funding": "split", "union_share_bp": 10000, "program_id": "fed"}, "union_share_bp"),
    ("union share under union funding", {"funding": "union", "union_share_bp": 5000, "program_id": "fed"},
     "union_share_bp"),
    ("union funding without program", {"funding": "union"}, "program_id"),
    ("unknown program", {"funding": "union", "program_id": "prg_nothing"}, "program_id"),
    ("closed program", {"funding": "union", "program_id": "closed"}, "program_id"),
    ("merchant funding with a program", {"program_id": "fed"}, "program_id"),
    ("city program for all members", {"funding": "union", "program_id": "yc"}, "eligibility.union_ids"),
    ("program of other unions", {"funding": "union", "program_id": "yc",
                                 "eligibility": {"union_ids": ["gy_base"]}}, "eligibility.union_ids"),
    ("end before start", {"starts_at": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc),
                          "ends_at": dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)}, "ends_at"),
    ("naive start", {"starts_at": dt.datetime(2026, 12, 1)}, "starts_at"),
    ("weekday 0", {"weekdays": [0, 1]}, "weekdays"),
    ("weekday twice", {"weekdays": [1, 1]}, "weekdays"),
    ("weekdays not a list", {"weekdays": "1,2"}, "weekdays"),
    ("one hour only", {"hours_from": "09:00"}, "hours_to"),
    ("bad hour", {"hours_from": "25:00", "hours_to": "26:00"}, "hours_from"),
    ("empty window", {"hours_from": "09:00", "hours_to": "09:00"}, "hours_to"),
    ("limit without count or amount", {"per_member_limit": {"period": "month"}}, "per_member_limit"),
    ("limit without period", {"per_member_limit": {"count": 2}}, "per_member_limit.period"),
    ("limit of zero times", {"per_member_limit": {"count": 0, "period": "day"}}, "per_member_limit.count"),
    ("limit of no discount", {"per_member_limit": {"amount": 0, "period": "day"}}, "per_member_limit.amount"),
    ("limit in an unknown period", {"per_member_limit": {"count": 1, "period": "week"}}, "per_member_limit.period"),
    ("zero budget", {"budget_amount": 0}, "budget_amount"),
    ("unknown union", {"eligibility": {"union_ids": ["uni_nowhere"]}}, "eligibility.union_ids"),
    ("hardship not a bool", {"eligibility": {"hardship_only": "yes"}}, "eligibility.hardship_only"),
    ("stackable not a bool", {"stackable": "yes"}, "stackable"),
    ("priority too high", {"priority": 40000}, "priority"),
    ("uncounted entitlement", {"kind": "entitlement", "value": 0}, "per_member_limit.count"),
    ("unknown field", {"colour": "red"}, "colour"),
]


@pytest.mark.parametrize("over, field", [(i[1], i[2]) for i in INVALID], ids=[i[0] for i in INVALID])
def test_invalid_terms_are_refused_field_by_field_and_nothing_is_written(session, world, over, field):
    programs = {"fed": world["programs"]["fed"].public_id, "yc": world["programs"]["yc"].public_id}
    if over.get("program_id") == "closed":
        programs["closed"] = closed_program(session, world)
    body = f.offer_terms(**over)
    if "program_id" in body:
        body["program_id"] = programs.get(body["program_id"], body["program_id"])
    if body.get("eligibility", {}).get("union_ids"):
        body["eligibility"]["union_ids"] = [world["tree"][u].public_id if u in world["tree"] else u
                                            for u in body["eligibility"]["union_ids"]]
    before = offers_count(session)
    with pytest.raises(ValidationFailed) as refused:
        service.create_offer(session, world["a"]["platform"], body)
    assert field in refused.value.errors, refused.value.errors
    assert all(texts and all(isinstance(t, str) and t for t in texts) for texts in refused.value.errors.values())
    assert offers_count(session) == before


def test_valid_terms_of_every_kind_are_kept_as_given(session, world):
    platform, program = world["a"]["platform"], world["programs"]["yc"].public_id
    yc = world["tree"]["yc"].public_id
    consult = service.create_offer(session, platform, {
        "title": "免费法律咨询", "kind": "entitlement", "value": 0, "funding": "union", "program_id": program,
        "category": "legal", "per_member_limit": {"count": 2, "period": "year"}, "eligibility": {"union_ids": [yc]}})
    assert (consult.union_share_bp, consult.limit_count, consult.limit_period.value) == (10_000, 2, "year")
    lunch = service.create_offer(session, platform, {
        "title": "午餐立减", "kind": "amount_off", "value": 500, "min_spend": 3000, "funding": "split",
        "union_share_bp": 4000, "program_id": program, "merchant_id": world["shop"].public_id,
        "weekdays": [5, 1, 3], "hours_from": "11:00", "hours_to": "14:00",
        "per_member_limit": {"amount": 2000, "period": "month"}, "budget_amount": 100_000,
        "eligibility": {"union_ids": [yc], "hardship_only": True}, "stackable": True, "priority": 5,
        "ends_at": utcnow() + dt.timedelta(days=30)})
    assert lunch.weekdays == [1, 3, 5] and lunch.category.value == "everyday" and lunch.merchant.name == "好味餐厅"
    assert (lunch.limit_count, lunch.limit_amount, lunch.budget_amount, lunch.priority) == (None, 2000, 100_000, 5)
    night = service.create_offer(session, platform, f.offer_terms(
        kind="fixed_price", value=990, category="health", merchant_category="pharmacy", hours_from="22:00",
        hours_to="06:00"))
    assert night.merchant_category.value == "pharmacy" and night.hours_from == "22:00"


# --- versions --------------------------------------------------------------------------------------

def test_editing_a_published_offer_makes_a_new_version_and_the_old_one_applies_until_it_is_published(
        session, world):
    platform, store = world["a"]["platform"], world["shop"].stores[0]
    v1 = f.offer(session, platform, publish=True, title="餐饮9折", value=1000)
    published_terms = service.offer_snapshot(offer_row(session, v1.public_id))
    v2 = service.update_offer(session, platform, v1.public_id, {"title": "餐饮85折", "value": 1500})
    assert v2.public_id != v1.public_id and v2.lineage == v1.lineage == v1.public_id
    assert (v2.version, v2.previous_id, v2.status) == (2, v1.id, OfferStatus.DRAFT)
    assert (v2.title, v2.value, v2.category) == ("餐饮85折", 1500, v1.category)
    old = offer_row(session, v1.public_id)
    assert old.status == OfferStatus.PUBLISHED and service.offer_snapshot(old) == published_terms
    assert live_ids(session, store) == {v1.public_id}  # the published version keeps applying
    service.publish(session, platform, v2.public_id)
    old, new = offer_row(session, v1.public_id), offer_row(session, v2.public_id)
    assert old.status == OfferStatus.SUPERSEDED and old.ended_at is not None
    assert (old.title, old.value) == ("餐饮9折", 1000)  # a published row's terms never change
    assert new.status == OfferStatus.PUBLISHED and new.published_at is not None
    assert live_ids(session, store) == {v2.public_id}
    assert audit_actions(session, v1.public_id) == ["offer.created", "offer.published", "offer.superseded"]
    assert audit_actions(session, v2.public_id) == ["offer.version_created", "offer.published"]
    third = service.update_offer(session, platform, v2.public_id, {"value": 2000})
    assert (third.version, third.previous_id, third.lineage) == (3, v2.id, v1.public_id)


def test_a_draft_is_edited_in_place_and_audited_before_and_after(session, world):
    draft = f.offer(session, world["a"]["platform"], value=1000)
    edited = service.update_offer(session, world["a"]["platform"], draft.public_id,
                                  {"value": 1200, "ends_at": None, "per_member_limit": {"count": 1, "period": "day"}})
    assert edited.id == draft.id and edited.version == 1 and edited.value == 1200 and edited.limit_count == 1
    event = session.scalars(select(AuditEvent).where(AuditEvent.object_id == draft.public_id,
                                                     AuditEvent.action == "offer.updated")).one()
    assert event.before["value"] == 1000 and event.after["value"] == 1200
    assert event.after["per_member_limit"] == {"count": 1, "amount": None, "period": "day"}


def test_an_invalid_edit_changes_nothing(session, world):
    draft = f.offer(session, world["a"]["platform"], value=1000)
    with pytest.raises(ValidationFailed) as refused:
        service.update_offer(session, world["a"]["platform"], draft.public_id, {"value": 20_000, "title": ""})
    assert set(refused.value.errors) == {"value", "title"}
    row = offer_row(session, draft.public_id)
    assert (row.value, row.title) == (1000, "会员9折")


def test_one_new_version_waits_at_a_time_and_ended_versions_are_not_edited(session, world):
    platform = world["a"]["platform"]
    v1 = f.offer(session, platform, publish=True)
    v2 = service.update_offer(session, platform, v1.public_id, {"value": 1500})
    with pytest.raises(Conflict) as waiting:
        service.update_offer(session, platform, v1.public_id, {"value": 2000})
    assert waiting.value.code == "version_pending"
    assert service.update_offer(session, platform, v2.public_id, {"value": 1800}).id == v2.id
    service.publish(session, platform, v2.public_id)
    with pytest.raises(Conflict):
        service.update_offer(session, platform, v1.public_id, {"value": 1})  # superseded
    service.withdraw(session, platform, v2.public_id)
    with pytest.raises(Conflict):
        service.update_offer(session, platform, v2.public_id, {"value": 1})  # withdrawn


def test_switching_funding_drops_what_the_old_funding_implied(session, world):
    platform, yc = world["a"]["platform"], world["tree"]["yc"].public_id
    offer = f.offer(session, platform, funding="split", union_share_bp=3000,
                    program_id=world["programs"]["yc"].public_id, eligibility={"union_ids": [yc]})
    merchant_paid = service.update_offer(session, platform, offer.public_id, {"funding": "merchant"})
    assert (merchant_paid.union_share_bp, merchant_paid.program_id) == (0, None)
    union_paid = service.update_offer(session, platform, offer.public_id,
                                      {"funding": "union", "program_id": world["programs"]["yc"].public_id})
    assert union_paid.union_share_bp == 10_000
    with pytest.raises(ValidationFailed) as split:
        service.update_offer(session, platform, offer.public_id, {"funding": "split"})
    assert "union_share_bp" in split.value.errors


# --- publication and budgets -----------------------------------------------------------------------

def test_publishing_sets_the_lineages_budget_and_a_new_version_keeps_what_was_used(session, world):
    platform = world["a"]["platform"]
    v1 = f.offer(session, platform, publish=True, budget_amount=50_000)
    budget = session.get(OfferBudget, v1.lineage, populate_existing=True)
    assert (budget.budget, budget.used) == (50_000, 0)
    session.execute(text("UPDATE offer_budgets SET used = 30000 WHERE lineage = :l"), {"l": v1.lineage})
    session.commit()
    v2 = service.update_offer(session, platform, v1.public_id, {"budget_amount": 80_000})
    assert session.get(OfferBudget, v1.lineage, populate_existing=True).budget == 50_000  # until published
    service.publish(session, platform, v2.public_id)
    budget = session.get(OfferBudget, v1.lineage, populate_existing=True)
    assert (budget.budget, budget.used) == (80_000, 30_000)
    set_events = session.scalars(select(AuditEvent).where(AuditEvent.object_id == v1.lineage,
                                                          AuditEvent.action == "offer.budget_set")
                                 .order_by(AuditEvent.id)).all()
    assert [(e.before, e.after) for e in set_events] == [
        (None, {"budget": 50_000, "used": 0}), ({"budget": 50_000, "used": 30_000}, {"budget": 80_000, "used": 30_000})]
    v3 = service.update_offer(session, platform, v2.public_id, {"budget_amount": 20_000})
    with pytest.raises(ValidationFailed) as below:
        service.publish(session, platform, v3.public_id)
    assert below.value.code == "budget_below_used" and "budget_amount" in below.value.errors
    session.rollback()
    assert offer_row(session, v2.public_id).status == OfferStatus.PUBLISHED
    assert offer_row(session, v3.public_id).status == OfferStatus.DRAFT
    assert session.get(OfferBudget, v1.lineage, populate_existing=True).budget == 80_000


def test_only_drafts_and_proposals_are_published_and_never_once_ended(session, world):
    platform = world["a"]["platform"]
    offer = f.offer(session, platform, publish=True)
    with pytest.raises(Conflict):
        service.publish(session, platform, offer.public_id)
    late = f.offer(session, platform, starts_at=utcnow() - dt.timedelta(days=10),
                   ends_at=utcnow() - dt.timedelta(days=1))
    with pytest.raises(ValidationFailed) as ended:
        service.publish(session, platform, late.public_id)
    assert "ends_at" in ended.value.errors


def test_a_program_closed_after_the_draft_was_written_stops_its_publication(session, world):
    platform = world["a"]["platform"]
    program = f.aid_program(session, world["tree"]["fed"], "临时补贴")
    draft = f.offer(session, platform, funding="union", program_id=program.public_id)
    session.execute(text("UPDATE aid_programs SET status = 'closed' WHERE public_id = :p"), {"p": program.public_id})
    session.commit()
    with pytest.raises(ValidationFailed) as closed:
        service.publish(session, platform, draft.public_id)
    assert "program_id" in closed.value.errors


def test_withdrawing_takes_the_offer_off_with_its_waiting_version_for_good(session, world):
    platform, store = world["a"]["platform"], world["shop"].stores[0]
    v1 = f.offer(session, platform, publish=True)
    v2 = service.update_offer(session, platform, v1.public_id, {"value": 1500})
    service.withdraw(session, platform, v1.public_id, "合作到期")
    assert offer_row(session, v1.public_id).status == OfferStatus.WITHDRAWN
    assert offer_row(session, v2.public_id).status == OfferStatus.WITHDRAWN
    assert offer_row(session, v1.public_id).decision_comment == "合作到期"
    assert live_ids(session, store) == set()
    for call in (service.publish, service.withdraw):
        with pytest.raises(Conflict):
            call(session, platform, v1.public_id)
    with pytest.raises(Conflict):
        service.publish(session, platform, v2.public_id)
    event = session.scalars(select(AuditEvent).where(AuditEvent.object_id == v1.public_id,
                                                     AuditEvent.action == "offer.withdrawn")).one()
    assert event.before["status"] == "published" and event.after["status"] == "withdrawn"


# --- merchant proposals ----------------------------------------------------------------------------

def test_the_merchant_proposal_flow_from_draft_to_published(session, world):
    owner, platform, admin, store = world["a"]["owner"], world["a"]["platform"], world["a"]["admin"], \
        world["shop"].stores[0]
    draft = service.create_offer(session, owner, f.offer_terms(title="会员午餐88折", value=1200, category=None))
    with pytest.raises(NotFound):
        service.get_offer(session, admin, draft.public_id)  # a merchant's unsent draft is its own
    with pytest.raises(Conflict) as unsent:
        service.publish(session, platform, draft.public_id)
    assert unsent.value.code == "not_proposed"
    proposed = service.propose(session, owner, draft.public_id)
    assert proposed.status == OfferStatus.PROPOSED and proposed.proposed_at is not None
    assert service.get_offer(session, admin, draft.public_id).public_id == draft.public_id
    with pytest.raises(ValidationFailed) as narrow:
        service.publish(session, admin, draft.public_id)
    assert narrow.value.code == "narrow_first" and "eligibility.union_ids" in narrow.value.errors
    narrowed = service.update_offer(session, admin, draft.public_id,
                                    {"eligibility": {"union_ids": [world["tree"]["xq"].public_id]}})
    assert narrowed.status == OfferStatus.PROPOSED and narrowed.union_ids == [world["tree"]["xq"].public_id]
    published = service.publish(session, admin, draft.public_id)
    assert published.status == OfferStatus.PUBLISHED and published.decided_by_id == world["users"]["admin"].id
    assert live_ids(session, store) == {draft.public_id}
    assert audit_actions(session, draft.public_id) == ["offer.created", "offer.proposed", "offer.updated",
                                                       "offer.published"]


def test_a_platform_admin_publishes_a_proposal_for_all_members(session, world):
    draft = service.create_offer(session, world["a"]["owner"], f.offer_terms(category=None))
    service.propose(session, world["a"]["owner"], draft.public_id)
    published = service.publish(session, world["a"]["platform"], draft.public_id)
    assert published.status == OfferStatus.PUBLISHED and published.union_ids is None


def test_a_rejected_proposal_is_changed_and_proposed_again(session, world):
    owner, admin = world["a"]["owner"], world["a"]["admin"]
    draft = service.create_offer(session, owner, f.offer_terms(category=None, value=3000))
    with pytest.raises(NotFound):
        service.reject(session, admin, draft.public_id, "太多")  # not proposed yet: the admin cannot see it
    service.propose(session, owner, draft.public_id)
    with pytest.raises(ValidationFailed) as why:
        service.reject(session, admin, draft.public_id, "  ")
    assert "comment" in why.value.errors
    rejected = service.reject(session, admin, draft.public_id, "折扣过大，请调整到8折以内")
    assert rejected.status == OfferStatus.REJECTED and rejected.decision_comment.startswith("折扣过大")
    assert rejected.ended_at is not None
    with pytest.raises(Conflict):
        service.publish(session, admin, draft.public_id)
    service.update_offer(session, owner, draft.public_id, {"value": 2000})
    again = service.propose(session, owner, draft.public_id)
    assert again.status == OfferStatus.PROPOSED and again.ended_at is None
    events = session.scalars(select(AuditEvent).where(AuditEvent.object_id == draft.public_id,
                                                      AuditEvent.action == "offer.rejected")).all()
    assert [e.after["comment"] for e in events] == ["折扣过大，请调整到8折以内"]


def test_a_merchant_revises_its_published_offer_through_a_new_proposal(session, world):
    owner, platform, store = world["a"]["owner"], world["a"]["platform"], world["shop"].stores[0]
    draft = service.create_offer(session, owner, f.offer_terms(category=None))
    service.propose(session, owner, draft.public_id)
    v1 = service.publish(session, platform, draft.public_id)
    v2 = service.update_offer(session, owner, v1.public_id, {"value": 1500})
    assert v2.status == OfferStatus.DRAFT and v2.merchant_id == world["shop"].id
    with pytest.raises(Conflict):
        service.publish(session, platform, v2.public_id)
    service.propose(session, owner, v2.public_id)
    service.publish(session, platform, v2.public_id)
    assert live_ids(session, store) == {v2.public_id}


def test_a_merchant_sees_and_changes_only_its_own_offers(session, world):
    theirs = service.create_offer(session, world["a"]["pharmacy_owner"], f.offer_terms(category=None))
    for call in (lambda: service.get_offer(session, world["a"]["owner"], theirs.public_id),
                 lambda: service.get_offer(session, world["a"]["manager"], theirs.public_id),
                 lambda: service.update_offer(session, world["a"]["owner"], theirs.public_id, {"value": 1}),
                 lambda: service.propose(session, world["a"]["owner"], theirs.public_id)):
        with pytest.raises(NotFound):
            call()
    assert offer_row(session, theirs.public_id).status == OfferStatus.DRAFT
    mine = service.create_offer(session, world["a"]["owner"], f.offer_terms(category=None))
    assert service.get_offer(session, world["a"]["manager"], mine.public_id).id == mine.id


# --- scope -----------------------------------------------------------------------------------------

def test_a_scoped_admin_acts_only_on_offers_of_their_subtree(session, world):
    admin, gy_admin = world["a"]["admin"], world["a"]["gy_admin"]
    draft = f.offer(session, admin)
    for call in (lambda: service.get_offer(session, gy_admin, draft.public_id),
                 lambda: service.update_offer(session, gy_admin, draft.public_id, {"value": 1}),
                 lambda: service.publish(session, gy_admin, draft.public_id)):
        with pytest.raises(NotFound):
            call()
    service.publish(session, admin, draft.public_id)
    assert service.get_offer(session, gy_admin, draft.public_id).id == draft.id  # published: anyone sees it
    for call in (lambda: service.withdraw(session, gy_admin, draft.public_id),
                 lambda: service.update_offer(session, gy_admin, draft.public_id, {"value": 1})):
        with pytest.raises(NotFound):
            call()
    assert offer_row(session, draft.public_id).status == OfferStatus.PUBLISHED
    assert service.withdraw(session, world["a"]["platform"], draft.public_id).status == OfferStatus.WITHDRAWN


def test_a_scoped_admin_cannot_take_over_an_offer_for_all_members(session, world):
    platform_offer = f.offer(session, world["a"]["platform"], publish=True)
    with pytest.raises(NotFound):
        service.update_offer(session, world["a"]["admin"], platform_offer.public_id, {"value": 1})
    with pytest.raises(NotFound):
        service.withdraw(session, world["a"]["admin"], platform_offer.public_id)
    draft = f.offer(session, world["a"]["platform"])
    with pytest.raises(NotFound):
        service.get_offer(session, world["a"]["admin"], draft.public_id)


def test_the_public_sees_published_offers_only(session, world):
    draft = f.offer(session, world["a"]["platform"])
    published = f.offer(session, world["a"]["platform"], publish=True)
    assert service.get_offer(session, None, published.public_id).id == published.id
    for actor in (None, world["a"]["member"], world["a"]["cashier"], world["a"]["maker"]):
        with pytest.raises(NotFound):
            service.get_offer(session, actor, draft.public_id)
    assert service.get_offer(session, world["a"]["auditor"], draft.public_id).id == draft.id


# --- lists -----------------------------------------------------------------------------------------

def ids_of(page) -> list[str]:
    return [o.public_id for o in page.items]


def test_lists_show_each_role_what_it_may_see(session, world):
    platform, admin, gy_admin, owner = (world["a"][k] for k in ("platform", "admin", "gy_admin", "owner"))
    live = f.offer(session, platform, publish=True, title="全省超市95折")
    ended = f.offer(session, platform, publish=True, title="已结束", ends_at=utcnow() + dt.timedelta(days=1))
    session.execute(text("UPDATE offers SET ends_at = :t WHERE id = :i"),
                    {"t": utcnow() - dt.timedelta(days=1), "i": ended.id})
    session.commit()
    platform_draft = f.offer(session, platform, title="全省草稿")
    yc_draft = f.offer(session, admin, title="银川草稿")
    gy_draft = f.offer(session, gy_admin, title="固原草稿")
    own_draft = service.create_offer(session, owner, f.offer_terms(title="本店草稿", category=None))
    proposal = service.create_offer(session, world["a"]["pharmacy_owner"],
                                    f.offer_terms(title="药房提议", category=None))
    service.propose(session, world["a"]["pharmacy_owner"], proposal.public_id)
    gy_proposal = service.create_offer(session, owner, f.offer_terms(title="固原提议", category=None))
    service.propose(session, owner, gy_proposal.public_id)
    service.update_offer(session, gy_admin, gy_proposal.public_id, {"description": "固原市内"})
    assert offer_row(session, gy_proposal.public_id).union_ids == [world["tree"]["gy"].public_id]

    def listed(actor, **kw):
        return set(ids_of(service.list_offers(session, actor, limit=200, cursor=None, **kw)))

    everything = {live.public_id, ended.public_id, platform_draft.public_id, yc_draft.public_id, gy_draft.public_id,
                  own_draft.public_id, proposal.public_id, gy_proposal.public_id}
    assert listed(None) == listed(world["a"]["member"]) == {live.public_id}
    assert listed(platform) == listed(world["a"]["auditor"]) == everything
    assert listed(admin) == {live.public_id, ended.public_id, yc_draft.public_id, proposal.public_id}
    assert listed(gy_admin) == {live.public_id, ended.public_id, gy_draft.public_id, proposal.public_id,
                                gy_proposal.public_id}
    assert listed(owner) == {live.public_id, ended.public_id, own_draft.public_id, gy_proposal.public_id}
    assert listed(world["a"]["manager"]) == listed(owner)
    assert listed(None, status=OfferStatus.DRAFT) == set()
    assert listed(admin, status=OfferStatus.DRAFT) == {yc_draft.public_id}
    assert listed(platform, q="草稿") == {platform_draft.public_id, yc_draft.public_id, gy_draft.public_id,
                                          own_draft.public_id}
    assert listed(platform, merchant_id=world["shop"].public_id) == {own_draft.public_id, gy_proposal.public_id}
    assert listed(platform, merchant_id="mch_unknown") == set()


def test_the_public_list_leaves_out_offers_of_merchants_that_take_no_cards(session, world):
    shop_offer = f.offer(session, world["a"]["platform"], publish=True, merchant_id=world["shop"].public_id,
                         category=None)
    assert ids_of(service.list_offers(session, None, limit=50, cursor=None)) == [shop_offer.public_id]
    world["shop"].status = MerchantStatus.SUSPENDED
    session.commit()
    assert ids_of(service.list_offers(session, None, limit=50, cursor=None)) == []
    assert ids_of(service.list_offers(session, world["a"]["platform"], limit=50, cursor=None)) == [
        shop_offer.public_id]


def test_lists_filter_by_family_and_page_with_cursors(session, world):
    platform = world["a"]["platform"]
    made = [f.offer(session, platform, publish=True, category="health" if i % 2 else "culture", title=f"优惠{i}")
            for i in range(5)]
    health = service.list_offers(session, None, category=service.OfferCategory.HEALTH, limit=50, cursor=None)
    assert ids_of(health) == [made[1].public_id, made[3].public_id]
    first = service.list_offers(session, None, limit=2, cursor=None, newest_first=True)
    second = service.list_offers(session, None, limit=2, cursor=first.next_cursor, newest_first=True)
    third = service.list_offers(session, None, limit=2, cursor=second.next_cursor, newest_first=True)
    assert ids_of(first) + ids_of(second) + ids_of(third) == [o.public_id for o in reversed(made)]
    assert third.next_cursor is None
