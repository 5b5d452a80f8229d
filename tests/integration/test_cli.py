import pytest
from sqlalchemy import func, select

from core.i18n import business_date
from core.models import AuditEvent, Role, User
from members.models import Member, Union
from tests import factories as f


@pytest.fixture
def runner(app, txn):
    return app.test_cli_runner()


def test_create_user_with_scope(runner, session):
    tree = f.org_tree(session)
    result = runner.invoke(args=["create-user", "--role", "union_admin", "--username", "City-Admin",
                                 "--password", "a-long-password", "--union-id", tree["yc"].public_id])
    assert result.exit_code == 0, result.output
    user = session.scalar(select(User).where(User.username == "city-admin"))
    assert user.union_id == tree["yc"].id and user.password_hash.startswith("$argon2id$")
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "user.created",
                                                   AuditEvent.object_id == user.public_id))


@pytest.mark.parametrize("args, message", [
    (["--role", "member", "--username", "m1", "--password", "a-long-password"], "member"),
    (["--role", "auditor", "--username", "a1", "--password", "short"], "password"),
    (["--role", "union_admin", "--username", "u1", "--password", "a-long-password", "--union-id", "uni_missing"],
     "No union"),
    (["--role", "wizard", "--username", "w1", "--password", "a-long-password"], "wizard"),
])
def test_create_user_refuses_bad_input_clearly(runner, args, message):
    result = runner.invoke(args=["create-user", *args])
    assert result.exit_code != 0 and message in result.output


def test_create_user_refuses_a_taken_username(runner, session):
    f.user(session, Role.AUDITOR, username="taken")
    result = runner.invoke(args=["create-user", "--role", "auditor", "--username", "taken",
                                 "--password", "a-long-password"])
    assert result.exit_code != 0 and "taken" in result.output


def test_demo_loads_a_realistic_data_set_once(runner, session):
    result = runner.invoke(args=["demo", "--members-per-union", "5"])
    assert result.exit_code == 0, result.output
    assert "demo-pass-2026" in result.output and "finance-approver" in result.output
    # Counted under the demo's federation: other tests may have committed unions of their own.
    demo_root = session.scalar(select(Union).where(Union.name == "宁夏回族自治区总工会", Union.parent_id.is_(None)))
    in_demo = Union.path.startswith(demo_root.path)
    assert session.scalar(select(func.count(Union.id)).where(in_demo)) == 1 + 5 + 6 + 8  # federation ... grassroots
    demo_members = select(Member.id).join(Union, Member.union_id == Union.id).where(in_demo)
    members = session.scalar(select(func.count()).select_from(demo_members.subquery()))
    assert 8 * 5 - 2 <= members <= 8 * 5
    roles = set(session.scalars(select(User.role)).all())
    assert {r.value for r in roles} >= {"union_admin", "merchant_reviewer", "finance_maker", "finance_approver",
                                         "auditor", "member"}
    # Every member holds a card; the demo member's is active with a PIN.
    from cards.models import Card, CardStatus

    demo_cards = select(func.count(Card.id)).where(Card.member_id.in_(demo_members))
    assert session.scalar(demo_cards) == members
    assert session.scalar(demo_cards.where(Card.status == CardStatus.ACTIVE)) >= members // 2
    demo_member = session.scalar(select(User).where(User.username == "member"))
    demo_card = session.scalar(select(Card).where(Card.member_id == demo_member.member_id))
    assert demo_card.status == CardStatus.ACTIVE and demo_card.pin_hash
    assert "PIN" in result.output
    # Aid reached the cards: the demo member holds medical aid, and a batch waits for the approver.
    from cards.service import purse_balances
    from payments.disbursement.models import BatchStatus, Disbursement

    aid = [p for p in purse_balances(session, demo_card) if p.purse == "restricted"]
    assert [p.amount for p in aid] == [30_000] and aid[0].allowed_categories == ["medical", "pharmacy"]
    statuses = set(session.scalars(select(Disbursement.status)).all())
    assert {BatchStatus.COMPLETED, BatchStatus.DRAFT} <= statuses
    # The union console has its figures, with half a year of card payments to show month by month.
    from stats import service as stats

    overview = stats.overview(session, demo_root)
    assert overview.counts.members == members and overview.refreshed_at is not None
    today = business_date()
    first, last = stats.trend_window(None, None, today)
    months = stats.trends(session, demo_root, first, last)
    assert sum(1 for m in months if m.payments) >= 5
    assert sum(m.payments for m in months) == overview.total.payments
    again = runner.invoke(args=["demo"])
    assert again.exit_code == 0 and "already loaded" in again.output
    assert session.scalar(select(func.count()).select_from(demo_members.subquery())) == members


def test_db_upgrade_builds_a_fresh_sqlite_database(app, tmp_path, monkeypatch):
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    monkeypatch.setitem(app.config, "DATABASE_URL", url)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "database at head" in result.output
    eng = create_engine(url)
    try:
        tables = set(inspect(eng).get_table_names())
    finally:
        eng.dispose()
    assert {"alembic_version", "users", "api_tokens", "audit_events", "members", "member_imports"} <= tables


def test_purge_deletes_old_idempotency_keys_and_long_dead_tokens(runner, session):
    import datetime as dt

    from core.auth import issue_token
    from core.db import utcnow
    from core.models import ApiToken, IdempotencyKey

    u = f.user(session, Role.AUDITOR)
    now = utcnow()
    tokens = {}
    for name, expires, revoked in (("expired long ago", now - dt.timedelta(days=31), None),
                                   ("revoked long ago", now + dt.timedelta(days=1), now - dt.timedelta(days=31)),
                                   ("expired lately", now - dt.timedelta(days=29), None),
                                   ("revoked lately", now + dt.timedelta(days=1), now - dt.timedelta(days=1)),
                                   ("live", now + dt.timedelta(hours=1), None)):
        _plain, token = issue_token(session, u, 3600)
        token.expires_at, token.revoked_at = expires, revoked
        tokens[name] = token.id
    for key, age in (("old", dt.timedelta(hours=25)), ("fresh", dt.timedelta(hours=23))):
        session.add(IdempotencyKey(user_id=u.id, key=f"purge-{key}", fingerprint="x" * 64, response_status=201,
                                   created_at=now - age))
    session.commit()
    result = runner.invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 idempotency keys and 2 API tokens" in result.output
    left = set(session.scalars(select(ApiToken.id).where(ApiToken.user_id == u.id)))
    assert left == {tokens["expired lately"], tokens["revoked lately"], tokens["live"]}
    assert set(session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.user_id == u.id))) == {"purge-fresh"}
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "system.purged"))
    assert event.after == {"idempotency_keys": 1, "api_tokens": 2}
