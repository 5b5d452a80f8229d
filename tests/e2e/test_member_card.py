"""A member opens their card on a phone in Chromium: balances in yuan, the full number on request, a live
payment code that renews itself, then the same pages in English."""

from __future__ import annotations

import datetime as dt
import io
import re

import pytest
import zxingcpp
from PIL import Image

from cards import service
from cards.api import payment_codes, pin_guard
from cards.models import Card
from cards.numbers import group_digits, looks_like_payment_code
from core.auth import Actor, create_user
from core.db import db, utcnow
from core.models import Role
from tests import factories as f
from tests.cards.conftest import fund
from tests.e2e.conftest import PASSWORD, serve, shot, fits_the_phone

PIN = "583920"


@pytest.fixture(scope="module")
def card_server(tmp_path_factory):
    """A live server of its own (the test sets up its data through the app) with a member whose card is
    active, has a PIN and money on it."""
    def setup(app):
        session, cipher = db.session, app.extensions["cipher"]
        tree = f.org_tree(session)
        member = f.member(session, cipher, tree["yc_base"], "马丽", phone="13987654321")
        user = create_user(session, username="e2e-member", password=PASSWORD, role=Role.MEMBER,
                           member_id=member.id, display_name="马丽")
        session.commit()
        card = service.issue_card(session, cipher, f.PLATFORM, member.public_id, prefix=app.config["CARD_PREFIX"])
        owner = Actor.of(user)
        service.change_state(session, owner, card.public_id, "activate")
        service.set_pin(session, cipher, pin_guard(), owner, card.public_id, pin=PIN, current_pin=None)
        fund(session, card.public_id, 12345)
        fund(session, card.public_id, 50000, program_id="prg_e2e_hardship", categories=["pharmacy", "supermarket"],
             expires_at=utcnow() + dt.timedelta(days=12))
        # Two members on their first day, one reading Chinese and one English: a card issued, not yet
        # activated, with no PIN, and a consumption voucher on it.
        for lang, name in (("zh", "周强"), ("en", "杨梅")):
            newcomer = f.member(session, cipher, tree["yc_base"], name, phone="13812345678")
            create_user(session, username=f"e2e-first-{lang}", password=PASSWORD, role=Role.MEMBER,
                        member_id=newcomer.id, display_name=name)
            session.commit()
            fresh = service.issue_card(session, cipher, f.PLATFORM, newcomer.public_id,
                                       prefix=app.config["CARD_PREFIX"])
            fund(session, fresh.public_id, 10_000)
        return {"card_id": card.public_id, "masked": card.number_masked,
                "number": cipher.decrypt(card.number_enc, service.NUMBER_CONTEXT)}

    with serve(tmp_path_factory, "e2e_card", setup) as (url, app, facts):
        yield {"url": url, "app": app, **facts}


def code_is_live(server, code: str) -> bool:
    app = server["app"]
    with app.app_context():
        card = db.session.query(Card).filter_by(public_id=server["card_id"]).one()
        return payment_codes().peek(card, code)


def shown_code(page) -> str:
    digits = page.inner_text("#digits").strip()
    assert re.fullmatch(r"(\d{4} ){4}\d{2}", digits), digits
    return digits.replace(" ", "")


