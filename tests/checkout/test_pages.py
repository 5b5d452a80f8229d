"""The card payment pages: the store's pay page (the URL its QR code encodes), receipts, the till with
refunds, and the offer usage figures; who may see and do what, in Chinese and in English."""

import csv
import datetime as dt
import io
import re

import pytest
from sqlalchemy import func, select

from cards import service as cards
from cards.models import Purse
from core.models import Role
from merchants.models import StoreStatus
from payments.checkout import service
from payments.checkout.models import Payment, Refund
from tests import factories as f
from tests.checkout.conftest import (
    PIN,
    balance,
    fund,
    funded_program,
    guard,
    make_offer,
    payment_code,
)

ANON = "anonymous"


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def form_key(resp) -> str:
    return re.search(r'name="key" value="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, user):
    page = client.get("/login")
    resp = client.post("/login", data={"username": user.username, "password": f.PASSWORD, "csrf_token": csrf(page)})
    assert resp.status_code == 302, resp.get_data(as_text=True)


def text(resp) -> str:
    return resp.get_data(as_text=True)


def pay_url(world, store=None) -> str:
    return f"/pay/{(store or world['store']).public_id}"


def pay_form(client, world, *, amount="20", pin=PIN, lang=None, store=None, key=None, action="pay"):
    """Open the pay page, then submit its form (the key of that rendering unless given)."""
    url = pay_url(world, store) + (f"?lang={lang}" if lang else "")
    page = client.get(url)
    assert page.status_code == 200, text(page)
    return client.post(url, data={"csrf_token": csrf(page), "key": key or form_key(page), "amount": amount,
                                  "pin": pin, "action": action})


def user_of(session, cipher, world, role):
    """A user of the role: the world's own where it has one, else a new one."""
    names = {Role.MEMBER: "member", Role.MERCHANT_CASHIER: "cashier", Role.MERCHANT_MANAGER: "manager",
             Role.MERCHANT_OWNER: "owner", Role.FINANCE_MAKER: "maker", Role.FINANCE_APPROVER: "approver",
             Role.AUDITOR: "auditor", Role.UNION_ADMIN: "admin"}
    if role in names:
        return world["users"][names[role]]
    return f.user(session, role)


def payments_count(session, world) -> int:
    """The payments at the world's merchants (a shared database may hold others, committed for real)."""
    merchants = [world["shop"].id, world["pharmacy"].id]
    return session.scalar(select(func.count(Payment.id)).where(Payment.merchant_id.in_(merchants)))


def refunds_count(session, world) -> int:
    merchants = [world["shop"].id, world["pharmacy"].id]
    return session.scalar(select(func.count(Refund.id)).join(Payment, Payment.id == Refund.payment_id)
                          .where(Payment.merchant_id.in_(merchants)))


def only_payment(session, world) -> Payment:
    return session.scalar(select(Payment).where(Payment.merchant_id.in_([world["shop"].id, world["pharmacy"].id]))
                          .execution_options(populate_existing=True))


# --- the store's pay page ------------------------------------------------------------------------

def test_the_qr_code_encodes_the_pay_page_an_anonymous_visitor_is_asked_to_sign_in(client, session, world):
    store_id = world["store"].public_id
    owner = f.bearer(session, world["users"]["owner"])
    from core import qr

    assert client.get(f"/api/v1/stores/{store_id}/qr.png", headers=owner).data == qr.png(f"http://localhost/pay/{store_id}")
    page = client.get(f"/pay/{store_id}")
    body = text(page)
    assert page.status_code == 200 and "好味餐厅" in body and world["store"].name in body
    assert "请登录会员账户后用会员卡付款" in body and f'href="/login?next=/pay/{store_id}"' in body
    assert 'name="pin"' not in body
    english = text(client.get(f"/pay/{store_id}?lang=en"))
    assert "Sign in with your member account to pay with your card." in english
    assert client.get("/pay/sto_nosuchstore").status_code == 404


def test_a_store_that_takes_no_cards_answers_409_with_the_message_to_everyone(client, session, world):
    world["store"].status = StoreStatus.CLOSED
    session.commit()
    anonymous = client.get(pay_url(world))
    assert anonymous.status_code == 409 and "暂不受理会员卡" in text(anonymous)
    sign_in(client, world["users"]["member"])
    member = client.get(pay_url(world) + "?lang=en")
    assert member.status_code == 409 and "does not accept member cards at the moment" in text(member)
    assert 'name="pin"' not in text(member)
    refused = client.post(pay_url(world), data={"csrf_token": csrf(member), "key": "page-x", "amount": "10",
                                                "pin": PIN})
    assert refused.status_code == 409 and payments_count(session, world) == 0


def test_other_roles_see_the_sign_in_prompt_and_may_not_pay(client, session, world):
    sign_in(client, world["users"]["cashier"])
    page = client.get(pay_url(world))
    assert page.status_code == 200 and 'name="pin"' not in text(page) and "请登录会员账户后用会员卡付款" in text(page)
    resp = client.post(pay_url(world), data={"csrf_token": csrf(page), "key": "page-x", "amount": "10", "pin": PIN})
    assert resp.status_code == 403
    assert client.get(pay_url(world) + "/preview?amount=10").status_code == 403
    client.post("/logout", data={"csrf_token": csrf(page)})
    anonymous = client.post(pay_url(world), data={"csrf_token": csrf(client.get("/")), "amount": "10", "pin": PIN})
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login?next=")
    assert payments_count(session, world) == 0


@pytest.mark.parametrize("lang, words", [
    ("zh", ("您将付款给", "金额（元）", "会员卡支付密码", "确认支付", "本店优惠", "好味九折", "优惠10%", "最多优惠¥5.00")),
    ("en", ("You are paying", "Amount (yuan)", "Card PIN", "Pay", "Offers here", "好味九折", "10% off",
            "at most ¥5.00 off")),
])
def test_a_member_sees_the_amount_field_the_offers_and_a_pin_field(client, session, world, lang, words):
    fund(session, world["card"], 10_000)
    make_offer(session, merchant=world["shop"], kind="percent_off", value=1000, max_discount=500, title="好味九折")
    make_offer(session, merchant=world["pharmacy"], kind="amount_off", value=300, title="药房立减")
    sign_in(client, world["users"]["member"])
    page = client.get(pay_url(world) + f"?lang={lang}")
    body = text(page)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    for word in words:
        assert word in body, word
    assert "药房立减" not in body
    pin = re.search(r'<input id="pin"[^>]*>', body).group(0)
    assert 'type="password"' in pin and 'inputmode="numeric"' in pin and 'autocomplete="off"' in pin
    assert 'maxlength="6"' in pin
    assert re.search(r'name="key" value="page-[A-Za-z0-9_-]{20,}"', body)
    assert "¥100.00" in body  # what the card can pay here
    assert form_key(page) != form_key(client.get(pay_url(world)))  # a key per rendering


def test_the_price_preview_shows_the_discount_live_and_on_a_check_step_and_charges_nothing(client, session, world):
    general = fund(session, world["card"], 10_000)
    offer = make_offer(session, merchant=world["shop"], kind="percent_off", value=1200, max_discount=500,
                       title="会员88折")
    sign_in(client, world["users"]["member"])
    live = client.get(pay_url(world) + "/preview?amount=19.99")
    assert live.status_code == 200
    body = live.get_json()
    assert (body["amount"], body["discount"], body["charged"], body["offer_id"]) == (1_999, 240, 1_759,
                                                                                     offer.public_id)
    assert "会员88折" in body["html"] and "-¥2.40" in body["html"] and "¥17.59" in body["html"]
    bad = client.get(pay_url(world) + "/preview?amount=abc&lang=en")
    assert bad.status_code == 422 and "Enter an amount in yuan" in bad.get_json()["html"]
    checked = pay_form(client, world, amount="19.99", pin="", action="check", lang="en")
    assert checked.status_code == 200
    assert "-¥2.40" in text(checked) and "¥17.59" in text(checked) and "Applies" in text(checked)
    # Pay without a PIN is a check too: the price, and a word to enter the PIN.
    no_pin = pay_form(client, world, amount="19.99", pin="")
    assert no_pin.status_code == 200 and "¥17.59" in text(no_pin) and 'id="pin-hint"' in text(no_pin)
    assert payments_count(session, world) == 0 and balance(session, general) == 10_000


def test_the_member_pays_with_the_pin_and_lands_on_the_receipt(client, session, world):
    general = fund(session, world["card"], 10_000)
    make_offer(session, merchant=world["shop"], kind="percent_off", value=1000, max_discount=500, title="好味九折")
    sign_in(client, world["users"]["member"])
    resp = pay_form(client, world, amount="36.50")
    assert resp.status_code == 302, text(resp)
    payment = only_payment(session, world)
    assert resp.headers["Location"] == f"/card/payments/{payment.public_id}"
    assert (payment.amount, payment.discount, payment.charged, payment.method.value) == (3_650, 365, 3_285, "pin")
    assert balance(session, general) == 10_000 - 3_285
    receipt = client.get(resp.headers["Location"])
    body = text(receipt)
    assert receipt.status_code == 200 and "已支付¥32.85" in body  # the flash
    assert "好味九折" in body and "-¥3.65" in body and "¥36.50" in body


def test_a_double_submit_of_the_pay_form_charges_once(client, session, world):
    general = fund(session, world["card"], 10_000)
    sign_in(client, world["users"]["member"])
    page = client.get(pay_url(world))
    data = {"csrf_token": csrf(page), "key": form_key(page), "amount": "25", "pin": PIN, "action": "pay"}
    first = client.post(pay_url(world), data=data)
    second = client.post(pay_url(world), data=data)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert payments_count(session, world) == 1 and balance(session, general) == 7_500
    # The same form sent again with another amount is refused, and renewed.
    other = client.post(pay_url(world), data={**data, "amount": "26"})
    assert other.status_code == 409 and "已用于另一笔" in text(other) and form_key(other) != data["key"]
    assert payments_count(session, world) == 1 and balance(session, general) == 7_500


@pytest.mark.parametrize("lang, wrong, short", [
    ("zh", "支付密码错误。还可尝试 4 次", "卡内余额不足：本店可付¥10.00，少于应付的¥25.00。"),
    ("en", "Wrong PIN. Tries left before PIN use is locked: 4.",
     "Not enough money on the card: it can pay ¥10.00 here, less than the ¥25.00 due."),
])
def test_refusals_are_said_in_the_pages_language(client, session, world, lang, wrong, short):
    general = fund(session, world["card"], 1_000)
    sign_in(client, world["users"]["member"])
    bad_pin = pay_form(client, world, amount="5", pin="111111", lang=lang)
    assert bad_pin.status_code == 422 and wrong in text(bad_pin)
    assert PIN not in text(bad_pin) and "111111" not in text(bad_pin)
    not_digits = pay_form(client, world, amount="5", pin="12ab", lang=lang)
    assert not_digits.status_code == 422
    assert guard(client.application).failures(world["card"]) == 1  # a PIN that is no PIN costs no try
    too_much = pay_form(client, world, amount="25", lang=lang)
    assert too_much.status_code == 422 and short in text(too_much)
    no_amount = pay_form(client, world, amount="-3", lang=lang)
    assert no_amount.status_code == 422
    page = client.get(pay_url(world))
    stale = client.post(pay_url(world), data={"csrf_token": csrf(page), "amount": "5", "pin": PIN})
    assert stale.status_code == 400
    assert payments_count(session, world) == 0 and balance(session, general) == 1_000


def test_a_locked_pin_and_a_frozen_card_are_explained(client, session, world):
    fund(session, world["card"], 5_000)
    sign_in(client, world["users"]["member"])
    for _ in range(4):
        assert pay_form(client, world, amount="5", pin="111111").status_code == 422
    locked = pay_form(client, world, amount="5", pin="111111", lang="en")
    assert locked.status_code == 429 and "PIN use is locked for 30 minutes" in text(locked)
    cards.change_state(session, world["a"]["member"], world["card"].public_id, "freeze")
    frozen = client.get(pay_url(world) + "?lang=en")
    assert frozen.status_code == 200 and "The card is frozen." in text(frozen) and 'name="pin"' not in text(frozen)
    assert payments_count(session, world) == 0


# --- receipts ------------------------------------------------------------------------------------

def paid_by_code(client, world, amount, *, who="cashier", store=None) -> str:
    code = payment_code(client, world)
    resp = client.post("/api/v1/payments", headers=world["h"][who],
                       json={"store_id": (store or world["store"]).public_id, "amount": amount, "payment_code": code})
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


@pytest.mark.parametrize("lang, words", [
    ("zh", ("收据", "商户", "门店", "原价", "优惠", "卡付金额", "支付来源", "通用余额", "医疗互助", "由工会从",
            "退款记录", "部分退款", "货不对板")),
    ("en", ("Receipt", "Merchant", "Store", "List price", "Discount", "Paid by card", "Paid from", "General balance",
            "医疗互助", "paid by the union from", "Refunds", "Partly refunded", "货不对板")),
])
def test_the_receipt_shows_where_when_the_discount_the_purses_and_refunds(client, session, world, lang, words):
    program = funded_program(session, world["users"], world["tree"]["yc"], name="职工普惠补贴")
    fund(session, world["card"], 5_000)
    aid = funded_program(session, world["users"], world["tree"]["yc"], name="医疗互助")
    fund(session, world["card"], 1_000, program_id=aid.public_id, categories=["pharmacy"],
         expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    session.execute(Purse.__table__.update().where(Purse.program_id == aid.public_id)
                    .values(label="医疗互助"))
    session.commit()
    make_offer(session, merchant=world["pharmacy"], kind="amount_off", value=500, funding="union",
               program_id=program.public_id, title="药房立减5元")
    pid = paid_by_code(client, world, 3_000, who="pharmacy_cashier", store=world["pharmacy_store"])
    refund = client.post(f"/api/v1/payments/{pid}/refunds", headers=world["h"]["pharmacy_owner"],
                         json={"amount": 500, "reason": "货不对板"})
    assert refund.status_code == 201
    sign_in(client, world["users"]["member"])
    page = client.get(f"/card/payments/{pid}?lang={lang}")
    body = text(page)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    for word in words:
        assert word in body, word
    payment = session.scalar(select(Payment).where(Payment.public_id == pid))
    local = payment.created_at.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert local.strftime("%Y-%m-%d %H:%M") in body
    assert "仁心药房" in body and "药房立减5元" in body and "-¥5.00" in body and "¥30.00" in body
    assert "¥25.00" in body and "¥10.00" in body and "¥15.00" in body and "职工普惠补贴" in body


def test_a_receipt_is_its_members_alone(client, session, world):
    fund(session, world["card"], 5_000)
    pid = paid_by_code(client, world, 1_000)
    for who, status in (("other_member", 404), ("cashier", 403), ("admin", 403), ("maker", 403)):
        client.get("/")
        sign_in(client, world["users"][who])
        assert client.get(f"/card/payments/{pid}").status_code == status, who
        client.post("/logout", data={"csrf_token": csrf(client.get("/"))})
    anonymous = client.get(f"/card/payments/{pid}")
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login?next=")
    sign_in(client, world["users"]["member"])
    assert client.get(f"/card/payments/{pid}").status_code == 200
    assert client.get("/card/payments/pay_nosuchpayment").status_code == 404


@pytest.mark.parametrize("lang, title", [("zh", "我的消费"), ("en", "My payments")])
def test_the_card_page_links_the_members_recent_payments(client, session, world, lang, title):
    fund(session, world["card"], 5_000)
    mine = paid_by_code(client, world, 1_200)
    fund(session, world["other_card"], 5_000)
    code = client.post(f"/api/v1/cards/{world['other_card'].public_id}/payment-codes",
                       headers=world["h"]["other_member"]).get_json()["code"]
    theirs = client.post("/api/v1/payments", headers=world["h"]["cashier"],
                         json={"store_id": world["store"].public_id, "amount": 700, "payment_code": code}).get_json()
    sign_in(client, world["users"]["member"])
    card_page = text(client.get(f"/card/?lang={lang}"))
    assert 'href="/card/payments/"' in card_page and title in card_page
    listing = client.get("/card/payments/")
    assert listing.status_code == 200 and f'href="/card/payments/{mine}"' in text(listing)
    assert theirs["id"] not in text(listing) and "¥12.00" in text(listing)
    client.post("/logout", data={"csrf_token": csrf(listing)})
    sign_in(client, world["users"]["cashier"])
    assert client.get("/card/payments/").status_code == 403


# --- the till --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", [*Role, ANON], ids=lambda r: getattr(r, "value", r))
def test_the_till_is_for_the_merchants_staff(client, session, cipher, world, role):
    if role != ANON:
        sign_in(client, user_of(session, cipher, world, role))
    resp = client.get("/merchant/till")
    if role == ANON:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
    elif role in (Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER):
        assert resp.status_code == 200 and world["store"].name in text(resp)
    else:
        assert resp.status_code == 403


def till_form(client, world, code, *, amount="50", store=None, lang=None, key=None):
    page = client.get("/merchant/till" + (f"?lang={lang}" if lang else ""))
    assert page.status_code == 200
    return client.post("/merchant/till" + (f"?lang={lang}" if lang else ""),
                       data={"csrf_token": csrf(page), "key": key or form_key(page), "amount": amount,
                             "code": code, "store": (store or world["store"]).public_id})


@pytest.mark.parametrize("lang, words", [
    ("zh", ("收银台", "收款成功", "卡付金额", "好味九折", "通用余额", "今日收款")),
    ("en", ("Till", "Payment taken", "Charged to the card", "好味九折", "General balance", "Today's payments")),
])
def test_the_cashier_charges_a_card_with_the_members_code(client, session, world, lang, words):
    general = fund(session, world["card"], 10_000)
    make_offer(session, merchant=world["shop"], kind="percent_off", value=1000, title="好味九折")
    sign_in(client, world["users"]["cashier"])
    code = payment_code(client, world)
    spaced = " ".join(code[i:i + 4] for i in range(0, 18, 4))
    resp = till_form(client, world, spaced, amount="88.80", lang=lang)
    assert resp.status_code == 302, text(resp)
    payment = only_payment(session, world)
    assert (payment.amount, payment.discount, payment.charged, payment.method.value) == (8_880, 888, 7_992,
                                                                                         "payment_code")
    assert balance(session, general) == 10_000 - 7_992
    result = client.get(resp.headers["Location"])
    body = text(result)
    assert result.status_code == 200 and 'id="result"' in body
    for word in words:
        assert word in body, word
    assert "¥88.80" in body and "-¥8.88" in body and "¥79.92" in body
    assert f'data-payment="{payment.public_id}"' in body
    assert 'class="refund-form"' not in body  # a cashier does not refund


def test_the_till_form_sent_twice_charges_once_and_refusals_are_shown(client, session, world):
    general = fund(session, world["card"], 10_000)
    sign_in(client, world["users"]["cashier"])
    page = client.get("/merchant/till")
    data = {"csrf_token": csrf(page), "key": form_key(page), "amount": "12", "code": payment_code(client, world),
            "store": world["store"].public_id}
    first, second = client.post("/merchant/till", data=data), client.post("/merchant/till", data=data)
    assert first.status_code == second.status_code == 302 and first.headers["Location"] == second.headers["Location"]
    assert payments_count(session, world) == 1 and balance(session, general) == 8_800
    used = till_form(client, world, data["code"], amount="12", lang="en")
    assert used.status_code == 422 and "already been used; ask the member to show a new one" in text(used)
    used_zh = till_form(client, world, data["code"], amount="12", lang="zh")
    assert used_zh.status_code == 422 and "付款码已被使用" in text(used_zh)
    short = till_form(client, world, payment_code(client, world), amount="500", lang="en")
    assert short.status_code == 422 and "Not enough money on the card" in text(short) and 'id="refused"' in text(short)
    bad = till_form(client, world, "1234", amount="12", lang="en")
    assert bad.status_code == 422 and "18 digits" in text(bad)
    elsewhere = till_form(client, world, payment_code(client, world), store=world["pharmacy_store"])
    assert elsewhere.status_code == 404
    assert payments_count(session, world) == 1 and balance(session, general) == 8_800


def test_members_and_union_staff_cannot_charge_at_the_till(client, session, world):
    for who in ("member", "admin", "maker"):
        sign_in(client, world["users"][who])
        page = client.get("/")
        resp = client.post("/merchant/till", data={"csrf_token": csrf(page), "key": "page-x", "amount": "1",
                                                   "code": "880000000000000000", "store": world["store"].public_id})
        assert resp.status_code == 403, who
        client.post("/logout", data={"csrf_token": csrf(page)})


# --- refunds from the till -------------------------------------------------------------------------

def refund_form(client, payment_id, *, amount, reason="退货", lang=None):
    page = client.get("/merchant/till" + (f"?lang={lang}" if lang else ""))
    body = text(page)
    match = re.search(rf'action="/merchant/payments/{payment_id}/refund".*?name="key" value="([^"]+)"', body, re.DOTALL)
    assert match, "no refund form"
    return client.post(f"/merchant/payments/{payment_id}/refund" + (f"?lang={lang}" if lang else ""),
                       data={"csrf_token": csrf(page), "key": match.group(1), "amount": amount, "reason": reason})


def test_the_owner_and_a_manager_refund_from_the_till(client, session, world):
    general = fund(session, world["card"], 10_000)
    pid = paid_by_code(client, world, 3_000)
    sign_in(client, world["users"]["manager"])
    till = text(client.get("/merchant/till"))
    assert f'action="/merchant/payments/{pid}/refund"' in till and 'value="30.00"' in till
    resp = refund_form(client, pid, amount="10.50", reason="少上一道菜")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/merchant/till")
    assert "已退还¥10.50" in text(client.get(resp.headers["Location"]))
    row = session.scalar(select(Refund).join(Payment, Payment.id == Refund.payment_id)
                         .where(Payment.merchant_id == world["shop"].id))
    assert (row.amount, row.reason) == (1_050, "少上一道菜") and balance(session, general) == 10_000 - 3_000 + 1_050
    too_much = refund_form(client, pid, amount="20", reason="整单退", lang="en")
    assert too_much.status_code == 422 and "At most ¥19.50 of this payment is left to refund." in text(too_much)
    assert 'value="20"' in text(too_much) and 'value="整单退"' in text(too_much)  # the form keeps what was typed
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})
    sign_in(client, world["users"]["owner"])
    assert refund_form(client, pid, amount="19.50").status_code == 302
    assert balance(session, general) == 10_000
    payment = session.scalar(select(Payment).where(Payment.public_id == pid).execution_options(populate_existing=True))
    assert payment.status.value == "refunded" and payment.refunded == 3_000
    assert f'action="/merchant/payments/{pid}/refund"' not in text(client.get("/merchant/till"))


