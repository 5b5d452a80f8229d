"""The payout pages: finance's list with the exceptions first, approval and resolution, sending Stripe
payouts, the bank files (make, download, import the answer with per-line results), a merchant's own
payouts; who may see and do what, CSRF, accounts masked, in Chinese and in English."""

import csv
import io
import re

import pytest
from sqlalchemy import select

from core.auth import SYSTEM
from core.models import AuditEvent
from core.money import format_amount
from merchants.models import SettlementMethod
from payments.payouts import service
from payments.payouts.models import BankFile, ExceptionStatus, PayoutStatus
from tests.payouts.conftest import (
    ACCOUNT_NUMBER,
    TODAY,
    csrf,
    make_payout,
    make_stripe_merchant,
    row,
    sign_in,
    stripe_account,
)

ANON = "anonymous"


@pytest.fixture(autouse=True)
def today(monkeypatch):
    monkeypatch.setattr(service, "business_today", lambda: TODAY)


@pytest.fixture
def payouts(session, world):
    failed = make_payout(session, world["shop"], 4_400)
    service.mark_failed(session, SYSTEM, failed.public_id, code="account_closed", message="账户已销户")
    session.commit()
    return {"ready": make_payout(session, world["shop"], 12_000),
            "large": make_payout(session, world["other"], 6_000_000, created_by=world["users"]["approver"],
                                 approval_above=5_000_000),
            "failed": failed}


def text(resp) -> str:
    return resp.get_data(as_text=True)


def post(client, url, data=None, **kw):
    return client.post(url, data={"csrf_token": csrf(client.get("/")), **(data or {})}, **kw)


PAGES = [
    ("list", lambda p: "/finance/payouts", {"maker", "approver", "auditor"}),
    ("list filtered", lambda p: "/finance/payouts?status=failed", {"maker", "approver", "auditor"}),
    ("one", lambda p: f"/finance/payouts/{p['ready'].public_id}", {"maker", "approver", "auditor"}),
    ("bank files", lambda p: "/finance/payout-bank-files", {"maker", "approver"}),
    ("merchant", lambda p: "/merchant/payouts", {"owner", "manager"}),
]


@pytest.mark.parametrize("name, url, allowed", PAGES, ids=[p[0] for p in PAGES])
@pytest.mark.parametrize("who", [ANON, "maker", "approver", "auditor", "owner", "manager", "cashier", "admin"])
def test_who_sees_each_page(client, world, payouts, name, url, allowed, who):
    if who != ANON:
        sign_in(client, world["users"][who])
    resp = client.get(url(payouts))
    if who == ANON:
        assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    else:
        assert resp.status_code == (200 if who in allowed else 403), (name, who)


def test_the_list_shows_exceptions_first_and_highlighted_with_masked_accounts(client, world, payouts):
    sign_in(client, world["users"]["approver2"])
    page = text(client.get("/finance/payouts?lang=en"))
    exceptions = page.index('id="exceptions"')
    assert exceptions < page.index('id="payouts"')
    block = page[exceptions:page.index("</section>", exceptions)]
    assert payouts["failed"].public_id in block and 'class="exception-open"' in block
    assert "账户已销户" in block and "Mark resolved" in block
    assert payouts["ready"].public_id not in block
    assert "************2233" in page and ACCOUNT_NUMBER not in page
    # An approver who did not settle it sees the approve button of the large one.
    row_html = page[page.index(f'id="payout-{payouts["large"].public_id}"'):]
    assert "Approve ¥60,000.00" in row_html[:row_html.index("</tr>")]
    chinese = client.get("/finance/payouts?lang=zh")
    assert chinese.status_code == 200 and 'lang="zh-CN"' in text(chinese)


