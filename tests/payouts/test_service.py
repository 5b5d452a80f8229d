"""Payout use cases on the real database: four-eyes approval, Stripe Connect against the Stripe-shaped test
server, the bank transfer file and the bank's answer, failures given back to the merchant's payable
before and after payment, exceptions, and who sees which payout. The books balance after each."""

import csv
import io

import pytest
from sqlalchemy import select

from core.auth import SYSTEM, Actor
from core.errors import Conflict, Forbidden, NotFound, RuleViolation, ValidationFailed
from core.models import AuditEvent, Role
from payments import accounts
from payments.payouts import bankfile, service
from payments.payouts.models import BankFile, ExceptionStatus, PayoutStatus
from payments.payouts.provider import SendFailed, payout_provider
from payments.payouts.stripe import DisabledStripePayouts, StripePayouts
from tests.payouts.conftest import (
    ACCOUNT_NUMBER,
    TODAY,
    assert_books_balance,
    count,
    make_payout,
    make_stripe_merchant,
    posted,
    row,
    stripe_account,
    txns,
)


def actions(session, payout) -> list[str]:
    return list(session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == payout.public_id)
                                .order_by(AuditEvent.id)))


def answer(*lines, header="reference,status,reason") -> io.BytesIO:
    return io.BytesIO(("\n".join([header, *lines]) + "\n").encode())


def file_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"))))


# --- approval: four eyes ---------------------------------------------------------------------------

def test_a_large_payout_waits_for_an_approver_who_did_not_settle_it(session, world):
    u, a = world["users"], world["a"]
    payout = make_payout(session, world["shop"], 6_000_000, created_by=u["approver"], approval_above=5_000_000)
    assert (payout.status, payout.requires_approval) == (PayoutStatus.PENDING_APPROVAL, True)

    with pytest.raises(Forbidden) as maker:
        service.approve(session, a["maker"], payout.public_id)
    assert maker.value.code == "not_an_approver"
    with pytest.raises(Forbidden) as same:
        service.approve(session, a["approver"], payout.public_id)
    assert same.value.code == "same_person"
    assert row(session, payout).status == PayoutStatus.PENDING_APPROVAL

    approved = service.approve(session, a["approver2"], payout.public_id)
    assert (approved.status, approved.approved_by_id) == (PayoutStatus.READY, u["approver2"].id)
    assert approved.approved_at is not None
    # Idempotent: approving again (even by the settler) changes nothing.
    again = service.approve(session, a["approver"], payout.public_id)
    assert (again.status, again.approved_by_id) == (PayoutStatus.READY, u["approver2"].id)
    assert actions(session, payout) == ["payout.approved"]


def test_a_payout_that_does_not_wait_for_approval_cannot_be_approved(session, world):
    payout = make_payout(session, world["shop"], 10_000)
    with pytest.raises(Conflict) as exc:
        service.approve(session, world["a"]["approver"], payout.public_id)
    assert exc.value.code == "payout_not_pending_approval"
    with pytest.raises(NotFound):
        service.approve(session, world["a"]["approver"], "po_doesnotexist")


def test_a_payout_waiting_for_approval_is_neither_sent_nor_put_in_a_bank_file(session, world, cipher):
    payout = make_payout(session, world["shop"], 6_000_000, approval_above=5_000_000)
    with pytest.raises(RuleViolation) as exc:
        service.create_bank_file(session, world["a"]["maker"], today=TODAY, cipher=cipher)
    assert exc.value.code == "no_payouts_due"
    with pytest.raises(Conflict):
        service.mark_paid(session, SYSTEM, payout.public_id)
    with pytest.raises(Conflict):
        service.mark_failed(session, SYSTEM, payout.public_id, code="x", message="y")
    session.rollback()
    assert row(session, payout).status == PayoutStatus.PENDING_APPROVAL


# --- the bank transfer file ------------------------------------------------------------------------

