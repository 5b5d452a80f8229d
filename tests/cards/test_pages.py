"""The card pages: the member's card, payment code, statement and PIN; the union's card console and
bulk issuance; who may see and do what."""

import datetime as dt
import re

from sqlalchemy import func, select

from cards import service
from cards.api import payment_codes
from cards.models import Card, CardIssuanceRun, CardStatus, IssuanceStatus
from cards.numbers import group_digits, looks_like_payment_code
from core.db import db, utcnow
from core.models import AuditEvent
from members.models import Member
from payments import ledger
from payments.ledger import credit, debit
from tests import factories as f
from tests.cards.conftest import FUNDING, active_card, fund, issue

GOOD_PIN = "583920"


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, world, who):
    page = client.get("/login")
    resp = client.post("/login", data={"username": world["users"][who].username, "password": f.PASSWORD,
                                       "csrf_token": csrf(page)})
    assert resp.status_code == 302, resp.get_data(as_text=True)


def post(client, url, **data):
    """POST a page form with the session's CSRF token."""
    return client.post(url, data={"csrf_token": csrf(client.get("/")), **data})


def number_of(client, world, card_id) -> str:
    return client.get(f"/api/v1/cards/{card_id}/number", headers=world["h"]["owner"]).get_json()["number"]


def card_row(session, card_id) -> Card:
    return session.scalar(select(Card).where(Card.public_id == card_id).execution_options(populate_existing=True))


def book(session, card_id, kind, amount, key):
    """Post a line of a given kind to the card's general purse (positive in, negative out)."""
    ledger.get_or_create_account(session, FUNDING, normal_side="debit", allow_negative=True)
    purse = service.general_account(card_id)
    legs = [debit(FUNDING, amount), credit(purse, amount)] if amount > 0 else [debit(purse, -amount),
                                                                            credit(FUNDING, -amount)]
    ledger.post(session, kind=kind, idempotency_key=key, entries=legs)
    session.commit()


# --- the member's pages ----------------------------------------------------------------------------