def scan(locator) -> str:
    """Read the QR code an element shows, as the cashier's scanner would."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(locator.screenshot())))
    assert len(found) == 1
    return found[0].text


def test_a_member_sees_the_card_and_pays_with_a_renewing_code(card_server, page):
    base = card_server["url"]
    page.clock.install()
    page.goto(f"{base}/login")
    page.fill("#username", "e2e-member")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    first_tile = page.locator("ul.tiles li a").first
    assert first_tile.inner_text() == "我的会员卡"
    first_tile.click()
    page.wait_for_url(f"{base}/card/")

    assert page.inner_text("#card-status") == "正常使用"
    assert page.inner_text("#card-number") == group_digits(card_server["masked"])
    assert card_server["number"] not in page.content() and group_digits(card_server["number"]) not in page.content()
    purses = page.inner_text("#purses")
    assert "¥123.45" in purses and "¥500.00" in purses and "¥623.45" in purses
    assert "即将到期" in purses and "药店" in purses and "超市" in purses
    assert page.inner_text("#total") == "¥623.45"
    assert fits_the_phone(page)
    shot(page, "member-card-1-my-card")

    page.click("#reveal")
    page.wait_for_function("document.getElementById('card-number').textContent.indexOf('*') < 0")
    assert page.inner_text("#card-number") == group_digits(card_server["number"])
    shot(page, "member-card-2-number-shown")

    page.click("#pay")
    page.wait_for_url(f"{base}/card/code")
    first = shown_code(page)
    assert looks_like_payment_code(first) and code_is_live(card_server, first)
    assert page.locator("#qr svg").count() == 1 and page.locator("#qr svg path").count() >= 1
    assert 0 < int(page.inner_text("#countdown")) <= 60
    assert fits_the_phone(page)
    shot(page, "member-card-3-payment-code")

    # The page renews the code on its own ten seconds before the server says it expires.
    page.clock.fast_forward(51_000)
    page.wait_for_function(f"document.getElementById('digits').textContent.replace(/ /g, '') !== '{first}'")
    second = shown_code(page)
    assert second != first and code_is_live(card_server, second)
    assert int(page.inner_text("#countdown")) > 50
    # And on demand, through the function it exposes.
    third = page.evaluate("window.refreshPaymentCode()")
    assert third not in (first, second) and shown_code(page) == third and code_is_live(card_server, third)
    assert page.locator("#qr svg").count() == 1
    shot(page, "member-card-4-payment-code-renewed")

    page.goto(f"{base}/card/?lang=en")
    assert page.inner_text("h1") == "My card"
    assert "Show full number" in page.content() and "General balance" in page.content()
    assert "¥623.45" in page.inner_text("#total") and "我的会员卡" not in page.content()
    shot(page, "member-card-5-english")
    page.click("#pay")
    page.wait_for_url(f"{base}/card/code")
    assert page.inner_text("#paycode h1") == "Show this to the cashier"
    assert looks_like_payment_code(shown_code(page))
    shot(page, "member-card-6-payment-code-english")


# What the member reads on the first day, in each language.
FIRST_DAY = {
    "zh": {"sign_in": "登录", "my_card": "我的会员卡", "issued": "待激活", "active": "正常使用",
           "activated": "卡已激活，现在可以用它付款了。", "set_pin": "设置支付密码", "change_pin": "修改支付密码",
           "easy_pin": "该密码太容易被猜到", "pin_set": "支付密码已设置。", "show": "请向收银员出示"},
    "en": {"sign_in": "Sign in", "my_card": "My card", "issued": "Not activated", "active": "In use",
           "activated": "Your card is active: you can pay with it now.", "set_pin": "Set PIN",
           "change_pin": "Change PIN", "easy_pin": "That PIN is too easy to guess", "pin_set": "Your PIN is set.",
           "show": "Show this to the cashier"},
}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_member_on_the_first_day_activates_the_card_sets_a_pin_and_shows_a_code(card_server, page, lang):
    base, words = card_server["url"], FIRST_DAY[lang]
    page.goto(f"{base}/login")
    if lang == "en":
        page.click("header a.lang")  # the page's language switch
    assert page.inner_text("h1") == words["sign_in"]
    page.fill("#username", f"e2e-first-{lang}")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    assert fits_the_phone(page)
    page.click(f"ul.tiles a:text-is('{words['my_card']}')")
    page.wait_for_url(f"{base}/card/")
    assert page.inner_text("h1") == words["my_card"]
    assert page.inner_text("#card-status") == words["issued"]
    assert page.locator("#pay").count() == 0 and page.inner_text("#total") == "¥100.00"
    assert fits_the_phone(page)
    shot(page, f"first-day-{lang}-1-issued")

    page.click("#activate")
    page.wait_for_selector(".flash.info")
    assert page.inner_text(".flash.info") == words["activated"]
    assert page.inner_text("#card-status") == words["active"] and page.locator("#activate").count() == 0
    assert page.inner_text("#pin") == words["set_pin"]
    shot(page, f"first-day-{lang}-2-activated")

    page.click("#pin")
    page.wait_for_url(f"{base}/card/pin")
    assert page.inner_text("h1") == words["set_pin"] and fits_the_phone(page)
    page.fill("#pin", "123456")
    page.fill("#pin_again", "123456")
    page.click("#pin-form button[type=submit]")
    page.wait_for_selector(".field-error")
    assert words["easy_pin"] in page.inner_text(".field-error")
    shot(page, f"first-day-{lang}-3-easy-pin-refused")
    page.fill("#pin", PIN)
    page.fill("#pin_again", PIN)
    page.click("#pin-form button[type=submit]")
    page.wait_for_url(f"{base}/card/")
    assert page.inner_text(".flash.info") == words["pin_set"] and page.inner_text("#pin") == words["change_pin"]
    assert fits_the_phone(page)
    shot(page, f"first-day-{lang}-4-pin-set")

    page.click("#pay")
    page.wait_for_url(f"{base}/card/code")
    assert page.inner_text("#paycode h1") == words["show"]
    code = shown_code(page)
    assert scan(page.locator("#qr svg")) == code and looks_like_payment_code(code)
    assert fits_the_phone(page)
    shot(page, f"first-day-{lang}-5-payment-code")
