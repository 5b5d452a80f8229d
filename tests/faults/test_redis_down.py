"""Redis down or silent, through the HTTP API of an app whose Redis sits behind a proxy that can cut it off:
payments stay safe (payment codes and PIN checks fail closed, nothing is charged), the rest of the
API still answers, /healthz says degraded, and everything works again once Redis is back."""

from __future__ import annotations

import time

import pytest

from tests.conftest import ENV_REDIS_URL
from tests.faults.conftest import assert_api_error, own_app, proxy_to, shop_world, snapshot, verify_books

PIN = "258369"
WRONG_PIN = "111111"
MAX_FAILURES = 5


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, fault_database):
    """An app whose Redis is reached through a proxy: (app, proxy)."""
    with proxy_to(ENV_REDIS_URL, 6379) as proxy:
        with own_app(tmp_path_factory, fault_database, "redisdown", REDIS_URL=proxy.url(ENV_REDIS_URL),
                     PIN_MAX_FAILURES=MAX_FAILURES) as app:
            yield app, proxy


@pytest.fixture
def fault_app(proxied):
    return proxied[0]


@pytest.fixture
def redis(proxied):
    """The proxy in front of Redis, up at the start and put back up at the end of each test."""
    proxy = proxied[1]
    proxy.swallow = None
    yield proxy
    proxy.swallow = None
    if not proxy.is_up:
        proxy.restore()


@pytest.fixture
def world(fault_app):
    return shop_world(fault_app)


def payment_code(client, world) -> str:
    resp = client.post(f"/api/v1/cards/{world['card'].public_id}/payment-codes", headers=world["h"]["member"])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["code"]


def pay_by_code(client, world, code: str, key: str, amount: int = 2_000):
    return client.post("/api/v1/payments", headers={**world["h"]["cashier"], "Idempotency-Key": key},
                       json={"store_id": world["store"].public_id, "amount": amount, "currency": "CNY",
                             "payment_code": code})


def pay_by_pin(client, world, pin: str, amount: int = 1_000):
    return client.post("/api/v1/payments", headers=world["h"]["member"],
                       json={"store_id": world["store"].public_id, "amount": amount,
                             "card_id": world["card"].public_id, "pin": pin})


def balances_answer(client, world) -> int:
    return client.get(f"/api/v1/cards/{world['card'].public_id}/balances", headers=world["h"]["member"]).status_code


def test_a_till_presenting_a_code_while_redis_is_down_is_refused_and_the_code_works_once_redis_is_back(
        fault_app, redis, world):
    """Redis goes away after the member showed a code: the till gets a clear 503 and charges nothing
    (the code cannot be checked, so it is not taken); once Redis is back the same sale goes through,
    once, and the code is spent."""
    client = fault_app.test_client()
    code = payment_code(client, world)
    before = snapshot(fault_app, world)

    redis.cut()
    refused = pay_by_code(client, world, code, "till:sale-1")
    assert_api_error(refused, 503, "service_unavailable")
    assert snapshot(fault_app, world) == before
    assert balances_answer(client, world) == 200  # what does not need Redis still works

    redis.restore()
    paid = pay_by_code(client, world, code, "till:sale-1")
    assert paid.status_code == 201, paid.get_json()
    after = snapshot(fault_app, world)
    assert after["payments"] == before["payments"] + 1
    assert after["balances"][world["general"]] == before["balances"][world["general"]] - 2_000
    assert_api_error(pay_by_code(client, world, code, "till:sale-2"), 422, "payment_code_used")
    verify_books(fault_app)


def test_no_payment_code_is_issued_while_redis_is_down(fault_app, redis, world):
    """A member asking for a code while Redis is down gets a 503, not a code that could never be checked."""
    client = fault_app.test_client()
    redis.cut()
    resp = client.post(f"/api/v1/cards/{world['card'].public_id}/payment-codes", headers=world["h"]["member"])
    body = assert_api_error(resp, 503, "service_unavailable")
    assert "expires_in" not in body and "svg_url" not in body