def test_a_bank_file_takes_every_ready_due_bank_payout_with_the_full_account_number(session, world, cipher):
    shop, other = world["shop"], world["other"]
    in_transit = posted(session, accounts.IN_TRANSIT)
    first = make_payout(session, shop, 12_345)
    second = make_payout(session, other, 500, due_on=TODAY.replace(day=20))
    later = make_payout(session, shop, 700, due_on=TODAY.replace(day=27))
    large = make_payout(session, other, 6_000_000, approval_above=5_000_000)

    bank_file = service.create_bank_file(session, world["a"]["maker"], today=TODAY, cipher=cipher)
    assert bank_file.public_id.startswith("pbf_")
    assert (bank_file.payouts_count, bank_file.total, bank_file.currency) == (2, 12_845, "CNY")
    for payout in (first, second):
        current = row(session, payout)
        assert (current.status, current.bank_file_id, current.attempts) == (PayoutStatus.SUBMITTED, bank_file.id, 1)
        assert current.submitted_at is not None and current.status_at is not None
        assert actions(session, payout)[-1] == "payout.submitted"
    assert row(session, later).status == PayoutStatus.READY
    assert row(session, large).status == PayoutStatus.PENDING_APPROVAL
    # Nothing moves in the ledger when the file is made: the money is in transit until the bank answers.
    assert posted(session, accounts.IN_TRANSIT) - in_transit == 12_345 + 500 + 700 + 6_000_000

    content = service.bank_file_content(session, world["a"]["approver"], bank_file.public_id, cipher=cipher)
    assert bankfile.digest(content) == bank_file.sha256
    rows = file_rows(content)
    assert rows[0] == ["payee_name", "bank_name", "account_number", "amount", "currency", "reference"]
    assert sorted(rows[1:]) == sorted([
        ["好味餐厅", "宁夏银行", ACCOUNT_NUMBER, "12345", "CNY", first.public_id],
        ["仁心药房", "宁夏银行", ACCOUNT_NUMBER, "500", "CNY", second.public_id]])
    # The download is audited, and no audit entry holds the full number.
    assert count(session, AuditEvent, AuditEvent.action == "payout_bank_file.downloaded",
                 AuditEvent.object_id == bank_file.public_id) == 1
    for event in session.scalars(select(AuditEvent)):
        assert ACCOUNT_NUMBER not in repr((event.before, event.after))

    # Nothing is due any more: a second file is refused, and the payouts stay in the first.
    with pytest.raises(RuleViolation) as exc:
        service.create_bank_file(session, world["a"]["maker"], today=TODAY, cipher=cipher)
    assert exc.value.code == "no_payouts_due"
    assert count(session, BankFile, BankFile.created_by_id == world["users"]["maker"].id) == 1


def test_a_merchant_without_complete_bank_details_is_left_out_with_the_reason(session, world, cipher):
    world["other"].bank_account_enc = None
    session.commit()
    kept = make_payout(session, world["shop"], 1000)
    left = make_payout(session, world["other"], 2000)
    bank_file = service.create_bank_file(session, world["a"]["maker"], today=TODAY, cipher=cipher)
    assert bank_file.payouts_count == 1 and row(session, kept).status == PayoutStatus.SUBMITTED
    lacking = row(session, left)
    assert lacking.status == PayoutStatus.READY and lacking.bank_file_id is None
    assert "bank details are incomplete" in lacking.last_error
    assert actions(session, left) == ["payout.send_failed"]


def test_only_a_finance_maker_makes_bank_files_and_only_finance_sees_them(session, world, cipher):
    make_payout(session, world["shop"], 1000)
    for who in ("approver", "auditor", "owner", "admin"):
        with pytest.raises(Forbidden):
            service.create_bank_file(session, world["a"][who], today=TODAY, cipher=cipher)
    for who in ("auditor", "owner", "admin"):
        with pytest.raises(Forbidden):
            service.list_bank_files(session, world["a"][who], limit=10, cursor=None)
        with pytest.raises(Forbidden):
            service.import_bank_statuses(session, world["a"][who], "pbf_x", io.BytesIO(b""))
    assert isinstance(service.list_bank_files(session, world["a"]["approver"], limit=10, cursor=None).items, list)