def test_a_refund_form_sent_twice_refunds_once(client, session, world):
    general = fund(session, world["card"], 10_000)
    pid = paid_by_code(client, world, 3_000)
    sign_in(client, world["users"]["owner"])
    page = client.get("/merchant/till")
    key = re.search(rf'action="/merchant/payments/{pid}/refund".*?name="key" value="([^"]+)"', text(page), re.DOTALL)
    data = {"csrf_token": csrf(page), "key": key.group(1), "amount": "5", "reason": ""}
    client.post(f"/merchant/payments/{pid}/refund", data=data)
    client.post(f"/merchant/payments/{pid}/refund", data=data)
    assert refunds_count(session, world) == 1 and balance(session, general) == 7_500


def test_refunds_are_refused_to_cashiers_and_other_merchants(client, session, world):
    fund(session, world["card"], 10_000)
    pid = paid_by_code(client, world, 3_000)
    for who, status in (("cashier", 403), ("pharmacy_owner", 404), ("member", 403), ("admin", 403)):
        sign_in(client, world["users"][who])
        page = client.get("/")
        resp = client.post(f"/merchant/payments/{pid}/refund", data={"csrf_token": csrf(page), "key": "page-x",
                                                                     "amount": "1", "reason": ""})
        assert resp.status_code == status, who
        client.post("/logout", data={"csrf_token": csrf(page)})
    assert refunds_count(session, world) == 0


