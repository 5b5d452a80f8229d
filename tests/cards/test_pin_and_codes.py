"""The PIN (weak ones refused, lockout) and member payment codes (single use, expiry, forgery, cross-card)."""

import datetime as dt
import io
import json
import threading

import pytest
from PIL import Image
from sqlalchemy import select

from cards import service
from cards.api import payment_codes
from cards.models import Card
from cards.numbers import luhn_check_digit
from core.auth import Actor
from core.db import db
from core.models import Role
from core.errors import Conflict, RuleViolation, ServiceUnavailable, TooManyAttempts
from core.redis import MemoryStore, RedisStore
from tests import factories as f
from tests.cards.conftest import active_card, issue

GOOD_PIN = "583920"


def set_pin(client, world, card_id, pin, current=None, who="owner"):
    body = {"pin": pin} if current is None else {"pin": pin, "current_pin": current}
    return client.put(f"/api/v1/cards/{card_id}/pin", json=body, headers=world["h"][who])


def test_the_owner_sets_a_pin_stored_only_as_an_argon2_hash(client, session, world):
    card = issue(client, world)
    assert set_pin(client, world, card["id"], GOOD_PIN).status_code == 204
    row = session.scalar(select(Card).where(Card.public_id == card["id"]))
    assert row.pin_hash.startswith("$argon2id$") and GOOD_PIN not in row.pin_hash
    assert client.get(f"/api/v1/cards/{card['id']}", headers=world["h"]["owner"]).get_json()["pin_set"] is True
    assert set_pin(client, world, card["id"], GOOD_PIN, who="admin").status_code == 403
    assert set_pin(client, world, card["id"], GOOD_PIN, who="other").status_code == 404


@pytest.mark.parametrize("pin,why", [("123456", "too easy"), ("000000", "too easy"), ("850615", "birth date"),
                                     ("345678", "too easy"), ("12345", "six digits"), ("abcdef", "six digits")])
def test_weak_pins_are_refused_with_the_reason(client, session, world, cipher, pin, why):
    member = f.member(session, cipher, world["tree"]["yc_base"], "赵六",
                      id_number=f.id_number("640104", dt.date(1985, 6, 15)))
    owner = f.user(session, Role.MEMBER, member=member)
    world["h"]["zhao"] = f.bearer(session, owner)
    card = issue(client, world, member, who="platform")
    resp = set_pin(client, world, card["id"], pin, who="zhao")
    assert resp.status_code == 422 and resp.get_json()["error"] == "weak_pin"
    assert why in resp.get_json()["errors"]["pin"][0]


def test_a_pin_equal_to_the_end_of_the_phone_number_is_refused(client, world):
    card = issue(client, world)  # the owner's phone is 13912345678
    resp = set_pin(client, world, card["id"], "345678")
    assert resp.status_code == 422


def test_changing_the_pin_needs_the_current_one(client, world):
    card = issue(client, world)
    set_pin(client, world, card["id"], GOOD_PIN)
    missing = set_pin(client, world, card["id"], "274816")
    assert missing.status_code == 422 and "current_pin" in missing.get_json()["errors"]
    wrong = set_pin(client, world, card["id"], "274816", current="111112")
    assert wrong.status_code == 422 and wrong.get_json()["error"] == "wrong_pin"
    assert set_pin(client, world, card["id"], "274816", current=GOOD_PIN).status_code == 204


def guard(app):
    from cards.api import pin_guard

    with app.app_context():
        return pin_guard()


def test_five_wrong_pins_in_a_row_lock_pin_use_for_thirty_minutes(client, session, world, app):
    card = active_card(client, world)
    set_pin(client, world, card["id"], GOOD_PIN)
    row = session.scalar(select(Card).where(Card.public_id == card["id"]))
    g = guard(app)
    for n in range(4):
        with pytest.raises(RuleViolation) as exc:
            g.verify(row, "111112")
        assert exc.value.code == "wrong_pin" and f"{4 - n} " in exc.value.message
    with pytest.raises(TooManyAttempts) as locked:
        g.verify(row, "111112")
    assert locked.value.code == "pin_locked" and locked.value.retry_after == 1800
    # Now even the right PIN is refused until the lock ends, through the API as well.
    with pytest.raises(TooManyAttempts):
        g.verify(row, GOOD_PIN)
    resp = set_pin(client, world, card["id"], "274816", current=GOOD_PIN)
    assert resp.status_code == 429 and resp.get_json()["error"] == "pin_locked"
    assert 1700 < int(resp.headers["Retry-After"]) <= 1800
    # A replacement card does not reset the count: it is kept per member.
    new = client.post(f"/api/v1/cards/{card['id']}/replace", headers=world["h"]["owner"]).get_json()
    new_row = session.scalar(select(Card).where(Card.public_id == new["id"]))
    with pytest.raises(TooManyAttempts):
        g.verify(new_row, GOOD_PIN)