def test_a_download_after_the_bank_details_changed_is_refused(session, world, cipher):
    make_payout(session, world["shop"], 1000)
    bank_file = service.create_bank_file(session, world["a"]["maker"], today=TODAY, cipher=cipher)
    world["shop"].bank_account_enc = cipher.encrypt("6222020299999999", service.BANK_ACCOUNT_CONTEXT)
    session.commit()
    with pytest.raises(Conflict) as exc:
        service.bank_file_content(session, world["a"]["maker"], bank_file.public_id, cipher=cipher)
    assert exc.value.code == "bank_file_changed"


def _bank_file_of(session, world, cipher, *amounts):
    payouts = [make_payout(session, world["shop"], amount) for amount in amounts]
    return service.create_bank_file(session, world["a"]["maker"], today=TODAY, cipher=cipher), payouts


def test_the_banks_answer_pays_and_fails_payouts_and_a_failure_goes_back_to_the_payable(session, world, cipher):
    shop = world["shop"]
    in_transit = posted(session, accounts.IN_TRANSIT)
    bank_file, (paid, failed) = _bank_file_of(session, world, cipher, 30_000, 4_500)
    bank_before = posted(session, accounts.BANK)
    result = service.import_bank_statuses(session, world["a"]["maker2"], bank_file.public_id, answer(
        f"{paid.public_id},paid,", f"{failed.public_id},failed,账户已销户"))
    assert [(r.line, r.outcome, r.error) for r in result.results] == [(2, "paid", None), (3, "failed", None)]

    done = row(session, paid)
    assert (done.status, done.paid_at is not None, done.exception_status) == (PayoutStatus.PAID, True, None)
    [txn] = txns(session, paid, "payout_paid")
    assert done.paid_transaction_id == txn.public_id
    assert posted(session, accounts.BANK) == bank_before - 30_000  # the union's bank paid it out

    lost = row(session, failed)
    assert (lost.status, lost.exception_status) == (PayoutStatus.FAILED, ExceptionStatus.OPEN)
    assert (lost.failure_code, lost.failure_message) == ("bank_returned", "账户已销户")
    [back] = txns(session, failed, "payout_failed")
    assert lost.returned_transaction_id == back.public_id
    assert posted(session, shop.payable_account) == 4_500  # owed to the merchant again
    assert posted(session, accounts.IN_TRANSIT) == in_transit
    assert session.get(BankFile, bank_file.id).answered_at is not None
    assert "payout.failed" in actions(session, failed)

    # The same answer again changes nothing.
    again = service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id, answer(
        f"{paid.public_id},paid,", f"{failed.public_id},failed,账户已销户"))
    assert [r.outcome for r in again.results] == ["unchanged", "unchanged"]
    assert len(txns(session, paid)) == len(txns(session, failed)) == 1  # one move each
    assert_books_balance(session)


def test_a_payout_returned_after_it_was_paid_comes_back_out_of_the_bank(session, world, cipher):
    bank_file, (payout,) = _bank_file_of(session, world, cipher, 8_800)
    service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id, answer(f"{payout.public_id},paid,"))
    bank_paid = posted(session, accounts.BANK)
    result = service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id,
                                          answer(f"{payout.public_id},failed,退汇"))
    assert [r.outcome for r in result.results] == ["returned"]
    current = row(session, payout)
    assert (current.status, current.exception_status, current.failure_message) == (
        PayoutStatus.FAILED, ExceptionStatus.OPEN, "退汇")
    [returned] = txns(session, payout, "payout_returned")
    assert current.returned_transaction_id == returned.public_id
    assert posted(session, accounts.BANK) == bank_paid + 8_800
    assert posted(session, world["shop"].payable_account) == 8_800
    assert "payout.returned" in actions(session, payout)
    # Paid again after it failed: refused for that line, nothing moves.
    late = service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id,
                                        answer(f"{payout.public_id},paid,"))
    assert [(r.outcome, r.error) for r in late.results] == [("error", "already_failed")]
    assert row(session, payout).status == PayoutStatus.FAILED
    assert_books_balance(session)