# --- offer usage -----------------------------------------------------------------------------------

def at(day: str, hour: int = 12) -> dt.datetime:
    """A time in Beijing, as UTC."""
    local = dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    return local.astimezone(dt.UTC)


@pytest.fixture
def usage_world(app, session, world):
    """Four payments by two members of two cities at two merchants, around a month's end (Beijing time), a
    partial refund, a full one, and a payment after the period."""
    program = funded_program(session, world["users"], world["tree"]["yc"], amount=100_000)
    start = at("2025-09-01")
    make_offer(session, merchant=world["shop"], kind="percent_off", value=1000, title="好味九折", starts_at=start)
    make_offer(session, merchant=world["pharmacy"], kind="amount_off", value=500, funding="union",
               program_id=program.public_id, title="药房立减5元", starts_at=start)
    fund(session, world["card"], 50_000)
    fund(session, world["other_card"], 50_000)
    codes = cards.PaymentCodes(app.extensions["kv"], b"k" * 32, ttl=60, per_minute=20)
    made = {}

    def pay(name, who, card, store, amount, when):
        req = service.PayRequest(store_id=store.public_id, amount=amount, card_id=card.public_id, pin=PIN)
        made[name], _ = service.pay(session, world["a"][who], req, codes=codes, pins=guard(app),
                                    max_amount=5_000_000, now=when)

    pay("p1", "member", world["card"], world["store"], 10_000, at("2025-10-28"))
    pay("p2", "member", world["card"], world["pharmacy_store"], 3_000, at("2025-11-01", 1))  # Oct 31 in UTC
    pay("p3", "other_member", world["other_card"], world["store"], 2_000, at("2025-11-10"))
    pay("p4", "other_member", world["other_card"], world["pharmacy_store"], 1_000, at("2025-11-12"))
    pay("later", "member", world["card"], world["store"], 5_000, at("2025-12-01", 0))
    service.refund(session, world["a"]["owner"], made["p1"].public_id, amount=4_500, now=at("2025-11-15"))
    service.refund(session, world["a"]["pharmacy_owner"], made["p4"].public_id, amount=500, now=at("2025-11-20"))
    return {**world, "program": program, "payments": made}


