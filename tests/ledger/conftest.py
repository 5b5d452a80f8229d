"""Helpers for the ledger tests: unique account codes and funded accounts."""

from __future__ import annotations

import uuid

import pytest

from payments import ledger


class Books:
    """A small chart of accounts with codes unique to one test, so tests never share rows."""

    def __init__(self, session):
        self.session = session
        self.tag = uuid.uuid4().hex[:10]
        self.bank = self.open("union:bank", normal_side="debit", allow_negative=True)

    def code(self, name: str) -> str:
        head, _, rest = name.partition(":")
        return f"{head}:{self.tag}" + (f":{rest}" if rest else "")

    def open(self, name: str, **spec) -> str:
        spec.setdefault("normal_side", "credit")
        return ledger.open_account(self.session, self.code(name), **spec).code

    def purse(self, name: str, funds: int = 0, **spec) -> str:
        """Open a no-negative credit-normal account and fund it from the bank."""
        code = self.open(name, **spec)
        if funds:
            self.fund(code, funds)
        return code

    def fund(self, code: str, amount: int) -> None:
        ledger.post(self.session, kind="funding", idempotency_key=f"fund:{uuid.uuid4().hex}",
                    entries=[ledger.debit(self.bank, amount), ledger.credit(code, amount)])

    def available(self, code: str) -> int:
        return ledger.balance(self.session, code).available

    def posted(self, code: str) -> int:
        return ledger.balance(self.session, code).posted


def key() -> str:
    return uuid.uuid4().hex


def assert_verified(session) -> None:
    report = ledger.verify(session)
    assert report.ok, report.problems


@pytest.fixture
def books(session):
    return Books(session)
