"""A world for reconciliation tests: finance staff, merchants, and payouts, fundings and top-ups written
straight to their tables (with their ledger moves when a test needs the books), on days of our choosing."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from cards import service as cards
from core.auth import Actor
from core.i18n import BUSINESS_TZ
from core.ids import new_public_id
from core.models import Role
from merchants.models import SettlementMethod
from payments import accounts, ledger
from payments.disbursement import service as disbursement
from payments.disbursement.models import Funding, FundingStatus, ProgramKind, PursePolicy
from payments.ledger import credit, debit
from payments.payouts.models import BankFile, Payout, PayoutStatus
from payments.settlement.models import Settlement, SettlementStatus
from payments.topups.models import TopUp, TopUpStatus
from tests import factories as f

DAY = dt.date(2026, 11, 2)  # a Monday


def at(day: dt.date, hour: int = 10) -> dt.datetime:
    """A moment of a business day (Asia/Shanghai), as the UTC the tables keep."""
    return dt.datetime.combine(day, dt.time(hour), BUSINESS_TZ).astimezone(dt.timezone.utc)


def bank_csv(*lines: str, header: str = "date,reference,amount,currency,description") -> io.BytesIO:
    return io.BytesIO(("\n".join([header, *lines]) + "\n").encode())


STRIPE_HEADER = "id,Type,Source,Amount,Fee,Net,Currency,Created (UTC),Available On (UTC),Description"


def stripe_csv(*lines: str, header: str = STRIPE_HEADER) -> io.BytesIO:
    return io.BytesIO(("\n".join([header, *lines]) + "\n").encode())


class Books:
    """Makes payouts, fundings and top-ups, posting their ledger moves when asked."""

    def __init__(self, session, cipher, program):
        self.session, self.cipher, self.program = session, cipher, program
        self.merchants = {}
        accounts.open_platform_accounts(session)
        session.commit()

    def merchant(self, method: str = "bank"):
        if method not in self.merchants:
            m = f.merchant(self.session, self.cipher, f"对账商户{f.next_id()}")
            m.settlement_method = SettlementMethod(method)
            self.session.commit()
            self.merchants[method] = m
        return self.merchants[method]

    def payout(self, amount: int, day: dt.date = DAY, *, method: str = "bank", status: str = "paid",
               transfer_id: str | None = None, bank_file: BankFile | None = None, post: bool = False,
               hour: int = 10) -> Payout:
        """A payout of a settlement of its own; `post` writes settlement and payment in the ledger."""
        s = self.session
        m = self.merchant(method)
        settlement = Settlement(public_id=new_public_id("stl"), merchant_id=m.id, business_date=dt.date(2000, 1, 1) + dt.timedelta(
            days=f.next_id()), currency="CNY", payments_count=1, amount=amount, charged=amount, net=amount,
            status=SettlementStatus.SETTLED, payout_due_on=day)
        s.add(settlement)
        s.flush()
        moment = at(day, hour)
        status = PayoutStatus(status)
        payout = Payout(public_id=new_public_id("po"), merchant_id=m.id, settlement_id=settlement.id, amount=amount,
                        currency="CNY", method=SettlementMethod(method), status=status, due_on=day,
                        submitted_at=moment if status != PayoutStatus.READY else None,
                        paid_at=moment if status == PayoutStatus.PAID else None,
                        failed_at=moment if status == PayoutStatus.FAILED else None,
                        stripe_transfer_id=transfer_id, bank_file_id=bank_file.id if bank_file else None)
        s.add(payout)
        s.flush()
        if post:
            ledger.post(s, kind="test_settlement", idempotency_key=f"{settlement.public_id}:test",
                        entries=[debit(m.payable_account, amount), credit(accounts.IN_TRANSIT, amount)])
            if status == PayoutStatus.PAID:
                paid_from = accounts.BANK if method == "bank" else accounts.CLEARING
                ledger.post(s, kind="test_payout_paid", idempotency_key=f"{payout.public_id}:test",
                            entries=[debit(accounts.IN_TRANSIT, amount), credit(paid_from, amount)])
        s.commit()
        return payout

    def bank_file(self) -> BankFile:
        bank_file = BankFile(public_id=new_public_id("pbf"))
        self.session.add(bank_file)
        self.session.commit()
        return bank_file

    def funding(self, amount: int, day: dt.date = DAY, *, reference: str | None = None, status: str = "approved",
                post: bool = False, hour: int = 10) -> Funding:
        s = self.session
        funding = Funding(public_id=new_public_id("fnd"), program_id=self.program.id, amount=amount, currency="CNY",
                          reference=reference or f"BANK-{f.next_id()}", status=FundingStatus(status),
                          decided_at=at(day, hour) if status != "pending" else None, created_at=at(day, hour - 1))
        s.add(funding)
        s.flush()
        if post:
            ledger.post(s, kind="test_funding", idempotency_key=f"{funding.public_id}:test",
                        entries=[debit(accounts.BANK, amount), credit(self.program.budget_account, amount)])
        s.commit()
        return funding

    def top_up(self, amount: int, day: dt.date = DAY, *, card, member, status: str = "succeeded") -> TopUp:
        top_up = TopUp(public_id=new_public_id("top"), member_id=member.id, card_id=card.id, amount=amount,
                       currency="CNY", status=TopUpStatus(status), payment_intent_id=f"pi_test_{f.next_id()}",
                       created_at=at(day))
        if status == "succeeded":
            top_up.transaction_id = f"txn_test_{f.next_id()}"
        self.session.add(top_up)
        self.session.commit()
        return top_up


@pytest.fixture
def rworld(session, cipher):
    tree = f.org_tree(session)
    users = {name: f.user(session, role) for name, role in (
        ("maker", Role.FINANCE_MAKER), ("approver", Role.FINANCE_APPROVER), ("approver2", Role.FINANCE_APPROVER),
        ("auditor", Role.AUDITOR), ("admin", Role.UNION_ADMIN))}
    actors = {name: Actor.of(u) for name, u in users.items()}
    program = disbursement.create_program(session, actors["maker"], name="对账测试", kind=ProgramKind.HARDSHIP_AID,
                                          purse=PursePolicy.GENERAL, union_id=tree["fed"].public_id)
    books = Books(session, cipher, program)
    member = f.member(session, cipher, tree["yc_base"], "对账会员")
    card = cards.issue_card(session, cipher, f.PLATFORM, member.public_id, prefix="880064")
    headers = {name: f.bearer(session, u) for name, u in users.items()}
    return {"tree": tree, "users": users, "a": actors, "h": headers, "books": books, "program": program,
            "member": member, "card": card}