def rows(table) -> dict:
    return {r.label: (r.payments, r.redemptions, r.amount, r.discount, r.union_subsidy, r.charged, r.refunded)
            for r in table}


def test_usage_figures_add_up_payments_offers_and_refunds(session, usage_world):
    w = usage_world
    assert [(p.discount, p.union_share) for p in w["payments"].values()] == [(1_000, 0), (500, 500), (200, 0),
                                                                             (500, 500), (500, 0)]
    figures = service.usage_figures(session, since=at("2025-10-01", 0), until=at("2025-12-01", 0))
    assert {r.label: (r.redemptions, r.discount, r.union_subsidy, r.merchant_borne) for r in figures.offers} == {
        "好味九折": (2, 1_000 + 200 - 500, 0, 700),
        "药房立减5元": (2 - 1, 500 + 500 - 500, 500 + 500 - 500, 0),
    }
    assert [r.label for r in figures.offers] == ["好味九折", "药房立减5元"]
    assert rows(figures.merchants) == {
        "好味餐厅": (2, 2, 12_000, 1_200 - 500, 0, 10_800, 4_500),
        "仁心药房": (2, 1, 4_000, 1_000 - 500, 1_000 - 500, 3_000, 500),
    }
    assert rows(figures.unions) == {
        "电力公司工会": (2, 2, 13_000, 1_500 - 500, 500, 11_500, 4_500),
        "林场工会": (2, 1, 3_000, 700 - 500, 500 - 500, 2_300, 500),
    }
    assert [(r.key, r.payments, r.redemptions, r.amount, r.discount, r.union_subsidy, r.charged, r.refunded)
            for r in figures.months] == [
        ("2025-10", 1, 1, 10_000, 1_000, 0, 9_000, 0),
        ("2025-11", 3, 2, 6_000, 1_200 - 1_000, 1_000 - 500, 4_800, 5_000),
    ]
    t = figures.total
    assert (t.payments, t.redemptions, t.discount, t.union_subsidy, t.charged, t.refunded) == (4, 3, 1_200, 500,
                                                                                               13_800, 5_000)
    # The union's subsidy is what the program's budget gave, less what came back.
    assert balance(session, w["program"].budget_account) == 100_000 - t.union_subsidy


