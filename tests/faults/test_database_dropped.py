"""The database connection dropped in the middle of a card payment, on PostgreSQL: the client gets a
clean 503 telling it to retry with the same Idempotency-Key, nothing is half-written, and the retry
charges the card exactly once. Also: the same for a funding approval (the generic Idempotency-Key path),
and a database that cannot be reached at all."""

from __future__ import annotations

import contextlib
import sqlite3

import psycopg
import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from core.db import db
from core.errors import database_unavailable
from payments.disbursement import service as disbursement
from payments.disbursement.models import Funding, FundingStatus
from tests.faults.conftest import (
    assert_api_error,
    own_app,
    proxy_to,
    shop_world,
    sign_in,
    snapshot,
    verify_books,
)

PRICE = 3_000
DISCOUNT = 500  # the union-funded offer: ¥5 off, once per member


@pytest.fixture(scope="module")
def fault_app(tmp_path_factory, fault_database):
    with own_app(tmp_path_factory, fault_database, "dbdrop") as app:
        yield app


@pytest.fixture
def world(fault_app):
    return shop_world(fault_app, offer_program=True)


def _backend_pid(conn) -> int:
    return conn.connection.dbapi_connection.info.backend_pid


# Where in a payment the connection is killed: before a statement, or at the COMMIT of a transaction that
# ran a statement ("lost_answer": the COMMIT reached the server and took effect, then the connection dropped
# before the answer came back, so the outcome is in doubt for the app).
PAYMENT_POINTS = {
    "offer_counted": {"before": "RELEASE SAVEPOINT"},  # the offer's use counted, the ledger not yet written
    "ledger_written": {"before": "INSERT INTO payments "},  # the ledger transaction written, not the payment
    "payment_written": {"before": "INSERT INTO payment_purses "},  # all but the payment's last rows written
    "commit": {"commit_after": "INSERT INTO payments "},  # everything written, before COMMIT
    "after_commit": {"commit_after": "INSERT INTO payments ", "lost_answer": True},
}


@contextlib.contextmanager
def dropped_connection(*, before: str | None = None, commit_after: str | None = None, lost_answer: bool = False):
    """Terminate, from another connection, the database session about to run a statement starting with
    `before`, or about to COMMIT after running one starting with `commit_after`; once. Yields the list of
    backends terminated."""
    engine = db.engine
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    fired: list[int] = []
    armed: set[int] = set()

    def terminate(conn) -> None:
        pid = conn.connection.dbapi_connection.info.backend_pid
        with admin.connect() as other:
            # Waits (up to 5 s) until the backend is gone.
            assert other.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
        fired.append(pid)

    def on_statement(conn, _cursor, statement, _params, _context, _many):
        if commit_after and statement.startswith(commit_after):
            armed.add(id(conn.connection.dbapi_connection))
        if not fired and before and statement.startswith(before):
            terminate(conn)

    def on_commit(conn):
        if fired or id(conn.connection.dbapi_connection) not in armed:
            return
        if lost_answer:
            with conn.connection.dbapi_connection.cursor() as cur:
                cur.execute("COMMIT")
                cur.execute("SELECT 1")  # the driver opens a new (empty) transaction for the app's COMMIT
        terminate(conn)

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "commit", on_commit)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "commit", on_commit)
        admin.dispose()


def pay(client, world, key: str, *, code: str | None = None):
    if code is not None:
        headers, body = world["h"]["cashier"], {"payment_code": code}
    else:
        headers, body = world["h"]["member"], {"card_id": world["card"].public_id, "pin": "258369"}
    return client.post("/api/v1/payments", headers={**headers, "Idempotency-Key": key},
                       json={"store_id": world["store"].public_id, "amount": PRICE, "currency": "CNY", **body})


def payment_code(client, world) -> str:
    resp = client.post(f"/api/v1/cards/{world['card'].public_id}/payment-codes", headers=world["h"]["member"])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["code"]


def charged_once(before: dict, after: dict, world) -> None:
    """Exactly one payment of PRICE less the offer, its one ledger transaction, one use of the offer."""
    program_budget = f"program:{world['program'].public_id}:budget"
    assert after["payments"] == before["payments"] + 1
    assert after["transactions"] == before["transactions"] + 1
    assert after["audit"] == before["audit"] + 1
    assert after["balances"] == {
        world["general"]: before["balances"][world["general"]] - (PRICE - DISCOUNT),
        world["shop"].payable_account: before["balances"][world["shop"].payable_account] + PRICE,
        program_budget: before["balances"][program_budget] - DISCOUNT,
    }
    lineage = world["offer"].lineage
    assert [row for row in after["usage"] if row[0] == lineage] == [(lineage, 1, DISCOUNT)]
    assert (lineage, DISCOUNT) in after["budgets"]