def test_a_right_pin_resets_the_run_of_wrong_ones(client, session, world, app):
    card = active_card(client, world)
    set_pin(client, world, card["id"], GOOD_PIN)
    row = session.scalar(select(Card).where(Card.public_id == card["id"]))
    g = guard(app)
    for _ in range(4):
        with pytest.raises(RuleViolation):
            g.verify(row, "111112")
    g.verify(row, GOOD_PIN)
    assert g.failures(row) == 0
    for _ in range(4):
        with pytest.raises(RuleViolation):
            g.verify(row, "111112")
    g.verify(row, GOOD_PIN)


def test_pin_checks_fail_closed_when_the_store_is_down(client, session, world):
    card = active_card(client, world)
    set_pin(client, world, card["id"], GOOD_PIN)
    row = session.scalar(select(Card).where(Card.public_id == card["id"]))
    down = service.PinGuard(RedisStore("redis://127.0.0.1:1/0"), max_failures=5, lockout=1800)
    with pytest.raises(ServiceUnavailable):
        down.verify(row, GOOD_PIN)


# --- payment codes -----------------------------------------------------------------------------

def new_code(client, world, card_id, who="owner"):
    resp = client.post(f"/api/v1/cards/{card_id}/payment-codes", headers=world["h"][who])
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def codes(app):
    with app.app_context():
        return payment_codes()


def test_a_payment_code_is_18_digits_short_lived_and_does_not_reveal_the_card(client, world):
    card = active_card(client, world)
    issued = new_code(client, world, card["id"])
    number = client.get(f"/api/v1/cards/{card['id']}/number", headers=world["h"]["owner"]).get_json()["number"]
    code = issued["code"]
    assert len(code) == 18 and code.isdigit() and code.startswith("88")
    assert luhn_check_digit(code[:-1]) == code[-1]
    assert issued["expires_in"] == 60 and issued["card_id"] == card["id"]
    for i in range(len(number) - 5):
        assert number[i:i + 6] not in code[2:-1] or number[i:i + 6] in ("000000",)
    assert new_code(client, world, card["id"])["code"] != code


def test_a_code_is_good_exactly_once(client, session, world, app):
    card = active_card(client, world)
    code = new_code(client, world, card["id"])["code"]
    pc = codes(app)
    assert pc.redeem(session, code, consumer="till-1:key-a").public_id == card["id"]
    with pytest.raises(RuleViolation) as again:
        pc.redeem(session, code, consumer="till-2:key-b")
    assert again.value.code == "payment_code_used" and "already been used" in again.value.message
    # The same request retried (same consumer) is recognized, not charged twice by the caller's idempotency.
    assert pc.redeem(session, code, consumer="till-1:key-a").public_id == card["id"]


def test_an_expired_code_is_refused(client, session, world, app):
    card = active_card(client, world)
    now = [1000.0]
    store = MemoryStore(clock=lambda: now[0])
    pc = service.PaymentCodes(store, b"k" * 32, ttl=60, per_minute=20)
    actor = Actor.of(world["users"]["owner"])
    issued = pc.issue(session, actor, card["id"])
    now[0] += 59
    assert pc.peek(session.scalar(select(Card).where(Card.public_id == card["id"])), issued.code)
    now[0] += 2
    with pytest.raises(RuleViolation) as exc:
        pc.redeem(session, issued.code, consumer="till")
    assert exc.value.code == "payment_code_expired"


def test_codes_expire_in_redis_by_redis_time(client, session, world, redis_url):
    import time

    card = active_card(client, world)
    pc = service.PaymentCodes(RedisStore(redis_url, prefix=f"uctest:{card['id']}:"), b"k" * 32, ttl=1, per_minute=20)
    issued = pc.issue(session, Actor.of(world["users"]["owner"]), card["id"])
    time.sleep(2.1)
    with pytest.raises(RuleViolation) as exc:
        pc.redeem(session, issued.code, consumer="till")
    assert exc.value.code == "payment_code_expired"


def test_tampered_and_forged_codes_are_refused(client, session, world, app):
    card = active_card(client, world)
    code = new_code(client, world, card["id"])["code"]
    pc = codes(app)
    digit = str((int(code[7]) + 3) % 10)
    tampered = code[:7] + digit + code[8:]
    with pytest.raises(RuleViolation) as bad_check:
        pc.redeem(session, tampered, consumer="till")
    assert bad_check.value.code == "invalid_payment_code"
    # Even with the check digit fixed up, a code the server did not issue is worthless.
    forged = tampered[:-1] + luhn_check_digit(tampered[:-1])
    with pytest.raises(RuleViolation) as forged_exc:
        pc.redeem(session, forged, consumer="till")
    assert forged_exc.value.code == "payment_code_expired"
    # A server with another key does not accept this server's codes.
    other = service.PaymentCodes(pc.store, b"another-key" * 3, ttl=60, per_minute=20)
    with pytest.raises(RuleViolation):
        other.redeem(session, code, consumer="till")
    for junk in ("", "abc", "8" * 40, "12" + code[2:]):
        with pytest.raises(RuleViolation):
            pc.redeem(session, junk, consumer="till")
    # The genuine code still works once.
    assert pc.redeem(session, code, consumer="till").public_id == card["id"]