def test_usage_figures_keep_to_a_scoped_admins_subtree_and_to_the_period(session, usage_world):
    w = usage_world
    yinchuan = service.usage_figures(session, since=at("2025-10-01", 0), until=at("2025-12-01", 0),
                                     union_path=w["tree"]["yc"].path)
    assert [r.label for r in yinchuan.unions] == ["电力公司工会"]
    assert {r.label: (r.redemptions, r.discount, r.union_subsidy) for r in yinchuan.offers} == {
        "好味九折": (1, 1_000 - 500, 0), "药房立减5元": (1, 500, 500)}
    october = service.usage_figures(session, since=at("2025-10-01", 0), until=at("2025-11-01", 0))
    assert october.total.payments == 1 and october.total.refunded == 0 and [m.key for m in october.months] == [
        "2025-10"]
    december = service.usage_figures(session, since=at("2025-12-01", 0), until=at("2026-01-01", 0))
    assert (december.total.payments, december.total.discount) == (1, 500)


@pytest.mark.parametrize("role", [*Role, ANON], ids=lambda r: getattr(r, "value", r))
def test_the_usage_page_is_for_union_admins_finance_and_auditors(client, session, cipher, world, role):
    if role != ANON:
        sign_in(client, user_of(session, cipher, world, role))
    resp = client.get("/console/offer-usage")
    csv_resp = client.get("/console/offer-usage/offers.csv")
    if role == ANON:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next=")
        assert csv_resp.status_code == 302
    elif role in (Role.UNION_ADMIN, Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR):
        assert resp.status_code == 200 and csv_resp.status_code == 200
    else:
        assert resp.status_code == 403 and csv_resp.status_code == 403


