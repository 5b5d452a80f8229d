"""Random sequences of post, hold, capture, void, reverse and replay keep every invariant.

A plain model of the four counters of every account predicts what each operation does; after
every step the ledger must agree with it, and at the end `verify()` must find nothing.
"""

import datetime as dt
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import utcnow
from core.errors import Conflict, RuleViolation
from payments import ledger
from payments.ledger import credit, debit

# name: (normal side, may go negative, mode)
ACCOUNTS = {
    "bank": ("debit", True, "single"),
    "card0": ("credit", False, "single"),
    "card1": ("credit", False, "single"),
    "budget": ("credit", False, "sliced"),
    "payable": ("credit", True, "append_only"),
}
NAMES = sorted(ACCOUNTS)

amounts = st.integers(min_value=1, max_value=400)
pairs = st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)).filter(lambda p: p[0] != p[1])
operations = st.one_of(
    st.tuples(st.just("post"), pairs, amounts),
    st.tuples(st.just("hold"), pairs, amounts),
    st.tuples(st.just("capture"), st.integers(0, 50), st.one_of(st.none(), amounts)),
    st.tuples(st.just("void"), st.integers(0, 50), st.none()),
    st.tuples(st.just("reverse"), st.integers(0, 50), st.one_of(st.none(), amounts)),
    st.tuples(st.just("replay"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("expire"), st.none(), st.none()),
    st.tuples(st.just("fold"), st.none(), st.none()),
)


class Model:
    """What the ledger should hold: dp, cp, dh, ch per account, and what each transaction did."""

    def __init__(self):
        self.counters = {name: [0, 0, 0, 0] for name in NAMES}
        self.holds = []  # [txn, {name: signed}, open?]
        self.posted = []  # [txn, {name: signed amount not yet reversed}]
        self.requests = []  # (callable replaying the request, its key, txn)

    def available(self, name, counters=None):
        dp, cp, dh, ch = counters or self.counters[name]
        return cp - dp - dh if ACCOUNTS[name][0] == "credit" else dp - cp - ch

    def try_apply(self, changes):
        """Apply (name, signed, kind) changes if no floor breaks; kind is posted, hold or release."""
        after = {name: list(c) for name, c in self.counters.items()}
        for name, signed, kind in changes:
            c = after[name]
            if kind == "posted":
                c[0 if signed > 0 else 1] += abs(signed)
            elif kind == "hold":
                c[2 if signed > 0 else 3] += abs(signed)
            else:
                c[2 if signed > 0 else 3] -= abs(signed)
        for name in {n for n, _, _ in changes}:
            if not ACCOUNTS[name][1] and self.available(name, after[name]) < 0:
                return False
        self.counters = after
        return True


def legs_of(signed: dict[str, int], codes):
    return [debit(codes[n], v) if v > 0 else credit(codes[n], -v) for n, v in signed.items() if v]


def check_balances(session, model, codes):
    for name in NAMES:
        bal = ledger.balance(session, codes[name])
        dp, cp, dh, ch = model.counters[name]
        posted = cp - dp if ACCOUNTS[name][0] == "credit" else dp - cp
        assert (bal.posted, bal.pending_debits, bal.pending_credits, bal.available) == (
            posted, dh, ch, model.available(name)), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(operations, min_size=1, max_size=25))
def test_random_operations_keep_the_invariants(session, steps):
    nested = session.begin_nested()
    try:
        run(session, steps)
    finally:
        nested.rollback()