def test_bad_lines_of_the_banks_answer_are_reported_one_by_one_and_the_good_ones_apply(session, world, cipher):
    bank_file, (good, other) = _bank_file_of(session, world, cipher, 1000, 2000)
    stranger = make_payout(session, world["other"], 3000)  # ready, in no file
    result = service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id, answer(
        f"{good.public_id},paid,",
        f"{other.public_id},bounced,",
        ",paid,",
        f"{stranger.public_id},paid,",
        "po_unknown,failed,",
        f"{good.public_id},failed,again",
        f"{other.public_id},paid,too,many,fields",
        "",
        f"{other.public_id},PAID"))
    outcomes = [(r.line, r.outcome, r.error) for r in result.results]
    assert outcomes == [
        (2, "paid", None), (3, "error", "invalid_status"), (4, "error", "missing_reference"),
        (5, "error", "not_in_file"), (6, "error", "not_in_file"), (7, "error", "duplicate_reference"),
        (8, "error", "malformed_line"), (10, "paid", None)]
    assert result.results[1].message == "The status is neither paid nor failed."
    assert row(session, good).status == PayoutStatus.PAID and row(session, other).status == PayoutStatus.PAID
    assert row(session, stranger).status == PayoutStatus.READY
    assert_books_balance(session)


@pytest.mark.parametrize("content, error", [
    (b"", "The file is empty."),
    (b"ref,status\npo_1,paid\n", "The header must be reference,status,reason."),
    ("reference,status,reason\npo_1,paid,\u5df2\u4ed8\n".encode("gbk"), "The file is not UTF-8 CSV."),
])
def test_an_answer_that_is_not_the_banks_csv_is_refused_whole(session, world, cipher, content, error):
    bank_file, (payout,) = _bank_file_of(session, world, cipher, 1000)
    with pytest.raises(ValidationFailed) as exc:
        service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id, io.BytesIO(content))
    assert exc.value.errors == {"file": [error]}
    assert row(session, payout).status == PayoutStatus.SUBMITTED


def test_an_answer_over_its_limits_is_refused(session, world, cipher):
    bank_file, (payout,) = _bank_file_of(session, world, cipher, 1000)
    with pytest.raises(ValidationFailed) as size:
        service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id,
                                     answer(*[f"{payout.public_id},paid,{'x' * 100}"] * 50), max_bytes=2048)
    assert size.value.code == "file_too_large"
    with pytest.raises(ValidationFailed) as lines:
        service.import_bank_statuses(session, world["a"]["maker"], bank_file.public_id,
                                     answer(*[f"po_{i},paid," for i in range(4)]), max_lines=3)
    assert lines.value.errors == {"file": ["An answer has at most 3 lines."]}
    with pytest.raises(NotFound):
        service.import_bank_statuses(session, world["a"]["maker"], "pbf_unknown", answer())
    assert row(session, payout).status == PayoutStatus.SUBMITTED


# --- Stripe Connect ---------------------------------------------------------------------------------

@pytest.fixture
def provider(app, stripe_app_config):
    return payout_provider(app.config)


def test_send_due_transfers_to_the_connected_account_and_pays_out_to_its_bank(session, world, cipher, app,
                                                                              stripe_server, provider):
    account = stripe_account(app, stripe_server)
    merchant = make_stripe_merchant(session, cipher, account)
    payout = make_payout(session, merchant, 25_000)
    later = make_payout(session, merchant, 100, due_on=TODAY.replace(day=28))
    bank = make_payout(session, world["shop"], 300)

    report = service.send_due(session, provider, today=TODAY, actor=world["a"]["maker"])
    assert (report.sent, report.failed) == (1, 0)
    assert [(r.payout_id, r.status, r.error) for r in report.results] == [(payout.public_id, "submitted", None)]

    [transfer] = stripe_server.objects("transfers")
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (25_000, "cny", account)
    assert transfer["transfer_group"] == payout.public_id and transfer["metadata"] == {"payout_id": payout.public_id}
    [sent_transfer] = stripe_server.requests_to("POST", "/v1/transfers")
    assert sent_transfer.idempotency_key == f"{payout.public_id}:transfer"
    assert "Stripe-Account" not in sent_transfer.headers

    [sent_payout] = stripe_server.requests_to("POST", "/v1/payouts")
    assert sent_payout.headers["Stripe-Account"] == account
    assert sent_payout.idempotency_key == f"{payout.public_id}:payout"
    [stripe_payout] = stripe_server.objects("payouts")
    assert (stripe_payout["amount"], stripe_payout["status"]) == (25_000, "pending")
    assert stripe_payout["metadata"] == {"payout_id": payout.public_id}
    assert stripe_server.balance(account) == 0  # transferred in, paid out

    current = row(session, payout)
    assert current.status == PayoutStatus.SUBMITTED
    assert (current.stripe_transfer_id, current.stripe_payout_id) == (transfer["id"], stripe_payout["id"])
    assert current.status_at.timestamp() == stripe_payout["created"] and current.attempts == 1
    assert actions(session, payout) == ["payout.submitted"]
    assert row(session, later).status == PayoutStatus.READY and row(session, bank).status == PayoutStatus.READY
    # Sending again finds nothing due and calls Stripe no more.
    assert service.send_due(session, provider, today=TODAY).results == []
    assert len(stripe_server.requests_to("POST", "/v1/transfers")) == 1
    # Paid: in transit -> Stripe clearing.
    clearing = posted(session, accounts.CLEARING)
    service.mark_paid(session, SYSTEM, payout.public_id)
    session.commit()
    assert posted(session, accounts.CLEARING) == clearing - 25_000
    assert row(session, payout).status == PayoutStatus.PAID
    assert_books_balance(session)