@pytest.mark.parametrize("point", ["offer_counted", "ledger_written", "payment_written", "commit"])
def test_a_payment_whose_database_connection_drops_before_commit_writes_nothing_and_its_retry_charges_once(
        fault_app, world, point):
    """The connection is killed with the payment's transaction open (the offer counted, the ledger
    written, the payment written, or at COMMIT): a 503 to retry with the same key, nothing kept;
    the retry pays once and a second retry replays that answer."""
    client = fault_app.test_client()
    code = payment_code(client, world)
    before = snapshot(fault_app, world)

    with dropped_connection(**PAYMENT_POINTS[point]) as fired:
        dropped = pay(client, world, "till-1:sale-1", code=code)
    assert len(fired) == 1
    body = assert_api_error(dropped, 503, "service_unavailable")
    assert "Idempotency-Key" in body["message"] and dropped.headers["Retry-After"]
    assert snapshot(fault_app, world) == before
    verify_books(fault_app)

    retry = pay(client, world, "till-1:sale-1", code=code)
    assert retry.status_code == 201, retry.get_json()
    paid = retry.get_json()
    assert (paid["amount"], paid["discount"], paid["charged"]) == (PRICE, DISCOUNT, PRICE - DISCOUNT)
    assert paid["offer_id"] == world["offer"].public_id
    charged_once(before, snapshot(fault_app, world), world)

    again = pay(client, world, "till-1:sale-1", code=code)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == paid
    charged_once(before, snapshot(fault_app, world), world)
    verify_books(fault_app)

    # The code was used by that sale: another sale presenting it is refused.
    other = pay(client, world, "till-1:sale-2", code=code)
    assert_api_error(other, 422, "payment_code_used")


def test_a_payment_whose_commit_took_effect_but_whose_answer_was_lost_is_replayed_not_charged_again(
        fault_app, world):
    """The connection drops after the server committed, before the app heard: the app cannot know, so it
    answers 503; the retry with the same key finds the payment and answers it, charging nothing more."""
    client = fault_app.test_client()
    code = payment_code(client, world)
    before = snapshot(fault_app, world)

    with dropped_connection(**PAYMENT_POINTS["after_commit"]) as fired:
        dropped = pay(client, world, "till-1:in-doubt", code=code)
    assert len(fired) == 1
    assert_api_error(dropped, 503, "service_unavailable")
    committed = snapshot(fault_app, world)
    charged_once(before, committed, world)

    retry = pay(client, world, "till-1:in-doubt", code=code)
    assert retry.status_code == 201 and retry.headers.get("Idempotent-Replayed") == "true", retry.get_json()
    assert retry.get_json()["charged"] == PRICE - DISCOUNT
    assert snapshot(fault_app, world) == committed
    verify_books(fault_app)


def test_a_pin_payment_whose_connection_drops_is_retried_once_with_the_same_key(fault_app, world):
    """A member paying at the store's QR with the PIN: the dropped payment keeps nothing, the retry
    (the PIN checked again) charges once."""
    client = fault_app.test_client()
    before = snapshot(fault_app, world)
    with dropped_connection(**PAYMENT_POINTS["ledger_written"]) as fired:
        dropped = pay(client, world, "phone:order-7")
    assert len(fired) == 1
    assert_api_error(dropped, 503, "service_unavailable")
    assert snapshot(fault_app, world) == before

    retry = pay(client, world, "phone:order-7")
    assert retry.status_code == 201, retry.get_json()
    again = pay(client, world, "phone:order-7")
    assert again.status_code == 201 and again.get_json()["id"] == retry.get_json()["id"]
    charged_once(before, snapshot(fault_app, world), world)
    verify_books(fault_app)


def test_the_app_answers_again_once_the_database_is_back(fault_app, world):
    """After a dropped connection the pool does not hand out the dead one: the next request works."""
    client = fault_app.test_client()
    with dropped_connection(**PAYMENT_POINTS["ledger_written"]):
        assert pay(client, world, "phone:order-8").status_code == 503
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["database"] == "ok"
    balances = client.get(f"/api/v1/cards/{world['card'].public_id}/balances", headers=world["h"]["member"])
    assert balances.status_code == 200


