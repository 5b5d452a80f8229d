"""Clock skew and member payment codes, through the HTTP API with real Redis.

A code is 18 random digits with no time in it; Redis keeps it for its time to live and Redis' clock alone
decides when it expires. The app server's clock (shifted here by five minutes either way, or stopped) must
neither make a fresh code look expired nor keep an expired one alive, and a code stays single-use whatever
the clocks say."""

from __future__ import annotations

import datetime as dt
import sys
import time

import pytest

import core.db
from tests.faults.conftest import assert_api_error, own_app, shop_world, snapshot

SKEW = dt.timedelta(minutes=5)


@pytest.fixture(scope="module")
def fault_app(tmp_path_factory, fault_database):
    with own_app(tmp_path_factory, fault_database, "skew") as app:
        yield app


@pytest.fixture
def world(fault_app):
    return shop_world(fault_app)


@pytest.fixture
def app_clock(monkeypatch):
    """Set the app's clock: `app_clock(shift)` runs it `shift` off true time, `app_clock(at=moment)` stops it."""
    true_now = core.db.utcnow
    users = [module for module in list(sys.modules.values()) if getattr(module, "utcnow", None) is true_now]
    assert any(module.__name__ == "cards.service" for module in users)

    def set_clock(shift: dt.timedelta = dt.timedelta(0), *, at: dt.datetime | None = None) -> None:
        def clock() -> dt.datetime:
            return at if at is not None else true_now() + shift

        for module in users:
            monkeypatch.setattr(module, "utcnow", clock)

    return set_clock


def issue_code(client, world) -> dict:
    resp = client.post(f"/api/v1/cards/{world['card'].public_id}/payment-codes", headers=world["h"]["member"])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def pay(client, world, code: str, key: str):
    return client.post("/api/v1/payments", headers={**world["h"]["cashier"], "Idempotency-Key": key},
                       json={"store_id": world["store"].public_id, "amount": 1_500, "currency": "CNY",
                             "payment_code": code})


@pytest.mark.parametrize("shift", [-SKEW, SKEW], ids=["app_clock_5_min_behind", "app_clock_5_min_ahead"])
def test_a_fresh_code_is_accepted_once_by_an_app_whose_clock_is_off(fault_app, world, app_clock, shift):
    """The answer's `expires_in` (what the member's phone counts down from) is the whole time to live whatever
    the app's clock; the code pays once and is then refused as used."""
    app_clock(shift)
    client = fault_app.test_client()
    issued = issue_code(client, world)
    assert issued["expires_in"] == fault_app.config["PAYMENT_CODE_TTL_SECONDS"]

    paid = pay(client, world, issued["code"], "till:skew-1")
    assert paid.status_code == 201, paid.get_json()
    assert_api_error(pay(client, world, issued["code"], "till:skew-2"), 422, "payment_code_used")


@pytest.mark.parametrize("issuer, taker", [(SKEW, -SKEW), (-SKEW, SKEW)], ids=["issuer_ahead", "issuer_behind"])
def test_a_code_issued_by_one_server_and_taken_by_another_ten_minutes_apart_in_clock_is_accepted_once(
        fault_app, world, app_clock, issuer, taker):
    """Two app servers whose clocks disagree by ten minutes: the code one issued, the other takes, once."""
    client = fault_app.test_client()
    app_clock(issuer)
    code = issue_code(client, world)["code"]
    app_clock(taker)
    assert pay(client, world, code, "till:apart-1").status_code == 201
    app_clock(issuer)
    assert_api_error(pay(client, world, code, "till:apart-2"), 422, "payment_code_used")


def test_an_expired_code_is_refused_whether_the_app_clock_is_behind_ahead_or_stopped(
        fault_app, world, app_clock, monkeypatch):
    """The code's life ends by Redis' clock: once its (one-second) time to live is over it is refused as
    expired by an app whose clock stopped when it was issued, or runs five minutes behind or ahead; nothing
    is charged."""
    monkeypatch.setitem(fault_app.config, "PAYMENT_CODE_TTL_SECONDS", 1)
    client = fault_app.test_client()
    issued_at = core.db.utcnow()
    app_clock(at=issued_at)
    code = issue_code(client, world)["code"]
    before = snapshot(fault_app, world)
    time.sleep(1.2)
    for clock in ({"at": issued_at}, {"shift": -SKEW}, {"shift": SKEW}):
        app_clock(**clock)
        assert_api_error(pay(client, world, code, "till:late"), 422, "payment_code_expired")
    assert snapshot(fault_app, world) == before