def test_a_stripe_outage_leaves_the_payout_ready_with_the_error_and_a_retry_sends_it_once(
        session, cipher, app, stripe_server, provider):
    merchant = make_stripe_merchant(session, cipher, stripe_account(app, stripe_server))
    payout = make_payout(session, merchant, 5_000)
    stripe_server.fail_next(500, path="/v1/transfers")
    report = service.send_due(session, provider, today=TODAY)
    assert (report.sent, report.failed) == (0, 1)
    failed = row(session, payout)
    assert (failed.status, failed.attempts, failed.stripe_transfer_id) == (PayoutStatus.READY, 1, None)
    assert "unavailable" in failed.last_error
    assert actions(session, payout) == ["payout.send_failed"]

    report = service.send_due(session, provider, today=TODAY)
    assert (report.sent, report.failed) == (1, 0)
    sent = row(session, payout)
    assert (sent.status, sent.attempts, sent.last_error) == (PayoutStatus.SUBMITTED, 2, None)
    assert len(stripe_server.objects("transfers")) == 1 and len(stripe_server.objects("payouts")) == 1


def test_an_account_that_cannot_receive_payouts_keeps_its_transfer_and_is_paid_out_once_enabled(
        session, cipher, app, stripe_server, provider):
    account = stripe_account(app, stripe_server, payouts_enabled=False)
    merchant = make_stripe_merchant(session, cipher, account)
    payout = make_payout(session, merchant, 7_000)
    report = service.send_due(session, provider, today=TODAY)
    assert report.failed == 1 and "Payouts are not enabled" in report.results[0].error
    stuck = row(session, payout)
    [transfer] = stripe_server.objects("transfers")
    assert (stuck.status, stuck.stripe_transfer_id, stuck.stripe_payout_id) == (PayoutStatus.READY, transfer["id"],
                                                                                 None)
    assert "Payouts are not enabled" in stuck.last_error
    assert stripe_server.balance(account) == 7_000  # on the merchant's Stripe balance meanwhile

    stripe_server.complete_onboarding(account, payouts_enabled=True)
    assert service.send_due(session, provider, today=TODAY).sent == 1
    assert len(stripe_server.objects("transfers")) == 1  # the first transfer is paid out, no second one
    [sent_payout] = [r for r in stripe_server.requests_to("POST", "/v1/payouts") if r.status == 200]
    assert sent_payout.headers["Stripe-Account"] == account
    assert row(session, payout).status == PayoutStatus.SUBMITTED and stripe_server.balance(account) == 0


def test_an_account_not_onboarded_refuses_the_transfer(session, cipher, app, stripe_server, provider):
    merchant = make_stripe_merchant(session, cipher, stripe_account(app, stripe_server, onboarded=False))
    payout = make_payout(session, merchant, 7_000)
    report = service.send_due(session, provider, today=TODAY)
    assert report.failed == 1 and "transfers" in report.results[0].error
    assert row(session, payout).status == PayoutStatus.READY and stripe_server.objects("transfers") == []