def test_pin_payments_are_refused_while_redis_is_down_so_no_pin_can_be_guessed(fault_app, redis, world):
    """With the wrong-PIN counter unreachable, no PIN is checked at all: more wrong guesses than the limit,
    and the right PIN, all get 503 and charge nothing; back up, the count is where it was."""
    client = fault_app.test_client()
    before = snapshot(fault_app, world)
    redis.cut()
    for _ in range(MAX_FAILURES + 3):
        assert_api_error(pay_by_pin(client, world, WRONG_PIN), 503, "service_unavailable")
    assert_api_error(pay_by_pin(client, world, PIN), 503, "service_unavailable")
    assert snapshot(fault_app, world) == before

    redis.restore()
    wrong = assert_api_error(pay_by_pin(client, world, WRONG_PIN), 422, "wrong_pin")
    assert f"{MAX_FAILURES - 1} tries left" in wrong["message"]
    assert pay_by_pin(client, world, PIN).status_code == 201


def test_a_member_locked_out_for_wrong_pins_stays_locked_while_redis_is_down(fault_app, redis, world):
    """The lock cannot be read while Redis is down, so the right PIN is refused rather than let through;
    when Redis is back the lock is still there."""
    client = fault_app.test_client()
    for _ in range(MAX_FAILURES - 1):
        assert pay_by_pin(client, world, WRONG_PIN).get_json()["error"] == "wrong_pin"
    locked = pay_by_pin(client, world, WRONG_PIN)
    assert_api_error(locked, 429, "pin_locked")
    assert int(locked.headers["Retry-After"]) > 0
    before = snapshot(fault_app, world)

    redis.cut()
    assert_api_error(pay_by_pin(client, world, PIN), 503, "service_unavailable")
    redis.restore()
    assert_api_error(pay_by_pin(client, world, PIN), 429, "pin_locked")
    assert snapshot(fault_app, world) == before


def test_healthz_says_degraded_while_redis_is_down_and_ok_when_it_is_back(fault_app, redis):
    client = fault_app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok", "redis": "ok"}
    redis.cut()
    down = client.get("/healthz")
    assert down.status_code == 503
    assert down.get_json() == {"status": "degraded", "database": "ok", "redis": "unavailable"}
    redis.restore()
    assert client.get("/healthz").status_code == 200


def test_sign_in_is_refused_while_redis_is_down_rather_than_unthrottled(fault_app, redis, world):
    """Login attempts are counted in Redis: without it, sign-in answers 503 instead of allowing unlimited
    password guesses; tokens already issued keep working."""
    client = fault_app.test_client()
    redis.cut()
    resp = client.post("/api/v1/auth/tokens", json={"username": world["users"]["member"].username,
                                                    "password": "demo-pass-2026"})
    assert_api_error(resp, 503, "service_unavailable")
    assert balances_answer(client, world) == 200


def test_a_redis_that_stops_answering_fails_the_payment_closed_within_the_socket_timeout(fault_app, redis, world):
    """Redis keeps the connection open but never sees the request: the till gets a 503 after the client's
    timeout rather than hanging, nothing is charged, and the code still works once Redis answers."""
    client = fault_app.test_client()
    code = payment_code(client, world)
    before = snapshot(fault_app, world)
    redis.swallow = "requests"
    started = time.monotonic()
    assert_api_error(pay_by_code(client, world, code, "till:slow-1"), 503, "service_unavailable")
    assert time.monotonic() - started < 10
    assert snapshot(fault_app, world) == before

    redis.swallow = None
    assert pay_by_code(client, world, code, "till:slow-1").status_code == 201
    assert snapshot(fault_app, world)["payments"] == before["payments"] + 1


def test_a_code_taken_by_redis_whose_answer_was_lost_is_honoured_once_for_the_same_sale(fault_app, redis, world):
    """Redis took the code but its answer never came back: the till gets a 503 and nothing is charged; the
    same sale retried (same Idempotency-Key) is recognized and paid once; any other sale is refused."""
    client = fault_app.test_client()
    code = payment_code(client, world)
    before = snapshot(fault_app, world)
    redis.swallow = "replies"
    assert_api_error(pay_by_code(client, world, code, "till:lost-1"), 503, "service_unavailable")
    assert snapshot(fault_app, world) == before

    redis.swallow = None
    assert_api_error(pay_by_code(client, world, code, "till:lost-2"), 422, "payment_code_used")
    paid = pay_by_code(client, world, code, "till:lost-1")
    assert paid.status_code == 201, paid.get_json()
    assert pay_by_code(client, world, code, "till:lost-1").get_json()["id"] == paid.get_json()["id"]
    assert snapshot(fault_app, world)["payments"] == before["payments"] + 1
    verify_books(fault_app)