def run(session, steps):
    tag = uuid.uuid4().hex[:10]
    codes = {}
    for name, (side, negative, mode) in ACCOUNTS.items():
        codes[name] = f"{name}:{tag}"
        ledger.open_account(session, codes[name], normal_side=side, allow_negative=negative, mode=mode,
                            slices=3 if mode == "sliced" else None)
    model = Model()
    for op, a, b in steps:
        if op in ("post", "hold"):
            (src, dst), amount = a, b
            signed = {src: amount, dst: -amount}
            key = uuid.uuid4().hex
            call = (lambda key=key, signed=signed, op=op: (
                ledger.post if op == "post" else ledger.hold)(
                    session, kind="move", idempotency_key=key, entries=legs_of(signed, codes)))
            ok = model.try_apply([(n, v, "posted" if op == "post" else "hold") for n, v in signed.items()])
            if ok:
                txn = call()
                model.requests.append((call, key, txn))
                if op == "post":
                    model.posted.append([txn, dict(signed)])
                else:
                    model.holds.append([txn, dict(signed), True])
            else:
                try:
                    call()
                    raise AssertionError("a posting the model refuses went through")
                except RuleViolation as exc:
                    assert exc.code == "insufficient_funds"
        elif op == "capture" and model.holds:
            entry = model.holds[a % len(model.holds)]
            txn, signed, open_ = entry
            amount = b
            if not open_:
                try:
                    ledger.post_pending(session, txn, amount=amount, idempotency_key=uuid.uuid4().hex)
                    raise AssertionError("a closed hold was posted again")
                except Conflict:
                    continue
            held = max(signed.values())
            if amount is not None and amount > held:
                try:
                    ledger.post_pending(session, txn, amount=amount)
                    raise AssertionError("captured more than was held")
                except RuleViolation as exc:
                    assert exc.code == "exceeds_original"
                    continue
            take = held if amount is None else amount
            captured = {n: take if v > 0 else -take for n, v in signed.items()}
            assert model.try_apply([(n, v, "release") for n, v in signed.items()]
                                   + [(n, v, "posted") for n, v in captured.items()])
            capture = ledger.post_pending(session, txn, amount=amount)
            entry[2] = False
            model.posted.append([capture, captured])
        elif op == "void" and model.holds:
            entry = model.holds[a % len(model.holds)]
            txn, signed, open_ = entry
            if open_:
                assert model.try_apply([(n, v, "release") for n, v in signed.items()])
                ledger.void_pending(session, txn)
                entry[2] = False
            elif txn.status is ledger.TransactionStatus.VOIDED:
                ledger.void_pending(session, txn)  # voiding twice changes nothing
        elif op == "reverse" and model.posted:
            entry = model.posted[a % len(model.posted)]
            txn, remaining = entry
            left = max(remaining.values())
            if left == 0:
                try:
                    ledger.reverse(session, txn, idempotency_key=uuid.uuid4().hex)
                    raise AssertionError("reversed twice")
                except Conflict:
                    continue
            take = left if b is None or b > left else b
            back = {n: -(take if v > 0 else -take) for n, v in remaining.items()}
            if model.try_apply([(n, v, "posted") for n, v in back.items()]):
                ledger.reverse(session, txn, amount=None if take == left else take,
                               idempotency_key=uuid.uuid4().hex)
                for n, v in back.items():
                    remaining[n] += v
            else:
                try:
                    ledger.reverse(session, txn, amount=None if take == left else take,
                                   idempotency_key=uuid.uuid4().hex)
                    raise AssertionError("a reversal the model refuses went through")
                except RuleViolation as exc:
                    assert exc.code == "insufficient_funds"
        elif op == "replay" and model.requests:
            call, key, txn = model.requests[a % len(model.requests)]
            before = {name: ledger.balance(session, codes[name]) for name in NAMES}
            if b:
                assert call().id == txn.id
            else:
                try:
                    ledger.post(session, kind="other", idempotency_key=key,
                                entries=[debit(codes["bank"], 1), credit(codes["card0"], 1)])
                    raise AssertionError("a key was reused for a different request")
                except Conflict as exc:
                    assert exc.code == "idempotency_conflict"
            assert before == {name: ledger.balance(session, codes[name]) for name in NAMES}
        elif op == "expire":
            later = utcnow() + dt.timedelta(hours=1)
            while ledger.void_expired_holds(session, now=later):
                pass
            for entry in model.holds:
                if entry[2]:
                    assert model.try_apply([(n, v, "release") for n, v in entry[1].items()])
                    entry[2] = False
        elif op == "fold":
            ledger.fold_deltas(session)
        check_balances(session, model, codes)

    report = ledger.verify(session)
    assert report.ok, report.problems
    assert ledger.trial_balance(session).balanced