def test_a_merchant_without_a_stripe_account_is_not_sent(session, cipher, stripe_server, provider):
    payout = make_payout(session, make_stripe_merchant(session, cipher, None), 1_000)
    report = service.send_due(session, provider, today=TODAY)
    assert report.results[0].error == "The merchant has no Stripe account to pay into."
    assert row(session, payout).status == PayoutStatus.READY and stripe_server.requests == []


def test_a_retry_after_stripe_forgot_the_key_finds_the_earlier_transfer(app, stripe_server, stripe_app_config,
                                                                       provider):
    account = stripe_account(app, stripe_server)
    stripe_server.fail_next(500, path="/v1/payouts")
    with pytest.raises(SendFailed) as exc:
        provider.send(payout_id="po_retry", amount=900, currency="CNY", account_id=account)
    transfer_id = exc.value.transfer_id
    assert transfer_id and exc.value.code == "stripe_unavailable"
    stripe_server._idempotency.clear()  # a day later: Stripe keeps idempotency keys for 24 hours
    sent = provider.send(payout_id="po_retry", amount=900, currency="CNY", account_id=account, attempts=1)
    assert sent.transfer_id == transfer_id and len(stripe_server.objects("transfers")) == 1
    assert stripe_server.requests_to("GET", "/v1/transfers")[0].params["transfer_group"] == "po_retry"