def test_a_member_without_a_card_is_told_to_ask_the_union(client, world):
    sign_in(client, world, "owner")
    home = client.get("/").get_data(as_text=True)
    tiles = home[home.index('class="tiles"'):]
    assert tiles.index("/card/") < tiles.index("/merchants/")  # My card comes first
    assert 'href="/card/"' in home[:home.index("<main>")]  # and in the top bar
    page = client.get("/card/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "您还没有会员卡" in text and "工会" in text
    code = client.get("/card/code")
    assert code.status_code == 404 and "您还没有会员卡" in code.get_data(as_text=True)
    assert client.get("/card/pin").headers["Location"].endswith("/card/")


def test_my_card_shows_the_masked_number_balances_and_reveals_the_number_only_on_request(client, session, world):
    card = active_card(client, world)
    fund(session, card["id"], 12345)
    fund(session, card["id"], 50000, program_id="prg_hardship", categories=["pharmacy", "supermarket"],
         expires_at=utcnow() + dt.timedelta(days=10))
    fund(session, card["id"], 2000, program_id="prg_culture", categories=["culture_sport"],
         expires_at=utcnow() + dt.timedelta(days=200))
    number = number_of(client, world, card["id"])
    sign_in(client, world, "owner")
    page = client.get("/card/")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert group_digits(card["number_masked"]) in text
    assert number not in text and group_digits(number) not in text
    assert "¥123.45" in text and "¥500.00" in text and "¥20.00" in text and "¥643.45" in text  # the total
    assert "药店" in text and "超市" in text and "文体" in text and "任意合作商户" in text
    assert text.count('class="purse restricted expiring"') == 1 and "即将到期" in text
    assert "正常使用" in text and "付款码" in text and "挂失" in text and "冻结" in text
    shown = select(func.count(AuditEvent.id)).where(AuditEvent.action == "card.number_shown",
                                                    AuditEvent.object_id == card["id"])
    assert session.scalar(shown) == 1  # the API call above

    revealed = post(client, f"/card/{card['id']}/number")
    assert revealed.status_code == 200 and revealed.headers["Cache-Control"] == "no-store"
    assert group_digits(number) in revealed.get_data(as_text=True)
    as_json = client.post(f"/card/{card['id']}/number", headers={"X-CSRFToken": csrf(client.get("/")),
                                                                 "Accept": "application/json"})
    assert as_json.get_json() == {"number": group_digits(number)}
    assert session.scalar(shown) == 3
    assert client.post(f"/card/{card['id']}/number").status_code == 400  # no CSRF token
    assert group_digits(number) not in client.get("/card/").get_data(as_text=True)


def test_the_card_page_in_english(client, session, world):
    card = active_card(client, world)
    fund(session, card["id"], 800, program_id="prg_x", categories=["dining"],
         expires_at=utcnow() + dt.timedelta(days=3))
    sign_in(client, world, "owner")
    text = client.get("/card/?lang=en").get_data(as_text=True)
    assert "My card" in text and "Show full number" in text and "expires soon" in text and "In use" in text
    assert "我的会员卡" not in text


def test_the_member_activates_freezes_unfreezes_reports_lost_and_replaces(client, session, world):
    card = issue(client, world)
    fund(session, card["id"], 3000)
    sign_in(client, world, "owner")
    page = client.get("/card/").get_data(as_text=True)
    assert "待激活" in page and f"/card/{card['id']}/activate" in page and "/card/code" not in page
    assert post(client, f"/card/{card['id']}/activate").headers["Location"].endswith("/card/")
    page = client.get("/card/").get_data(as_text=True)
    assert "可以用它付款了" in page and card_row(session, card["id"]).status == CardStatus.ACTIVE

    post(client, f"/card/{card['id']}/freeze")
    assert card_row(session, card["id"]).status == CardStatus.FROZEN
    frozen = client.get("/card/").get_data(as_text=True)
    assert "已冻结" in frozen and f"/card/{card['id']}/unfreeze" in frozen
    no_code = client.get("/card/code")
    assert no_code.status_code == 409 and "该卡已冻结" in no_code.get_data(as_text=True)
    post(client, f"/card/{card['id']}/unfreeze")
    assert card_row(session, card["id"]).status == CardStatus.ACTIVE
    # Unfreezing an active card is refused with the reason, not an error page.
    again = post(client, f"/card/{card['id']}/unfreeze")
    assert again.status_code == 302 and "当前状态不允许" in client.get("/card/").get_data(as_text=True)

    confirm = client.get(f"/card/{card['id']}/report-lost")
    assert confirm.status_code == 200 and "无法撤销" in confirm.get_data(as_text=True)
    assert card_row(session, card["id"]).status == CardStatus.ACTIVE  # asking is not reporting
    assert post(client, f"/card/{card['id']}/report-lost").status_code == 302
    assert card_row(session, card["id"]).status == CardStatus.LOST
    lost = client.get("/card/").get_data(as_text=True)
    assert "已挂失" in lost and "补办新卡" in lost and f"/card/{card['id']}/freeze" not in lost

    post(client, f"/card/{card['id']}/replace")
    new = service.live_card_of(session, world["own"].id)
    assert new.public_id != card["id"] and new.status == CardStatus.ISSUED
    page = client.get("/card/").get_data(as_text=True)
    assert "¥30.00" in page and group_digits(new.number_masked) in page
    assert "以前的卡" in page and f"/card/transactions?card={card['id']}" in page
    assert client.get(f"/card/transactions?card={card['id']}").status_code == 200


def test_a_card_frozen_by_the_union_is_not_unfrozen_by_the_member(client, world):
    card = active_card(client, world)
    client.post(f"/api/v1/cards/{card['id']}/freeze", headers=world["h"]["admin"])
    sign_in(client, world, "owner")
    page = client.get("/card/").get_data(as_text=True)
    assert "工会冻结了这张卡" in page and f"/card/{card['id']}/unfreeze" not in page
    post(client, f"/card/{card['id']}/unfreeze")
    assert "请联系工会解冻" in client.get("/card/").get_data(as_text=True)


def test_the_payment_code_page_shows_a_live_code_and_refreshes_it(client, session, world, app):
    card = active_card(client, world)
    sign_in(client, world, "owner")
    page = client.get("/card/code")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    digits = re.search(r'id="digits">([0-9 ]+)<', text).group(1)
    code = digits.replace(" ", "")
    assert looks_like_payment_code(code) and digits == group_digits(code)
    assert "<svg" in text and 'data-expires-in="60"' in text and "window.refreshPaymentCode" in text
    assert '<noscript><meta http-equiv="refresh" content="50">' in text
    with app.app_context():
        assert payment_codes().peek(card_row(db.session, card["id"]), code)

    token = csrf(page)
    fresh = client.post("/card/code", headers={"X-CSRFToken": token})
    body = fresh.get_json()
    assert fresh.status_code == 200 and set(body) == {"code", "grouped", "svg", "expires_in", "refresh_in"}
    assert body["code"] != code and body["grouped"] == group_digits(body["code"]) and body["expires_in"] == 60
    assert body["svg"].startswith("<svg") and body["refresh_in"] == 50
    assert client.post("/card/code").status_code == 400  # the JSON refresh needs the CSRF header too
    # The code from the page is a real one: a till can take it once.
    with app.app_context():
        assert payment_codes().redeem(db.session, code, consumer="till").public_id == card["id"]


def test_the_payment_code_page_says_why_there_is_no_code(client, session, world, app, monkeypatch):
    card = issue(client, world)
    sign_in(client, world, "owner")
    inactive = client.get("/card/code")
    assert inactive.status_code == 409 and "尚未激活" in inactive.get_data(as_text=True)
    assert "<svg" not in inactive.get_data(as_text=True)
    client.post(f"/api/v1/cards/{card['id']}/activate", headers=world["h"]["owner"])
    monkeypatch.setitem(app.config, "PAYMENT_CODES_PER_MINUTE", 1)
    assert client.get("/card/code").status_code == 200
    limited = client.post("/card/code", headers={"X-CSRFToken": csrf(client.get("/"))})
    assert limited.status_code == 429 and "一分钟内" in limited.get_json()["message"]
    assert client.get("/card/code?lang=en").status_code == 429


def test_the_statement_pages_by_cursor_with_signed_amounts_and_translated_kinds(client, session, world):
    card = active_card(client, world)
    for i in range(23):
        book(session, card["id"], "top_up", 100 + i, key=f"top:{i}")
    book(session, card["id"], "card_payment", -550, key="pay:1")
    book(session, card["id"], "stock_bonus", 7, key="odd:1")
    sign_in(client, world, "owner")
    first = client.get("/card/transactions").get_data(as_text=True)
    assert first.count('class="statement-line"') == 20
    assert first.index("stock_bonus") < first.index("消费") < first.index("充值")  # newest first; unknown kinds raw
    assert "-¥5.50" in first and 'class="amount out"' in first and "+¥1.22" in first and 'class="amount in"' in first
    older = re.search(r'id="older" href="\?([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(f"/card/transactions?{older}").get_data(as_text=True)
    assert second.count('class="statement-line"') == 5 and 'id="older"' not in second
    assert "+¥1.00" in second
    assert "Top-up" in client.get("/card/transactions?lang=en").get_data(as_text=True)


def test_the_pin_form_refuses_weak_pins_with_the_reason_and_needs_the_current_one(client, session, world):
    card = active_card(client, world)
    sign_in(client, world, "owner")
    form = client.get("/card/pin").get_data(as_text=True)
    for attr in ('type="password"', 'inputmode="numeric"', 'autocomplete="off"', 'maxlength="6"'):
        assert attr in form
    weak = post(client, "/card/pin", pin="123456", pin_again="123456")
    assert weak.status_code == 422 and "太容易被猜到" in weak.get_data(as_text=True)
    differ = post(client, "/card/pin", pin=GOOD_PIN, pin_again="583921")
    assert differ.status_code == 422 and "两次输入的新密码不一致" in differ.get_data(as_text=True)
    assert card_row(session, card["id"]).pin_hash is None
    assert post(client, "/card/pin", pin=GOOD_PIN, pin_again=GOOD_PIN).status_code == 302
    assert card_row(session, card["id"]).pin_hash.startswith("$argon2id$")

    change = client.get("/card/pin").get_data(as_text=True)
    assert 'name="current_pin"' in change and "修改支付密码" in change
    missing = post(client, "/card/pin", pin="274816", pin_again="274816")
    assert missing.status_code == 422 and "请输入当前支付密码" in missing.get_data(as_text=True)
    wrong = post(client, "/card/pin", current_pin="111112", pin="274816", pin_again="274816")
    assert wrong.status_code == 422 and "还可尝试 4 次" in wrong.get_data(as_text=True)
    for _ in range(4):
        last = post(client, "/card/pin", current_pin="111112", pin="274816", pin_again="274816")
    assert last.status_code == 429 and "锁定" in last.get_data(as_text=True)
    assert post(client, "/card/pin", current_pin=GOOD_PIN, pin="274816", pin_again="274816").status_code == 429


def test_another_member_cannot_see_or_act_on_the_card(client, session, world):
    card = active_card(client, world)
    sign_in(client, world, "other")
    for url in (f"/card/{card['id']}/freeze", f"/card/{card['id']}/report-lost", f"/card/{card['id']}/number",
                f"/card/{card['id']}/activate", f"/card/{card['id']}/replace"):
        assert post(client, url).status_code == 404, url
    assert client.get(f"/card/{card['id']}/report-lost").status_code == 404
    assert client.get(f"/card/transactions?card={card['id']}").status_code == 404
    assert card_row(session, card["id"]).status == CardStatus.ACTIVE
    assert card["number_masked"] not in client.get("/card/").get_data(as_text=True)


def test_staff_cannot_use_the_member_pages(client, world):
    card = active_card(client, world)
    sign_in(client, world, "admin")
    assert client.get("/card/").status_code == 403
    assert post(client, f"/card/{card['id']}/freeze").status_code == 403


# --- the union's console ---------------------------------------------------------------------------

def test_an_admin_issues_and_manages_a_card_on_the_member_page(client, session, world):
    own = world["own"]
    sign_in(client, world, "admin")
    detail = client.get(f"/console/members/{own.public_id}").get_data(as_text=True)
    assert 'id="member-cards"' in detail and "尚未发卡" in detail and 'id="issue-card"' in detail
    assert post(client, "/console/cards/issue", member_id=own.public_id).headers["Location"].endswith(own.public_id)
    card = service.live_card_of(session, own.id)
    detail = client.get(f"/console/members/{own.public_id}").get_data(as_text=True)
    assert group_digits(card.number_masked) in detail and "待激活" in detail and 'id="issue-card"' not in detail
    again = post(client, "/console/cards/issue", member_id=own.public_id)
    assert again.status_code == 302 and "该会员已有会员卡" in client.get(again.headers["Location"]).get_data(
        as_text=True)

    client.post(f"/api/v1/cards/{card.public_id}/activate", headers=world["h"]["owner"])
    fund(session, card.public_id, 4200)
    post(client, f"/console/cards/{card.public_id}/freeze")
    assert card_row(session, card.public_id).frozen_by_staff
    assert "由工会冻结" in client.get(f"/console/members/{own.public_id}").get_data(as_text=True)
    post(client, f"/console/cards/{card.public_id}/unfreeze")
    assert card_row(session, card.public_id).status == CardStatus.ACTIVE
    refused = post(client, f"/console/cards/{card.public_id}/cancel")
    assert "卡内还有余额" in client.get(refused.headers["Location"]).get_data(as_text=True)
    post(client, f"/console/cards/{card.public_id}/report-lost")
    assert card_row(session, card.public_id).status == CardStatus.LOST
    post(client, f"/console/cards/{card.public_id}/replace")
    new = service.live_card_of(session, own.id)
    assert new.public_id != card.public_id
    detail = client.get(f"/console/members/{own.public_id}").get_data(as_text=True)
    assert "¥42.00" in detail and "已换卡" in detail and group_digits(new.number_masked) in detail
    post(client, f"/console/cards/{card.public_id}/cancel")  # a replaced card cannot be cancelled
    assert card_row(session, card.public_id).status == CardStatus.REPLACED


def test_an_admin_of_another_union_gets_404_and_an_auditor_only_reads(client, session, world):
    card = active_card(client, world)
    own = world["own"]
    sign_in(client, world, "gy_admin")
    for action in ("freeze", "unfreeze", "report-lost", "cancel", "replace"):
        assert post(client, f"/console/cards/{card['id']}/{action}").status_code == 404, action
    assert post(client, "/console/cards/issue", member_id=own.public_id).status_code == 404
    assert client.get(f"/console/members/{own.public_id}").status_code == 404
    assert card_row(session, card["id"]).status == CardStatus.ACTIVE
    client.post("/logout", data={"csrf_token": csrf(client.get("/"))})

    sign_in(client, world, "auditor")
    detail = client.get(f"/console/members/{own.public_id}").get_data(as_text=True)
    assert group_digits(card["number_masked"]) in detail and "正常使用" in detail
    assert f"/console/cards/{card['id']}" not in detail and 'id="issue-card"' not in detail
    for action in ("freeze", "report-lost", "cancel", "replace"):
        assert post(client, f"/console/cards/{card['id']}/{action}").status_code == 403
    assert post(client, "/console/cards/issue", member_id=own.public_id).status_code == 403
    assert client.get("/console/cards/issuance").status_code == 200
    union = world["tree"]["yc_base"].public_id
    preview = client.get(f"/console/cards/issuance?union_id={union}").get_data(as_text=True)
    assert 'id="eligible"' in preview and 'id="start"' not in preview
    assert post(client, "/console/cards/issuance", union_id=union).status_code == 403
    assert card_row(session, card["id"]).status == CardStatus.ACTIVE


def test_bulk_issuance_issues_cards_for_a_small_union_and_shows_the_counts(client, session, cipher, world):
    base = world["tree"]["yc_base"]
    for i in range(3):
        f.member(session, cipher, base, f"批量{i}")
    issue(client, world)  # world["own"] already has one
    sign_in(client, world, "admin")
    form = client.get("/console/cards/issuance").get_data(as_text=True)
    assert base.public_id in form and world["tree"]["gy_base"].public_id not in form
    preview = client.get(f"/console/cards/issuance?union_id={base.public_id}").get_data(as_text=True)
    assert "尚无会员卡的在册会员：3 人" in preview
    assert client.get(f"/console/cards/issuance?union_id={world['tree']['gy_base'].public_id}").status_code == 404
    started = post(client, "/console/cards/issuance", union_id=base.public_id)
    assert started.status_code == 302
    run_page = client.get(started.headers["Location"]).get_data(as_text=True)
    assert "<progress" in run_page and 'id="issued">3<' in run_page and "已完成" in run_page
    progress = client.get(started.headers["Location"] + "/progress").get_json()
    assert progress == {"status": "completed", "total": 3, "processed": 3, "issued": 3, "skipped": 0,
                        "stalled": False}
    assert 'id="resume"' not in run_page
    again = client.get(f"/console/cards/issuance?union_id={base.public_id}").get_data(as_text=True)
    assert "尚无会员卡的在册会员：0 人" in again and 'id="start"' not in again


def test_a_large_run_is_queued_and_polled(client, session, cipher, world, app, monkeypatch):
    for i in range(2):
        f.member(session, cipher, world["tree"]["xq"], f"排队{i}")
    monkeypatch.setitem(app.config, "CARD_ISSUANCE_INLINE", 0)
    sign_in(client, world, "admin")
    started = post(client, "/console/cards/issuance", union_id=world["tree"]["yc"].public_id)
    progress = client.get(started.headers["Location"] + "/progress").get_json()
    assert progress["status"] == "completed" and progress["issued"] == 3  # the jobs run inline in tests


def test_a_run_that_stops_inline_shows_resume_and_goes_on(client, session, cipher, world, monkeypatch):
    base = world["tree"]["yc_base"]
    for i in range(4):
        f.member(session, cipher, base, f"续发{i}")
    real = service._issue_chunk

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(service, "_issue_chunk", broken)
    sign_in(client, world, "admin")
    started = post(client, "/console/cards/issuance", union_id=base.public_id)
    assert started.status_code == 302
    page = client.get(started.headers["Location"]).get_data(as_text=True)
    assert "批次中途停止" in page and 'id="resume"' in page and 'data-stalled="yes"' in page
    run_id = started.headers["Location"].rsplit("/", 1)[1]
    run = session.scalar(select(CardIssuanceRun).where(CardIssuanceRun.public_id == run_id)
                         .execution_options(populate_existing=True))
    assert run.status == IssuanceStatus.FAILED and run.processed == 0
    monkeypatch.setattr(service, "_issue_chunk", real)
    assert post(client, f"/console/cards/issuance/{run.public_id}/resume").status_code == 302
    done = client.get(f"/console/cards/issuance/{run.public_id}/progress").get_json()
    assert done["status"] == "completed" and done["issued"] == 5 and done["stalled"] is False
    assert session.scalar(select(func.count(Card.id)).join(Member, Card.member_id == Member.id)
                          .where(Member.union_id == base.id)) == 5
    not_stalled = post(client, f"/console/cards/issuance/{run.public_id}/resume")
    assert "没有停止" in client.get(not_stalled.headers["Location"]).get_data(as_text=True)