def test_a_funding_approval_whose_connection_drops_at_commit_posts_nothing_and_its_retry_posts_once(fault_app, world):
    """The generic Idempotency-Key path (the key kept apart from the work): the approval's transaction is
    lost at COMMIT, the key is let go, and the retry with the same key approves the deposit once."""
    budget = f"program:{world['program'].public_id}:budget"
    with fault_app.app_context():
        funding = disbursement.create_funding(db.session, world["a"]["maker"], world["program"].public_id,
                                              amount=20_000, currency="CNY", reference="BANK-RETRY")
    client = fault_app.test_client()
    before = snapshot(fault_app, world)
    headers = {**world["h"]["approver"], "Idempotency-Key": "approve-fnd-once"}

    with dropped_connection(commit_after="INSERT INTO audit_events") as fired:
        dropped = client.post(f"/api/v1/fundings/{funding.public_id}/approve", headers=headers)
    assert len(fired) == 1
    assert_api_error(dropped, 503, "service_unavailable")
    assert snapshot(fault_app, world) == before

    retry = client.post(f"/api/v1/fundings/{funding.public_id}/approve", headers=headers)
    assert retry.status_code == 200 and retry.get_json()["status"] == "approved", retry.get_json()
    again = client.post(f"/api/v1/fundings/{funding.public_id}/approve", headers=headers)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    after = snapshot(fault_app, world)
    assert after["transactions"] == before["transactions"] + 1
    assert after["balances"][budget] == before["balances"][budget] + 20_000
    with fault_app.app_context():
        assert db.session.get(Funding, funding.id).status == FundingStatus.APPROVED
    verify_books(fault_app)


def test_while_the_database_is_unreachable_the_api_answers_503_and_healthz_says_degraded(
        tmp_path_factory, fault_database):
    """The database server goes away (connections dropped, new ones refused): reads and payments get the
    API's 503, a signed-in member's page the 503 error page, /healthz reports the database unavailable,
    and all is well again once it is back."""
    with proxy_to(fault_database, 5432) as proxy:
        with own_app(tmp_path_factory, fault_database, "dbgone", DATABASE_URL=proxy.url(fault_database)) as app:
            world = shop_world(app)
            client = app.test_client()
            code = payment_code(client, world)
            browser = app.test_client()
            assert sign_in(browser, world["users"]["member"].username).status_code == 302
            assert browser.get("/card/").status_code == 200
            before = snapshot(app, world)
            proxy.cut()
            page = browser.get("/card/")
            assert page.status_code == 503 and page.mimetype == "text/html"
            assert "service_unavailable" in page.get_data(as_text=True)
            balances = client.get(f"/api/v1/cards/{world['card'].public_id}/balances", headers=world["h"]["member"])
            assert_api_error(balances, 503, "service_unavailable")
            assert_api_error(pay(client, world, "till:gone-1", code=code), 503, "service_unavailable")
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.get_json() == {"status": "degraded", "database": "unavailable", "redis": "ok"}

            proxy.restore()
            assert client.get("/healthz").status_code == 200
            # Refused before it reached the database, the sale goes through on retry and the code is spent.
            assert pay(client, world, "till:gone-1", code=code).status_code == 201
            assert snapshot(app, world)["payments"] == before["payments"] + 1


def _operational(orig: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, orig)


def _sqlite(name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(name)
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize("orig, retry_may_cure", [
    (psycopg.OperationalError("connection refused"), True),  # no answer from the server at all
    (psycopg.errors.AdminShutdown("terminating connection"), True),
    (psycopg.errors.SerializationFailure("could not serialize"), True),
    (psycopg.errors.DeadlockDetected("deadlock"), True),
    (psycopg.errors.LockNotAvailable("lock timeout"), True),
    (psycopg.errors.QueryCanceled("statement timeout"), True),
    (psycopg.errors.TooManyConnections("too many clients"), True),
    (psycopg.errors.DiskFull("no space"), True),
    (psycopg.errors.ObjectNotInPrerequisiteState("not in prerequisite state"), False),
    (_sqlite("SQLITE_BUSY"), True),
    (_sqlite("SQLITE_ERROR"), False),  # no such table, a syntax error: a bug, answered 500
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_only_database_errors_a_retry_may_cure_count_as_the_database_being_unavailable(orig, retry_may_cure):
    assert database_unavailable(_operational(orig)) is retry_may_cure