def test_without_a_stripe_key_payouts_stay_ready_and_say_why(session, cipher, app, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", "")
    provider = payout_provider(app.config)
    assert isinstance(provider, DisabledStripePayouts)
    payout = make_payout(session, make_stripe_merchant(session, cipher, "acct_x"), 1_000)
    report = service.send_due(session, provider, today=TODAY)
    assert report.results[0].error == DisabledStripePayouts.MESSAGE
    assert row(session, payout).status == PayoutStatus.READY
    assert isinstance(payout_provider({"STRIPE_API_KEY": "sk_test_x"}), StripePayouts)


# --- what became of the money --------------------------------------------------------------------------

def test_marking_is_idempotent_and_refuses_impossible_moves(session, world):
    payout = make_payout(session, world["shop"], 2_500)
    service.mark_paid(session, SYSTEM, payout.public_id)
    service.mark_paid(session, SYSTEM, payout.public_id)
    session.commit()
    assert len(txns(session, payout, "payout_paid")) == 1
    service.mark_failed(session, SYSTEM, payout.public_id, code="returned", message="退汇")
    service.mark_failed(session, SYSTEM, payout.public_id, code="returned", message="退汇")
    session.commit()
    assert len(txns(session, payout, "payout_returned")) == 1
    with pytest.raises(Conflict) as exc:
        service.mark_paid(session, SYSTEM, payout.public_id)
    assert exc.value.code == "payout_failed"
    session.rollback()
    with pytest.raises(NotFound):
        service.mark_paid(session, SYSTEM, "po_unknown")
    assert_books_balance(session)


# --- exceptions --------------------------------------------------------------------------------------

def test_finance_resolves_a_failed_payouts_exception_with_a_note(session, world):
    payout = make_payout(session, world["shop"], 2_500)
    ok = make_payout(session, world["shop"], 100)
    service.mark_failed(session, SYSTEM, payout.public_id, code="account_closed", message="账户已销户")
    session.commit()
    assert [p.public_id for p in service.open_exceptions(session, world["a"]["auditor"])
            if p.merchant_id == world["shop"].id] == [payout.public_id]

    for note in ("", "   ", "x" * 1001):
        with pytest.raises(ValidationFailed) as exc:
            service.resolve_exception(session, world["a"]["maker"], payout.public_id, note)
        assert "note" in exc.value.errors
    for who in ("auditor", "owner"):
        with pytest.raises(Forbidden):
            service.resolve_exception(session, world["a"][who], payout.public_id, "done")
    with pytest.raises(Conflict) as none:
        service.resolve_exception(session, world["a"]["maker"], ok.public_id, "nothing to do")
    assert none.value.code == "no_exception"

    resolved = service.resolve_exception(session, world["a"]["maker"], payout.public_id, " 商户已更新账户 ")
    assert (resolved.exception_status, resolved.exception_note) == (ExceptionStatus.RESOLVED, "商户已更新账户")
    assert resolved.resolved_by_id == world["users"]["maker"].id and resolved.resolved_at is not None
    assert service.resolve_exception(session, world["a"]["approver"], payout.public_id, "商户已更新账户") is not None
    with pytest.raises(Conflict) as twice:
        service.resolve_exception(session, world["a"]["approver"], payout.public_id, "another note")
    assert twice.value.code == "exception_resolved"
    assert actions(session, payout)[-1] == "payout.exception_resolved"
    assert [p for p in service.open_exceptions(session, world["a"]["maker"]) if p.merchant_id == world["shop"].id] == []
    assert_books_balance(session)


# --- who sees what -------------------------------------------------------------------------------------

def test_a_merchant_sees_only_its_own_payouts(session, world):
    own = make_payout(session, world["shop"], 1000)
    theirs = make_payout(session, world["other"], 2000)
    a = world["a"]
    for who in ("owner", "manager"):
        page = service.list_payouts(session, a[who], limit=50, cursor=None)
        assert [p.public_id for p in page.items] == [own.public_id]
        assert service.get_payout(session, a[who], own.public_id).id == own.id
        with pytest.raises(NotFound):
            service.get_payout(session, a[who], theirs.public_id)
        assert service.list_payouts(session, a[who], merchant_id=world["other"].public_id, limit=50,
                                    cursor=None).items == []
    for who in ("maker", "approver", "auditor"):
        seen = {p.public_id for p in service.list_payouts(session, a[who], limit=50, cursor=None).items}
        assert {own.public_id, theirs.public_id} <= seen
        assert service.get_payout(session, a[who], theirs.public_id).id == theirs.id
    for who in ("cashier", "admin", "reviewer"):
        with pytest.raises(Forbidden):
            service.list_payouts(session, a[who], limit=50, cursor=None)
        with pytest.raises(Forbidden):
            service.get_payout(session, a[who], own.public_id)
    member = Actor(None, "m", Role.MEMBER)
    with pytest.raises(Forbidden):
        service.get_payout(session, member, own.public_id)


def test_lists_filter_by_status_merchant_and_exception_newest_first(session, world):
    a = world["a"]["auditor"]
    first = make_payout(session, world["shop"], 1000)
    second = make_payout(session, world["other"], 2000)
    third = make_payout(session, world["shop"], 3000)
    service.mark_failed(session, SYSTEM, third.public_id, code="x", message="y")
    session.commit()
    ours = {first.id, second.id, third.id}

    def ids(**kw):
        return [p.public_id for p in service.list_payouts(session, a, limit=50, cursor=None, **kw).items
                if p.id in ours]

    assert ids() == [third.public_id, second.public_id, first.public_id]
    assert ids(status=PayoutStatus.READY) == [second.public_id, first.public_id]
    assert ids(merchant_id=world["shop"].public_id) == [third.public_id, first.public_id]
    assert ids(exception_status=ExceptionStatus.OPEN) == [third.public_id]
    page = service.list_payouts(session, a, merchant_id=world["shop"].public_id, limit=1, cursor=None)
    assert [p.public_id for p in page.items] == [third.public_id] and page.next_cursor
    more = service.list_payouts(session, a, merchant_id=world["shop"].public_id, limit=1, cursor=page.next_cursor)
    assert [p.public_id for p in more.items] == [first.public_id]
    counts = service.status_counts(session, world["a"]["owner"])
    assert (counts["ready"], counts["failed"], counts["exceptions"]) == (1, 1, 1)


def test_the_send_command_sends_due_stripe_payouts(app, session, cipher, stripe_server, stripe_app_config,
                                                   monkeypatch):
    from payments.payouts import service as payouts

    merchant = make_stripe_merchant(session, cipher, stripe_account(app, stripe_server), "命令行超市")
    payout = make_payout(session, merchant, 2_500)
    monkeypatch.setattr(payouts, "business_today", lambda: TODAY)
    result = app.test_cli_runner().invoke(args=["payouts", "send"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 sent, 0 not sent")
    assert row(session, payout).status == PayoutStatus.SUBMITTED