def test_codes_are_not_stored_in_the_clear(client, world, app, redis_url):
    import redis

    card = active_card(client, world)
    code = new_code(client, world, card["id"])["code"]
    kv = app.extensions["kv"]
    keys = redis.Redis.from_url(redis_url).keys(f"{kv.prefix}paycode:*")
    assert keys and not any(code.encode() in key for key in keys)


def test_a_code_for_one_card_is_refused_for_another(client, session, world, app):
    card = active_card(client, world)
    other = active_card(client, world, world["other"], owner="other")
    code = new_code(client, world, card["id"])["code"]
    with pytest.raises(RuleViolation) as exc:
        codes(app).redeem(session, code, consumer="till", card_id=other["id"])
    assert exc.value.code == "payment_code_mismatch"
    # Another member can neither ask for codes of this card nor draw them.
    assert client.post(f"/api/v1/cards/{card['id']}/payment-codes", headers=world["h"]["other"]).status_code == 404
    assert client.get(f"/api/v1/cards/{card['id']}/payment-codes/{code}.svg",
                      headers=world["h"]["other"]).status_code == 404
    assert client.get(f"/api/v1/cards/{other['id']}/payment-codes/{code}.svg",
                      headers=world["h"]["other"]).status_code == 404


@pytest.mark.parametrize("action,error", [("freeze", "card_frozen"), ("report-lost", "card_lost"),
                                          ("replace", "card_replaced")])
def test_codes_of_a_frozen_lost_or_replaced_card_stop_working(client, session, world, app, action, error):
    card = active_card(client, world)
    code = new_code(client, world, card["id"])["code"]
    client.post(f"/api/v1/cards/{card['id']}/{action}", headers=world["h"]["owner"])
    with pytest.raises(Conflict) as exc:
        codes(app).redeem(session, code, consumer="till")
    assert exc.value.code == error


def test_no_codes_for_a_card_not_yet_activated(client, world):
    card = issue(client, world)
    resp = client.post(f"/api/v1/cards/{card['id']}/payment-codes", headers=world["h"]["owner"])
    assert resp.status_code == 409 and resp.get_json()["error"] == "card_not_active"


def test_codes_are_rate_limited_per_card(client, world):
    card = active_card(client, world)
    for _ in range(20):
        new_code(client, world, card["id"])
    resp = client.post(f"/api/v1/cards/{card['id']}/payment-codes", headers=world["h"]["owner"])
    assert resp.status_code == 429 and "Retry-After" in resp.headers


def test_the_qr_images_decode_back_to_the_code(client, world, app):
    import zxingcpp

    card = active_card(client, world)
    issued = new_code(client, world, card["id"])
    png = client.get(issued["png_url"], headers=world["h"]["owner"])
    assert png.status_code == 200 and png.mimetype == "image/png" and png.headers["Cache-Control"] == "no-store"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.data)), formats=zxingcpp.BarcodeFormat.QRCode)
    assert {d.text for d in decoded} == {issued["code"]}
    svg = client.get(issued["svg_url"], headers=world["h"]["owner"])
    assert svg.status_code == 200 and svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    # A used code is no longer drawn.
    with app.app_context():
        payment_codes().redeem(db.session, issued["code"], consumer="till")
    assert client.get(issued["png_url"], headers=world["h"]["owner"]).status_code == 404


def test_payment_codes_fail_closed_without_the_store(client, session, world):
    card = active_card(client, world)
    down = service.PaymentCodes(RedisStore("redis://127.0.0.1:1/0"), b"k" * 32, ttl=60, per_minute=20)
    with pytest.raises(ServiceUnavailable):
        down.issue(session, Actor.of(world["users"]["owner"]), card["id"])
    with pytest.raises(ServiceUnavailable):
        down.redeem(session, "88" + "1" * 15 + luhn_check_digit("88" + "1" * 15), consumer="till")


def test_two_tills_taking_one_code_at_once_only_one_gets_it(client, session, world, redis_url):
    card = active_card(client, world)
    pc = service.PaymentCodes(RedisStore(redis_url, prefix=f"uctest:race:{card['id']}:"), b"k" * 32, ttl=60,
                              per_minute=20)
    code = pc.issue(session, Actor.of(world["users"]["owner"]), card["id"]).code
    results = []
    barrier = threading.Barrier(8)

    slot = f"paycode:{pc._slot(code)}"

    def till():
        barrier.wait()
        results.append(pc.store.take(slot))

    threads = [threading.Thread(target=till) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r]
    assert len(winners) == 1 and json.loads(winners[0])["card"] == card["id"]