def test_an_approver_approves_from_the_list_and_the_settler_is_refused(client, session, world, payouts):
    url = f"/finance/payouts/{payouts['large'].public_id}/approve"
    sign_in(client, world["users"]["maker"])
    assert post(client, url).status_code == 403
    sign_in(client, world["users"]["approver"])
    listed = text(client.get("/finance/payouts"))
    assert f'action="{url}"' not in listed  # no button for the person who settled it
    own_page = text(client.get(f"/finance/payouts/{payouts['large'].public_id}?lang=en"))
    assert 'id="not-yours"' in own_page and f'action="{url}"' not in own_page
    refused = post(client, url + "?lang=en", {"back": "list"}, follow_redirects=True)
    assert "another approver must approve it" in text(refused)
    assert row(session, payouts["large"]).status == PayoutStatus.PENDING_APPROVAL
    sign_in(client, world["users"]["approver2"])
    done = post(client, url, {"back": "list"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/finance/payouts")
    assert row(session, payouts["large"]).status == PayoutStatus.READY


def test_a_form_without_the_csrf_token_is_refused(client, session, world, payouts):
    sign_in(client, world["users"]["approver2"])
    resp = client.post(f"/finance/payouts/{payouts['large'].public_id}/approve")
    assert resp.status_code == 400
    assert row(session, payouts["large"]).status == PayoutStatus.PENDING_APPROVAL


def test_finance_resolves_an_exception_with_a_note(client, session, world, payouts):
    url = f"/finance/payouts/{payouts['failed'].public_id}/resolve"
    sign_in(client, world["users"]["auditor"])
    assert post(client, url, {"note": "x"}).status_code == 403
    sign_in(client, world["users"]["maker"])
    empty = post(client, url + "?lang=en", {"note": "  "}, follow_redirects=True)
    assert "Say what was done about the failed payout" in text(empty)
    assert row(session, payouts["failed"]).exception_status == ExceptionStatus.OPEN
    done = post(client, url, {"note": "商户已提供新账户"})
    assert done.status_code == 302
    assert done.headers["Location"].endswith(f"/finance/payouts/{payouts['failed'].public_id}")
    current = row(session, payouts["failed"])
    assert (current.exception_status, current.exception_note) == (ExceptionStatus.RESOLVED, "商户已提供新账户")
    page = text(client.get(f"/finance/payouts/{payouts['failed'].public_id}?lang=en"))
    assert 'id="resolution"' in page and "商户已提供新账户" in page and "payout.exception_resolved" in page
    assert f'id="exception-{payouts["failed"].public_id}"' not in text(client.get("/finance/payouts"))


def test_the_payout_page_shows_where_the_money_went(client, world, payouts):
    sign_in(client, world["users"]["auditor"])
    page = text(client.get(f"/finance/payouts/{payouts['failed'].public_id}?lang=en"))
    assert "账户已销户" in page and payouts["failed"].returned_transaction_id in page
    assert "************2233" in page and ACCOUNT_NUMBER not in page
    assert "payout.failed" in page  # its history
    assert "Mark resolved" not in page  # auditors read only
    assert client.get("/finance/payouts/po_unknown").status_code == 404


def test_send_due_stripe_payouts_from_the_page(client, session, cipher, app, world, stripe_server,
                                               stripe_app_config):
    payout = make_payout(session, make_stripe_merchant(session, cipher, stripe_account(app, stripe_server)), 800)
    broken = make_payout(session, make_stripe_merchant(session, cipher, None, name="无账户商户"), 300)
    sign_in(client, world["users"]["auditor"])
    assert 'id="send-now"' not in text(client.get("/finance/payouts"))
    assert post(client, "/finance/payouts/send").status_code == 403
    sign_in(client, world["users"]["maker"])
    page = text(client.get("/finance/payouts?lang=en"))
    due = service.due_summary(session, SettlementMethod.STRIPE, today=TODAY)
    assert due[0] >= 2 and f"{due[0]} ready and due, {format_amount(due[1])} in all." in page
    resp = post(client, "/finance/payouts/send?lang=en", follow_redirects=True)
    assert "1 Stripe payouts sent; 1 not sent" in text(resp)
    assert row(session, payout).status == PayoutStatus.SUBMITTED
    assert row(session, broken).status == PayoutStatus.READY
    assert "The merchant has no Stripe account to pay into." in text(resp)


def test_bank_files_are_made_downloaded_and_answered_from_the_pages(client, session, world, payouts):
    sign_in(client, world["users"]["approver"])
    listing = text(client.get("/finance/payout-bank-files?lang=en"))
    due = service.due_summary(session, SettlementMethod.BANK, today=TODAY)
    assert due[0] >= 1 and f"{due[0]} bank payouts ready and due, {format_amount(due[1])} in all." in listing
    assert 'id="make-file"' not in listing
    assert post(client, "/finance/payout-bank-files").status_code == 403

    sign_in(client, world["users"]["maker"])
    made = post(client, "/finance/payout-bank-files")
    assert made.status_code == 302
    bank_file = session.scalar(select(BankFile).where(BankFile.created_by_id == world["users"]["maker"].id))
    assert made.headers["Location"].endswith(f"/finance/payout-bank-files/{bank_file.public_id}")
    page = text(client.get(made.headers["Location"] + "?lang=en"))
    assert payouts["ready"].public_id in page and "************2233" in page and ACCOUNT_NUMBER not in page
    assert bank_file.sha256 in page

    download = client.get(f"/finance/payout-bank-files/{bank_file.public_id}/file.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert rows[1] == ["好味餐厅", "宁夏银行", ACCOUNT_NUMBER, "12000", "CNY", payouts["ready"].public_id]
    assert session.scalar(select(AuditEvent.actor_label).where(
        AuditEvent.action == "payout_bank_file.downloaded", AuditEvent.object_id == bank_file.public_id)) \
        == world["users"]["maker"].username

    again = post(client, "/finance/payout-bank-files?lang=en", follow_redirects=True)
    assert "No bank payout can go into a file now" in text(again)

    url = f"/finance/payout-bank-files/{bank_file.public_id}/statuses?lang=en"
    answer = f"reference,status,reason\n{payouts['ready'].public_id},paid,\npo_stranger,paid,\n"
    resp = post(client, url, {"file": (io.BytesIO(answer.encode()), "answer.csv")},
                content_type="multipart/form-data")
    assert resp.status_code == 200
    results = text(resp)
    assert re.search(r'data-line="2" data-outcome="paid"', results)
    assert re.search(r'data-line="3" data-outcome="error"', results)
    assert "No payout of this bank file has this reference." in results
    assert row(session, payouts["ready"]).status == PayoutStatus.PAID

    wrong = post(client, url, {"file": (io.BytesIO(b"a,b\n1,2\n"), "x.csv")}, content_type="multipart/form-data")
    assert wrong.status_code == 422 and "UTF-8 CSV with the header reference,status,reason" in text(wrong)
    none = post(client, url, {}, content_type="multipart/form-data")
    assert none.status_code == 422 and "Choose the bank&#39;s answer" in text(none)
    sign_in(client, world["users"]["auditor"])
    assert client.get(f"/finance/payout-bank-files/{bank_file.public_id}").status_code == 403


def test_a_merchant_sees_its_own_payouts_with_the_account_masked(client, world, payouts):
    sign_in(client, world["users"]["manager"])
    page = text(client.get("/merchant/payouts?lang=en"))
    assert payouts["ready"].public_id in page and payouts["failed"].public_id in page
    assert payouts["large"].public_id not in page  # the other merchant's
    assert "************2233" in page and ACCOUNT_NUMBER not in page
    assert "账户已销户" in page and "back on your balance" in page
    filtered = text(client.get("/merchant/payouts?status=failed"))
    assert payouts["failed"].public_id in filtered and payouts["ready"].public_id not in filtered
    sign_in(client, world["users"]["other_owner"])
    theirs = text(client.get("/merchant/payouts"))
    assert payouts["large"].public_id in theirs and payouts["ready"].public_id not in theirs
    assert client.get(f"/finance/payouts/{payouts['large'].public_id}").status_code == 403


def test_the_pages_read_at_phone_width(client, world, payouts):
    sign_in(client, world["users"]["maker"])
    for url in ("/finance/payouts", f"/finance/payouts/{payouts['failed'].public_id}", "/finance/payout-bank-files"):
        page = text(client.get(url))
        assert 'name="viewport"' in page
        assert all('class="responsive"' in table for table in re.findall(r"<table[^>]*>", page)), url