@pytest.mark.parametrize("lang, words", [
    ("zh", ("优惠使用情况", "按优惠", "按月", "按商户", "按会员所属工会", "优惠金额", "工会补贴", "使用次数")),
    ("en", ("Offer usage", "By offer", "By month", "By merchant", "By the member's union", "Discount given",
            "Union subsidy", "Offers used")),
])
def test_the_usage_page_draws_the_figures_as_charts_and_tables(client, session, usage_world, lang, words):
    sign_in(client, usage_world["users"]["maker"])
    page = client.get(f"/console/offer-usage?from=2025-10-01&to=2025-11-30&lang={lang}")
    body = text(page)
    assert page.status_code == 200
    for word in words:
        assert word in body, word
    chart = body[body.index('id="offers-chart"'):]
    chart = chart[:chart.index("</figure>")]
    assert chart.count("<rect") == 4 and "好味九折" in chart and "¥7.00" in chart and "¥5.00" in chart
    line = body[body.index('id="months-chart"'):]
    line = line[:line.index("</figure>")]
    assert line.count("<polyline") == 2 and line.count("<circle") == 4
    assert 'data-value="1000"' in line and 'data-value="200"' in line
    assert "¥12.00" in body[body.index('id="total-discount"'):][:80]
    assert "¥5.00" in body[body.index('id="total-subsidy"'):][:80]
    assert "电力公司工会" in body and "林场工会" in body and "好味餐厅" in body and "仁心药房" in body


