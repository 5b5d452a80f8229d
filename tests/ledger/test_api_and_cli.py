"""GET /api/v1/ledger/verify and /trial-balance, and the `flask ledger ...` commands."""

import datetime as dt
import time

import pytest

from core.models import Role
from payments import api as payments_api
from payments import cli as payments_cli
from payments import ledger
from payments.ledger import credit, debit
from payments.ledger.models import AccountBalance
from tests import factories as f
from tests.ledger.conftest import key

READERS = {Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR}
CONFIG_KEYS = ("INSTANCE_PATH", "DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "UPLOAD_FOLDER", "SECRET_KEY",
               "DATA_KEY", "JOBS_MODE", "TESTING")


@pytest.fixture(scope="module")
def ledger_app(app):
    """The app with the payments endpoints and commands, built the way core.app mounts a domain."""
    if "payments_api" in app.blueprints:
        yield app
        return
    from core import app as factory
    from core.db import db

    mount = factory._register_domains

    def mount_with_payments(flask_app, api):
        mount(flask_app, api)
        api.register_blueprint(payments_api.blp)
        factory.csrf.exempt(payments_api.blp)
        payments_cli.register(flask_app)

    previous_engine = db.engine
    factory._register_domains = mount_with_payments
    try:
        wired = factory.create_app({k: app.config[k] for k in CONFIG_KEYS})
    finally:
        factory._register_domains = mount
    previous_engine.dispose()
    yield wired


@pytest.fixture
def api(ledger_app, txn):
    return ledger_app.test_client()


# Merchant staff need a merchant to exist; the roles below cover who may and who may not.
ROLES = [Role.MEMBER, Role.UNION_ADMIN, Role.MERCHANT_REVIEWER, *READERS]


@pytest.fixture
def headers(session, cipher):
    tree = f.org_tree(session)
    scope = {Role.MEMBER: {"member": f.member(session, cipher, tree["yc_base"])}}
    return {role: f.bearer(session, f.user(session, role, **scope.get(role, {}))) for role in ROLES}


@pytest.mark.parametrize("path", ["/api/v1/ledger/verify", "/api/v1/ledger/trial-balance"])
def test_only_finance_and_auditors_may_read_the_books(api, headers, path):
    assert api.get(path).status_code == 401
    for role in ROLES:
        resp = api.get(path, headers=headers[role])
        assert resp.status_code == (200 if role in READERS else 403), (role, resp.get_json())


def test_verify_endpoint_reports_ok_and_problems(api, session, books, headers):
    card = books.purse("card:1:general", 1_000)
    body = api.get("/api/v1/ledger/verify", headers=headers[Role.AUDITOR]).get_json()
    assert body["ok"] is True and body["problems"] == [] and body["checked"]["entries"] >= 2
    account = ledger.get_account(session, card)
    session.execute(AccountBalance.__table__.update().where(AccountBalance.account_id == account.id)
                    .values(credits_posted=AccountBalance.credits_posted + 5))
    session.commit()
    body = api.get("/api/v1/ledger/verify", headers=headers[Role.AUDITOR]).get_json()
    assert body["ok"] is False
    assert any(p["check"] == "cached_balance_differs" and p["account"] == card for p in body["problems"])


def test_trial_balance_endpoint_totals_zero(api, session, books, headers):
    card = books.purse("card:1:general", 1_000)
    ledger.post(session, kind="payment", idempotency_key=key(),
                entries=[debit(card, 300), credit(books.open("merchant:1:payable"), 300)])
    session.commit()
    body = api.get("/api/v1/ledger/trial-balance", headers=headers[Role.FINANCE_MAKER]).get_json()
    assert body["balanced"] is True
    assert all(t["balance"] == 0 and t["debits"] == t["credits"] for t in body["totals"])
    groups = {row["group"] for row in body["data"]}
    assert {"card", "merchant", "union"} <= groups
    for row in body["data"]:
        assert row["balance"] == row["debits"] - row["credits"]


def test_the_openapi_document_lists_the_ledger_endpoints(api):
    paths = api.get("/api/v1/openapi.json").get_json()["paths"]
    assert "/api/v1/ledger/verify" in paths and "/api/v1/ledger/trial-balance" in paths


def test_ledger_verify_command(ledger_app, session, books):
    runner = ledger_app.test_cli_runner()
    card = books.purse("card:1:general", 1_000)
    session.commit()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 0 and result.output.startswith("ledger ok"), result.output
    account = ledger.get_account(session, card)
    session.execute(AccountBalance.__table__.update().where(AccountBalance.account_id == account.id)
                    .values(debits_posted=AccountBalance.debits_posted + 1))
    session.commit()
    result = runner.invoke(args=["ledger", "verify"])
    assert result.exit_code == 1 and "cached_balance_differs" in result.output


def test_ledger_job_commands(ledger_app, session, books):
    runner = ledger_app.test_cli_runner()
    card = books.purse("card:1:general", 1_000)
    payable = books.open("merchant:1:payable", mode="append_only", allow_negative=True)
    held = ledger.hold(session, kind="payment", idempotency_key=key(), entries=[debit(card, 100), credit(payable, 100)],
                       timeout=dt.timedelta(milliseconds=1))
    ledger.post(session, kind="payment", idempotency_key=key(), entries=[debit(card, 100), credit(payable, 100)])
    session.commit()
    time.sleep(0.01)
    result = runner.invoke(args=["ledger", "expire-holds"])
    assert result.exit_code == 0 and "voided" in result.output
    session.refresh(held)
    assert held.status is ledger.TransactionStatus.VOIDED
    assert runner.invoke(args=["ledger", "fold"]).exit_code == 0
    assert ledger.balance(session, payable).posted == 100
    assert runner.invoke(args=["ledger", "snapshot", "--min-entries", "1"]).exit_code == 0
    assert runner.invoke(args=["ledger", "verify"]).exit_code == 0
