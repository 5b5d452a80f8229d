"""Matching a bank statement against payouts and fundings: each state found, one-to-many both ways, the
date window, and re-imports."""

import datetime as dt

import pytest

from core.errors import ValidationFailed
from payments.reconciliation import service
from payments.reconciliation.models import ImportMethod, LineOrigin, LineState, MatchRule, Source
from tests.reconciliation.conftest import DAY, bank_csv

WINDOW = 3


def run(session, actor, *lines, filename="statement.csv"):
    rec, created = service.import_file(session, actor, source=Source.BANK, fileobj=bank_csv(*lines),
                                       filename=filename, window_days=WINDOW)
    return rec, created


def lines_of(session, rec):
    page = service.list_lines(session, rec, limit=200, cursor=None)
    return {line.line_no: line for line in page.items}


def test_a_clean_statement_matches_every_payout_and_funding(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    p1, p2 = books.payout(12_345), books.payout(50_000, DAY + dt.timedelta(days=1))
    funding = books.funding(1_000_000, reference="ICBC-20261102-01")
    rec, created = run(session, maker,
                       f"2026-11-02,{p1.public_id},12345,CNY,结算款",
                       f"2026-11-03,{p2.public_id},50000,CNY,结算款",
                       "2026-11-02,ICBC-20261102-01,-1000000,CNY,拨款")
    assert created and rec.public_id.startswith("rec_")
    assert (rec.matched, rec.unmatched_internal, rec.unmatched_external, rec.mismatched) == (3, 0, 0, 0)
    assert (rec.period_start, rec.period_end, rec.lines_count) == (DAY, DAY + dt.timedelta(days=1), 3)
    assert (rec.total_out, rec.total_in, rec.total_fees) == (62_345, 1_000_000, 0)
    assert rec.method is ImportMethod.FILE and rec.account == "union:bank"
    found = lines_of(session, rec)
    assert [(i.kind, i.id, i.amount) for i in found[1].items] == [("payout", p1.public_id, 12_345)]
    assert [(i.kind, i.id, i.amount) for i in found[3].items] == [("funding", funding.public_id, -1_000_000)]
    assert all(line.rule is MatchRule.REFERENCE and line.difference is None for line in found.values())


def test_missing_extra_and_mismatched_lines_are_each_found(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    paid, missing, short = books.payout(10_000), books.payout(20_000), books.payout(30_000)
    rec, _ = run(session, maker,
                 f"2026-11-02,{paid.public_id},10000,CNY,ok",
                 f"2026-11-02,{short.public_id},29900,CNY,bank paid less",
                 "2026-11-02,,-777,CNY,interest",
                 "2026-11-02,FEE-1,1500,CNY,bank charge")
    assert (rec.matched, rec.unmatched_internal, rec.unmatched_external, rec.mismatched) == (1, 1, 2, 1)
    found = lines_of(session, rec)
    assert found[1].state is LineState.MATCHED
    assert found[2].state is LineState.MISMATCHED and found[2].difference == -100
    assert [i.id for i in found[2].items] == [short.public_id]
    assert found[3].state is LineState.UNMATCHED_EXTERNAL and found[3].difference == -777
    assert found[4].state is LineState.UNMATCHED_EXTERNAL and found[4].difference == 1500
    # Ours without a line: a line of its own after the statement's, with the payout as its item.
    assert found[5].origin is LineOrigin.INTERNAL and found[5].state is LineState.UNMATCHED_INTERNAL
    assert (found[5].reference, found[5].amount, found[5].difference) == (missing.public_id, 20_000, -20_000)
    assert [i.id for i in found[5].items] == [missing.public_id]
    exceptions = service.list_lines(session, rec, state="exceptions", limit=50, cursor=None).items
    assert [line.line_no for line in exceptions] == [2, 3, 4, 5]


def test_a_bank_file_line_pays_all_its_payouts_and_split_lines_add_up_to_one(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    bank_file = books.bank_file()
    a, b = books.payout(1_000, bank_file=bank_file), books.payout(2_500, bank_file=bank_file)
    split = books.payout(9_000)
    short_file = books.bank_file()
    c, d = books.payout(700, bank_file=short_file), books.payout(300, bank_file=short_file)
    rec, _ = run(session, maker,
                 f"2026-11-02,{bank_file.public_id},3500,CNY,file",
                 f"2026-11-02,{split.public_id},4000,CNY,part 1",
                 f"2026-11-03,{split.public_id},5000,CNY,part 2",
                 f"2026-11-02,{short_file.public_id},900,CNY,file short")
    found = lines_of(session, rec)
    assert found[1].state is LineState.MATCHED
    assert sorted(i.id for i in found[1].items) == sorted([a.public_id, b.public_id])
    assert found[2].state is found[3].state is LineState.MATCHED
    assert found[2].group_no == found[3].group_no == 2
    assert [i.id for i in found[3].items] == [split.public_id]
    assert found[4].state is LineState.MISMATCHED and found[4].difference == -100
    assert sorted(i.id for i in found[4].items) == sorted([c.public_id, d.public_id])
    assert (rec.matched, rec.mismatched, rec.unmatched_internal, rec.unmatched_external) == (3, 1, 0, 0)


def test_a_bank_file_line_and_a_payout_line_of_the_same_file_form_one_group(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    bank_file = books.bank_file()
    a, b = books.payout(1_000, bank_file=bank_file), books.payout(2_000, bank_file=bank_file)
    rec, _ = run(session, maker,
                 f"2026-11-02,{a.public_id},1000,CNY,one",
                 f"2026-11-02,{bank_file.public_id},2000,CNY,the rest of the file")
    found = lines_of(session, rec)
    assert found[1].group_no == found[2].group_no == 1
    assert found[1].state is found[2].state is LineState.MATCHED
    assert sorted(i.id for i in found[2].items) == sorted([a.public_id, b.public_id])


def test_lines_without_a_usable_reference_match_by_amount_within_the_date_window(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    near = books.payout(4_200, DAY)
    far = books.payout(6_600, DAY - dt.timedelta(days=10))
    same_amount_1 = books.funding(8_000, DAY - dt.timedelta(days=2))
    same_amount_2 = books.funding(8_000, DAY + dt.timedelta(days=2))
    rec, _ = run(session, maker,
                 "2026-11-05,,4200,CNY,no reference three days later",
                 "2026-11-02,,6600,CNY,ten days after its payout",
                 "2026-11-04,UNKNOWN,-8000,CNY,deposit",
                 "2026-10-31,,-8000,CNY,deposit")
    found = lines_of(session, rec)
    assert found[1].state is LineState.MATCHED and found[1].rule is MatchRule.AMOUNT_DATE
    assert [i.id for i in found[1].items] == [near.public_id]
    assert found[2].state is LineState.UNMATCHED_EXTERNAL
    assert found[3].state is found[4].state is LineState.MATCHED
    assert [i.id for i in found[3].items] == [same_amount_2.public_id]
    assert [i.id for i in found[4].items] == [same_amount_1.public_id]
    # The far payout is outside the statement's period: not expected on it, so not unmatched_internal.
    assert far.public_id not in {line.reference for line in found.values()}
    assert (rec.matched, rec.unmatched_external, rec.unmatched_internal) == (3, 1, 0)


def test_the_window_is_the_configured_number_of_days(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    payout = books.payout(4_200, DAY)
    rec, _ = service.import_file(session, maker, source=Source.BANK, window_days=1,
                                 fileobj=bank_csv("2026-11-04,,4200,CNY,two days later"), filename="s.csv")
    assert (rec.matched, rec.unmatched_external) == (0, 1)
    assert rec.unmatched_internal == 0  # the payout's day is before the statement's period
    rec, _ = service.import_file(session, maker, source=Source.BANK, window_days=2,
                                 fileobj=bank_csv("2026-11-04,,4200,CNY,two days later", "2026-11-04,X,1,CNY,x"),
                                 filename="s.csv")
    assert rec.matched == 1
    assert [i.id for i in lines_of(session, rec)[1].items] == [payout.public_id]


def test_a_failed_payout_should_show_nothing_and_a_pending_funding_is_not_expected(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    failed = books.payout(5_000, status="failed")
    returned = books.payout(6_000, status="failed")
    pending = books.funding(7_000, reference="PENDING-1", status="pending")
    rec, _ = run(session, maker,
                 f"2026-11-02,{failed.public_id},5000,CNY,the bank paid it anyway",
                 f"2026-11-02,{returned.public_id},6000,CNY,paid",
                 f"2026-11-03,{returned.public_id},-6000,CNY,returned",
                 "2026-11-02,PENDING-1,-7000,CNY,arrived before approval")
    found = lines_of(session, rec)
    assert found[1].state is LineState.MISMATCHED and found[1].difference == 5_000
    assert found[2].state is found[3].state is LineState.MATCHED
    assert found[4].state is LineState.MISMATCHED and found[4].difference == -7_000
    assert [i.id for i in found[4].items] == [pending.public_id]


def test_reimporting_the_same_file_returns_the_first_reconciliation(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    payout = books.payout(10_000)
    line = f"2026-11-02,{payout.public_id},10000,CNY,ok"
    first, created = run(session, maker, line)
    again, created_again = run(session, rworld["a"]["approver"], line, filename="renamed.csv")
    assert created and not created_again and again.id == first.id
    other, created_other = run(session, maker, line, "2026-11-02,X,5,CNY,one more")
    assert created_other and other.id != first.id


def test_a_payout_matched_by_an_earlier_statement_is_not_missing_from_a_later_one(session, rworld):
    books, maker = rworld["books"], rworld["a"]["maker"]
    payout = books.payout(10_000)
    other = books.payout(11_000)
    run(session, maker, f"2026-11-02,{payout.public_id},10000,CNY,ok")
    later, _ = run(session, maker, f"2026-11-02,{other.public_id},11000,CNY,ok", "2026-11-02,,10000,CNY,again?")
    found = lines_of(session, later)
    assert found[2].state is LineState.UNMATCHED_EXTERNAL
    assert later.unmatched_internal == 0


@pytest.mark.parametrize("content,field,message", [
    ("date,ref,amount,currency,description\n2026-11-02,x,1,CNY,d\n", "file", "The header must be"),
    ("date,reference,amount,currency,description\n2026-11-02,x,12.50,CNY,d\n", "line 1.amount", "whole number"),
    ("date,reference,amount,currency,description\n2026-11-02,x,0,CNY,d\n", "line 1.amount", "zero"),
    ("date,reference,amount,currency,description\n02/11/2026,x,1,CNY,d\n", "line 1.date", "YYYY-MM-DD"),
    ("date,reference,amount,currency,description\n2026-02-30,x,1,CNY,d\n", "line 1.date", "YYYY-MM-DD"),
    ("date,reference,amount,currency,description\n2026-11-02,x,1,RMB1,d\n", "line 1.currency", "currency"),
    ("date,reference,amount,currency,description\n2026-11-02,x,1,CNY\n", "line 1", "Expected 5 fields"),
    ("date,reference,amount,currency,description\n", "file", "no lines"),
    ("", "file", "empty"),
])
def test_a_bad_bank_file_is_refused_line_by_line_and_nothing_is_kept(session, rworld, content, field, message):
    import io

    from payments.reconciliation.models import Reconciliation

    with pytest.raises(ValidationFailed) as refused:
        service.import_file(session, rworld["a"]["maker"], source=Source.BANK, fileobj=io.BytesIO(content.encode()),
                            filename="bad.csv", window_days=WINDOW)
    assert any(message in text for text in refused.value.errors[field]), refused.value.errors
    assert session.query(Reconciliation).count() == 0


def test_every_bad_line_is_reported_with_its_number(session, rworld):
    with pytest.raises(ValidationFailed) as refused:
        run(session, rworld["a"]["maker"], "2026-11-02,a,1,CNY,ok", "2026-11-02,b,x,CNY,bad", "2026-13-01,c,1,CNY,bad")
    assert set(refused.value.errors) == {"line 2.amount", "line 3.date"}


def test_a_statement_longer_than_the_limit_is_refused(session, rworld):
    limits = service.Limits(max_lines=2)
    with pytest.raises(ValidationFailed) as refused:
        service.import_file(session, rworld["a"]["maker"], source=Source.BANK, window_days=WINDOW, limits=limits,
                            fileobj=bank_csv(*["2026-11-02,x,1,CNY,d"] * 3), filename="long.csv")
    assert "at most 2 lines" in refused.value.errors["file"][0]
    with pytest.raises(ValidationFailed) as refused:
        service.import_file(session, rworld["a"]["maker"], source=Source.BANK, window_days=WINDOW,
                            limits=service.Limits(max_bytes=100),
                            fileobj=bank_csv(*["2026-11-02,x,1,CNY,d"] * 10), filename="big.csv")
    assert "larger than" in refused.value.errors["file"][0]


def test_a_failure_while_matching_leaves_nothing_behind(session, rworld, monkeypatch):
    from payments.reconciliation import matching
    from payments.reconciliation.models import Reconciliation, ReconciliationLine

    books = rworld["books"]
    payout = books.payout(10_000)

    def broken(*_args, **_kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(matching, "_pair", broken)
    with pytest.raises(RuntimeError):
        run(session, rworld["a"]["maker"], f"2026-11-02,{payout.public_id},10000,CNY,ok", "2026-11-02,,5,CNY,x")
    assert session.query(Reconciliation).count() == 0 and session.query(ReconciliationLine).count() == 0
    monkeypatch.undo()
    rec, created = run(session, rworld["a"]["maker"], f"2026-11-02,{payout.public_id},10000,CNY,ok",
                       "2026-11-02,,5,CNY,x")
    assert created and rec.matched == 1