def test_a_scoped_admin_sees_only_their_unions_members(client, session, usage_world):
    sign_in(client, usage_world["users"]["admin"])
    body = text(client.get("/console/offer-usage?from=2025-10-01&to=2025-11-30"))
    assert "电力公司工会" in body and "林场工会" not in body and "银川市总工会" in body


def test_usage_tables_export_as_csv(client, session, usage_world):
    sign_in(client, usage_world["users"]["auditor"])
    resp = client.get("/console/offer-usage/merchants.csv?from=2025-10-01&to=2025-11-30")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert 'filename="offer-usage-merchants-20251001-20251130.csv"' in resp.headers["Content-Disposition"]
    lines = list(csv.reader(io.StringIO(resp.get_data(as_text=True).lstrip("\ufeff"))))
    assert lines[0] == ["merchant", "name", "payments", "redemptions", "amount", "discount", "union_subsidy",
                        "charged", "refunded", "currency"]
    assert lines[1] == [usage_world["shop"].public_id, "好味餐厅", "2", "2", "12000", "700", "0", "10800", "4500",
                        "CNY"]
    months = list(csv.reader(io.StringIO(client.get(
        "/console/offer-usage/months.csv?from=2025-10-01&to=2025-11-30").get_data(as_text=True).lstrip("\ufeff"))))
    assert [row[0] for row in months[1:]] == ["2025-10", "2025-11"]
    offers = client.get("/console/offer-usage/offers.csv?from=2025-10-01&to=2025-11-30").get_data(as_text=True)
    assert "好味九折,2,700,0,700,CNY" in offers


def test_the_usage_page_refuses_a_bad_period_politely(client, session, world):
    sign_in(client, world["users"]["auditor"])
    backwards = client.get("/console/offer-usage?from=2026-11-30&to=2026-10-01&lang=en")
    assert backwards.status_code == 200 and "The end of the period comes before its start." in text(backwards)
    long = client.get("/console/offer-usage?from=2020-01-01&to=2026-10-01&lang=en")
    assert long.status_code == 200 and "at most 36 months" in text(long)
    garbage = client.get("/console/offer-usage?from=yesterday&lang=en")
    assert garbage.status_code == 200 and "YYYY-MM-DD" in text(garbage)


def test_long_usage_tables_show_their_first_rows_and_point_to_the_csv(client, session, usage_world, monkeypatch):
    from payments.checkout import views

    monkeypatch.setattr(views, "USAGE_ROWS_ON_PAGE", 1)
    sign_in(client, usage_world["users"]["approver"])
    body = text(client.get("/console/offer-usage?from=2025-10-01&to=2025-11-30&lang=en"))
    merchants = body[body.index('id="by-merchant"'):body.index('id="by-union"')]
    assert merchants.count("<tr data-key=") == 1 and "The first 1 of 2 rows; the CSV file has them all." in merchants
    csv_text = client.get("/console/offer-usage/merchants.csv?from=2025-10-01&to=2025-11-30").get_data(as_text=True)
    assert "好味餐厅" in csv_text and "仁心药房" in csv_text
