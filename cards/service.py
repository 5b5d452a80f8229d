"""Card use cases: issuance (one and in bulk), the lifecycle, replacement, purses, the PIN, statements
and the member's payment codes.

A card's money lives in ledger accounts, one per purse (`card:<card>:general`,
`card:<card>:aid:<program>`), credit-normal and never negative. The card row is the lock that
serializes what changes a card's state: every lifecycle change takes it FOR UPDATE, and so must
any flow that moves money through the card's purses while relying on its state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Iterable

from sqlalchemy import Select, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cards.models import (LIVE_STATUSES, Card, CardIssuanceRun, CardStatus, IssuanceStatus, Purse,
                          PurseKind)
from cards.numbers import (looks_like_payment_code, mask_card_number, new_card_number,
                           new_payment_code_digits, normalize_card_number, pin_problems)
from core import audit
from core.auth import Actor, hash_password, verify_password
from core.crypto import FieldCipher
from core.db import dialect_insert, utcnow
from core.errors import (Conflict, Forbidden, NotFound, RuleViolation, ServiceUnavailable, TooManyAttempts,
                         ValidationFailed)
from core.ids import new_public_id
from core.models import FINANCE_ROLES, AuditEvent, Role
from core.pagination import Page, paginate
from core.redis import KeyValueStore, StoreUnavailable
from members import service as members
from members.models import Member, MemberStatus, Union
from members.validators import birth_date_of
from payments import ledger
from payments.ledger import credit, debit

NUMBER_CONTEXT = "card.number"
NUMBER_ATTEMPTS = 5
READ_ROLES = (Role.UNION_ADMIN, *FINANCE_ROLES, Role.AUDITOR)
ISSUANCE_CHUNK = 1000
ISSUANCE_STALE_AFTER = dt.timedelta(minutes=5)


def general_account(card_public_id: str) -> str:
    """Return the ledger account code of a card's general purse."""
    return f"card:{card_public_id}:general"


def aid_account(card_public_id: str, program_id: str) -> str:
    """Return the ledger account code of a card's restricted purse for one aid program."""
    return f"card:{card_public_id}:aid:{program_id}"


def card_snapshot(card: Card) -> dict:
    """Return the fields the audit log keeps for a card (the number masked)."""
    return {"number": card.number_masked, "status": card.status.value,
            "member_id": card.member.public_id if card.member else None,
            "frozen_by_staff": card.frozen_by_staff}


# --- finding cards ---------------------------------------------------------------------------

def _may_see(session: Session, actor: Actor, card: Card) -> bool:
    if actor.role == Role.MEMBER:
        return card.member_id == actor.member_id
    if actor.role == Role.UNION_ADMIN:
        root = members.scope_root(session, actor)
        return root is None or card.member.union.path.startswith(root.path)
    return actor.role in READ_ROLES


def get_card(session: Session, actor: Actor, public_id: str, *, lock: bool = False) -> Card:
    """Return a card the actor may see (a member: only their own), or raise NotFound."""
    query = select(Card).where(Card.public_id == public_id)
    if lock:
        query = query.with_for_update(of=Card).execution_options(populate_existing=True)
    card = session.scalar(query)
    if card is None or not _may_see(session, actor, card):
        raise NotFound("No such card.")
    return card


def owned_card(session: Session, actor: Actor, public_id: str, *, lock: bool = False) -> Card:
    """Return a card that belongs to the acting member, or raise NotFound."""
    card = get_card(session, actor, public_id, lock=lock)
    if actor.role != Role.MEMBER or card.member_id != actor.member_id:
        raise NotFound("No such card.")
    return card


def live_card_of(session: Session, member_id: int) -> Card | None:
    """Return the member's live card (issued, active, frozen or lost), if any."""
    return session.scalar(select(Card).where(Card.member_id == member_id, Card.status.in_(LIVE_STATUSES)))


def find_by_number(session: Session, cipher: FieldCipher, number: str) -> Card | None:
    """Look a card up by its full number through the blind index."""
    number = normalize_card_number(number)
    if not number.isascii() or not number.isdigit():
        return None
    return session.scalar(select(Card).where(Card.number_index == cipher.blind_index(number, NUMBER_CONTEXT)))


def successor(session: Session, card: Card) -> Card:
    """Follow replacements to the card that carries this one's money now (the card itself if none)."""
    current = card
    for _ in range(100):
        nxt = session.scalar(select(Card).where(Card.replaces_id == current.id))
        if nxt is None:
            return current
        current = nxt
    raise RuntimeError(f"replacement chain of {card.public_id} does not end")


def list_cards(session: Session, actor: Actor, *, member_id: str | None = None, union_id: str | None = None,
               status: CardStatus | None = None, limit: int, cursor: str | None) -> Page:
    """List the cards the actor may see: a member their own, an admin those of their subtree."""
    query: Select = select(Card).join(Member, Card.member_id == Member.id).join(Union, Member.union_id == Union.id)
    if actor.role == Role.MEMBER:
        query = query.where(Card.member_id == actor.member_id)
    else:
        root = members.scope_root(session, actor)
        if root is not None:
            query = query.where(Union.path.startswith(root.path))
    if member_id:
        member = members.get_member(session, actor, member_id)
        query = query.where(Card.member_id == member.id)
    if union_id:
        union = members.get_union(session, actor, union_id)
        query = query.where(Union.path.startswith(union.path))
    if status is not None:
        query = query.where(Card.status == status)
    return paginate(session, query, Card.id, limit=limit, cursor=cursor)


# --- issuance --------------------------------------------------------------------------------

def _card_fields(cipher: FieldCipher, prefix: str) -> dict:
    number = new_card_number(prefix)
    return {"public_id": new_public_id("card"), "number_enc": cipher.encrypt(number, NUMBER_CONTEXT),
            "number_index": cipher.blind_index(number, NUMBER_CONTEXT), "number_masked": mask_card_number(number)}


def _number_taken(session: Session, fields: dict) -> bool:
    return session.scalar(select(Card.id).where(Card.number_index == fields["number_index"])) is not None


def _new_card(session: Session, cipher: FieldCipher, prefix: str, **values) -> Card:
    """Add a card with a fresh number (drawn again in the unlikely event it is taken) and its general purse."""
    for _ in range(NUMBER_ATTEMPTS):
        fields = _card_fields(cipher, prefix)
        if not _number_taken(session, fields):
            break
    else:
        raise Conflict("Could not draw a free card number; try again.", code="card_number_exhausted")
    card = Card(**fields, **values)
    session.add(card)
    session.flush()
    _open_purse(session, card, PurseKind.GENERAL, None, "", None, None)
    return card


def _open_purse(session: Session, card: Card, kind: PurseKind, program_id: str | None, label: str,
                allowed_categories: list[str] | None, expires_at: dt.datetime | None) -> Purse:
    code = general_account(card.public_id) if kind == PurseKind.GENERAL else aid_account(card.public_id, program_id)
    ledger.open_account(session, code, normal_side="credit", owner_kind="card", owner_id=card.public_id,
                        metadata={"purse": kind.value, "program_id": program_id})
    purse = Purse(card=card, card_id=card.id, kind=kind, program_id=program_id, label=label, account_code=code,
                  allowed_categories=allowed_categories, expires_at=expires_at)
    session.add(purse)
    session.flush()
    return purse


def issue_card(session: Session, cipher: FieldCipher, actor: Actor, member_id: str, *, prefix: str) -> Card:
    """Issue a card to an active member of the admin's subtree who has no live card."""
    member = members.get_member(session, actor, member_id)
    if member.status != MemberStatus.ACTIVE:
        raise RuleViolation("Only an active member can be issued a card.", code="member_not_active")
    # Lock the member so two admins issuing at once queue up; the partial unique index backs it.
    session.scalar(select(Member.id).where(Member.id == member.id).with_for_update())
    existing = live_card_of(session, member.id)
    if existing is not None:
        raise Conflict(f"The member already has a card ({existing.number_masked}, {existing.status.value}).",
                       code="member_has_card")
    try:
        card = _new_card(session, cipher, prefix, member=member, member_id=member.id, status=CardStatus.ISSUED,
                         issued_by_id=actor.user_id)
    except IntegrityError:
        session.rollback()
        raise Conflict("The member already has a card.", code="member_has_card") from None
    audit.record(session, actor, "card.issued", "card", card.public_id, after=card_snapshot(card))
    session.commit()
    return card


# --- the lifecycle ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Transition:
    action: str
    allowed_from: frozenset[CardStatus]
    to: CardStatus
    by_member: bool  # may the owner do it, or staff only


TRANSITIONS = {
    t.action: t for t in (
        Transition("activate", frozenset({CardStatus.ISSUED}), CardStatus.ACTIVE, True),
        Transition("freeze", frozenset({CardStatus.ACTIVE}), CardStatus.FROZEN, True),
        Transition("unfreeze", frozenset({CardStatus.FROZEN}), CardStatus.ACTIVE, True),
        Transition("report_lost", frozenset({CardStatus.ISSUED, CardStatus.ACTIVE, CardStatus.FROZEN}),
                   CardStatus.LOST, True),
        Transition("replace", frozenset({CardStatus.ISSUED, CardStatus.ACTIVE, CardStatus.FROZEN, CardStatus.LOST}),
                   CardStatus.REPLACED, True),
        Transition("cancel", frozenset({CardStatus.ISSUED, CardStatus.ACTIVE, CardStatus.FROZEN, CardStatus.LOST}),
                   CardStatus.CANCELLED, False),
    )
}
_REFUSALS = {
    CardStatus.CANCELLED: "The card is cancelled; a cancelled card never comes back.",
    CardStatus.REPLACED: "The card has been replaced; use the new card.",
    CardStatus.LOST: "The card is reported lost; replace it.",
}
_ACTION_WORDS = {"activate": "activated", "freeze": "frozen", "unfreeze": "unfrozen", "report_lost": "reported lost",
                 "replace": "replaced", "cancel": "cancelled"}


def _check_transition(actor: Actor, card: Card, action: str) -> Transition:
    rule = TRANSITIONS[action]
    if actor.role not in (Role.MEMBER, Role.UNION_ADMIN) or (actor.role == Role.MEMBER and not rule.by_member):
        raise Forbidden("Only the union can do that to a card.")
    if card.status not in rule.allowed_from:
        reason = _REFUSALS.get(card.status, f"A card that is {card.status.value} cannot be {_ACTION_WORDS[action]}.")
        raise Conflict(reason, code="invalid_card_state")
    if action == "unfreeze" and card.frozen_by_staff and actor.role == Role.MEMBER:
        raise Conflict("The union froze this card; ask the union to unfreeze it.", code="frozen_by_union")
    return rule


def change_state(session: Session, actor: Actor, card_id: str, action: str) -> Card:
    """Apply a lifecycle action (activate, freeze, unfreeze, report_lost, cancel) to a card."""
    if action not in TRANSITIONS or action == "replace":
        raise ValueError(action)
    card = get_card(session, actor, card_id, lock=True)
    rule = _check_transition(actor, card, action)
    before = card_snapshot(card)
    if action == "cancel":
        _require_empty(session, card)
    card.status = rule.to
    now = utcnow()
    if action == "activate":
        card.activated_at = now
    elif action == "freeze":
        card.frozen_by_staff = actor.role != Role.MEMBER
    elif action == "unfreeze":
        card.frozen_by_staff = False
    elif action == "cancel":
        card.closed_at = now
        for purse in card.purses:
            if purse.closed_at is None:
                ledger.close_account(session, purse.account_code)
                purse.closed_at = now
    audit.record(session, actor, f"card.{_ACTION_WORDS[action].replace(' ', '_')}", "card", card.public_id,
                 before=before, after=card_snapshot(card))
    session.commit()
    return card


def _require_empty(session: Session, card: Card) -> None:
    for purse in card.purses:
        if purse.closed_at is not None:
            continue
        bal = ledger.balance(session, purse.account_code)
        if bal.posted or bal.pending_debits or bal.pending_credits:
            raise Conflict("The card still holds money; replace it to keep the balance, or let it be spent "
                           "or returned before cancelling.", code="card_has_balance")


def replace_card(session: Session, cipher: FieldCipher, actor: Actor, card_id: str, *, prefix: str) -> Card:
    """Replace a card: a new card with the same PIN, every purse balance moved to it in one ledger
    transaction, the old card and its purse accounts closed. Returns the new card."""
    old = get_card(session, actor, card_id, lock=True)
    _check_transition(actor, old, "replace")
    before = card_snapshot(old)
    balances = []
    for purse in old.purses:
        if purse.closed_at is not None:
            continue
        bal = ledger.balance(session, purse.account_code)
        if bal.pending_debits or bal.pending_credits:
            raise Conflict("A payment on this card is still being processed; try again in a few minutes.",
                           code="card_has_pending")
        balances.append((purse, bal.posted))
    now = utcnow()
    old.status = CardStatus.REPLACED
    old.closed_at = now
    session.flush()
    new = _new_card(session, cipher, prefix, member=old.member, member_id=old.member_id, status=CardStatus.ISSUED,
                    pin_hash=old.pin_hash, pin_set_at=old.pin_set_at, replaces_id=old.id, issued_by_id=actor.user_id)
    targets = {None: general_account(new.public_id)}
    for purse, _amount in balances:
        if purse.kind == PurseKind.RESTRICTED:
            targets[purse.program_id] = _open_purse(session, new, PurseKind.RESTRICTED, purse.program_id, purse.label,
                                                    purse.allowed_categories, purse.expires_at).account_code
    legs = []
    for purse, amount in balances:
        if amount > 0:
            legs += [debit(purse.account_code, amount), credit(targets[purse.program_id], amount)]
    if legs:
        ledger.post(session, kind="card_replacement", idempotency_key=f"{old.public_id}:replace",
                    reference=new.public_id, entries=legs,
                    metadata={"from_card": old.public_id, "to_card": new.public_id})
    for purse, _amount in balances:
        ledger.close_account(session, purse.account_code)
        purse.closed_at = now
    audit.record(session, actor, "card.replaced", "card", old.public_id, before=before,
                 after={**card_snapshot(old), "replaced_by": new.public_id,
                        "moved": {p.account_code: amount for p, amount in balances if amount}})
    audit.record(session, actor, "card.issued", "card", new.public_id,
                 after={**card_snapshot(new), "replaces": old.public_id})
    session.commit()
    return new


def replaced_by(session: Session, card: Card) -> Card | None:
    """Return the card that replaced this one directly, if any."""
    return session.scalar(select(Card).where(Card.replaces_id == card.id))


def reveal_number(session: Session, cipher: FieldCipher, actor: Actor, card_id: str) -> str:
    """Return the whole card number to its owner (and note that it was shown)."""
    card = owned_card(session, actor, card_id)
    audit.record(session, actor, "card.number_shown", "card", card.public_id)
    session.commit()
    return cipher.decrypt(card.number_enc, NUMBER_CONTEXT)


# --- purses ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PurseBalance:
    purse: str
    program_id: str | None
    label: str
    amount: int
    available: int
    currency: str
    expires_at: dt.datetime | None
    allowed_categories: list[str] | None
    closed: bool


def purse_balances(session: Session, card: Card) -> list[PurseBalance]:
    """Return each open purse of a card with its posted and available balance."""
    out = []
    for purse in card.purses:
        if purse.closed_at is not None:
            continue
        bal = ledger.balance(session, purse.account_code)
        out.append(PurseBalance(purse.kind.value, purse.program_id, purse.label, bal.posted, bal.available,
                                purse.currency, purse.expires_at, purse.allowed_categories, False))
    return out


def open_restricted_purse(session: Session, card: Card, *, program_id: str, label: str,
                          allowed_categories: Iterable[str] | None, expires_at: dt.datetime | None) -> Purse:
    """Return the card's purse for an aid program, opening it with the program's rules if it has none."""
    existing = session.scalar(select(Purse).where(Purse.card_id == card.id, Purse.program_id == program_id))
    if existing is not None:
        return existing
    if not card.is_live:
        raise Conflict("The card is closed.", code="invalid_card_state")
    categories = sorted(set(allowed_categories)) if allowed_categories is not None else None
    return _open_purse(session, card, PurseKind.RESTRICTED, program_id, label, categories, expires_at)


def open_restricted_purses(session: Session, cards: Iterable[tuple[int, str]], *, program_id: str, label: str,
                           allowed_categories: Iterable[str] | None, expires_at: dt.datetime | None) -> dict[int, str]:
    """Make sure each card (id, public id) has its purse for an aid program, opening the missing ones in
    bulk; return each card's purse account code."""
    wanted = {card_id: aid_account(public_id, program_id) for card_id, public_id in cards}
    if not wanted:
        return {}
    have = set(session.scalars(select(Purse.card_id).where(Purse.program_id == program_id,
                                                           Purse.card_id.in_(list(wanted)))))
    missing = {card_id: code for card_id, code in wanted.items() if card_id not in have}
    if missing:
        ledger.open_accounts(session, list(missing.values()), normal_side="credit", owner_kind="card")
        categories = sorted(set(allowed_categories)) if allowed_categories is not None else None
        now = utcnow()
        table = Purse.__table__
        session.execute(dialect_insert(session, table).on_conflict_do_nothing(), [
            {"card_id": card_id, "kind": PurseKind.RESTRICTED.value, "program_id": program_id, "label": label,
             "account_code": code, "currency": "CNY", "allowed_categories": categories, "expires_at": expires_at,
             "created_at": now} for card_id, code in missing.items()])
    return wanted


def spending_order(card: Card, category: str, now: dt.datetime) -> list[Purse]:
    """Return the purses that may pay a merchant of `category` now, in the order they are drawn on:
    restricted aid purses that allow the category, soonest expiry first (never-expiring last), then
    the general purse. Expired or closed purses are left out."""
    restricted, general = [], []
    for purse in card.purses:
        if purse.closed_at is not None:
            continue
        if purse.kind == PurseKind.GENERAL:
            general.append(purse)
        elif purse.allows(category) and (purse.expires_at is None or purse.expires_at > now):
            restricted.append(purse)
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    restricted.sort(key=lambda p: (p.expires_at or far, p.id))
    return restricted + general


def card_statement(session: Session, card: Card, *, limit: int, cursor: str | None) -> ledger.StatementPage:
    """Return a page of the card's transactions across all its purses, newest first."""
    return ledger.statement(session, [p.account_code for p in card.purses], limit=limit, cursor=cursor,
                            newest_first=True)


# --- the PIN ---------------------------------------------------------------------------------

class PinGuard:
    """Count wrong PINs per member in the key-value store; lock PIN use after too many in a row.

    Keyed to the member, not the card, so a replacement card does not reset the count. Fails
    closed: with the store unreachable no PIN is checked at all.
    """

    def __init__(self, store: KeyValueStore, *, max_failures: int, lockout: int):
        self.store, self.max_failures, self.lockout = store, max_failures, lockout

    def _locked(self, key: str) -> None:
        remaining = self.store.ttl(f"pin:lock:{key}")
        if remaining:
            raise TooManyAttempts(remaining, f"Too many wrong PINs; PIN use is locked for {remaining // 60 + 1} "
                                  "minutes.", code="pin_locked")

    def verify(self, card: Card, pin: str) -> None:
        """Check the PIN of a card; raise when it is wrong, locked, or not set."""
        if not card.pin_hash:
            raise RuleViolation("Set a PIN for the card first.", code="pin_not_set")
        key = card.member.public_id
        try:
            self._locked(key)
            # Counted before checking, so parallel guesses cannot slip in under the limit.
            count = self.store.incr(f"pin:fail:{key}", self.lockout)
            if count > self.max_failures:
                raise TooManyAttempts(self.lockout, "Too many PIN attempts at once.", code="pin_locked")
            if isinstance(pin, str) and len(pin) == 6 and verify_password(card.pin_hash, pin):
                self.store.delete(f"pin:fail:{key}")
                return
            if count >= self.max_failures:
                self.store.set(f"pin:lock:{key}", "1", self.lockout)
                self.store.delete(f"pin:fail:{key}")
                raise TooManyAttempts(self.lockout, f"Wrong PIN. PIN use is locked for {self.lockout // 60} minutes.",
                                      code="pin_locked")
        except StoreUnavailable:
            raise ServiceUnavailable("PIN checks are unavailable for a moment; try again.") from None
        left = self.max_failures - count
        raise RuleViolation(f"Wrong PIN; {left} {'try' if left == 1 else 'tries'} left before PIN use is locked.",
                            code="wrong_pin")

    def failures(self, card: Card) -> int:
        """Return the wrong PINs counted for the card's member in the current run."""
        try:
            return int(self.store.get(f"pin:fail:{card.member.public_id}") or 0)
        except StoreUnavailable:
            return 0


def set_pin(session: Session, cipher: FieldCipher, guard: PinGuard, actor: Actor, card_id: str, *, pin: str,
            current_pin: str | None) -> Card:
    """Set the card's PIN (the owner); changing one needs the current PIN."""
    card = owned_card(session, actor, card_id, lock=True)
    if card.status not in (CardStatus.ISSUED, CardStatus.ACTIVE, CardStatus.FROZEN):
        raise Conflict(_REFUSALS.get(card.status, "The card cannot take a PIN now."), code="invalid_card_state")
    changing = card.pin_hash is not None
    if changing:
        if not current_pin:
            raise ValidationFailed({"current_pin": ["Enter the current PIN to change it."]})
        guard.verify(card, current_pin)
    member = card.member
    id_number = cipher.decrypt(member.id_number_enc, members.ID_CONTEXT)
    phone = cipher.decrypt(member.phone_enc, members.PHONE_CONTEXT)
    try:
        born = birth_date_of(id_number)
    except ValueError:
        born = None
    problems = pin_problems(pin, born=born, id_number=id_number, phone=phone)
    if problems:
        raise ValidationFailed({"pin": problems}, code="weak_pin")
    card.pin_hash = hash_password(pin)
    card.pin_set_at = utcnow()
    audit.record(session, actor, "card.pin_changed" if changing else "card.pin_set", "card", card.public_id)
    session.commit()
    return card


# --- payment codes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class IssuedCode:
    code: str
    card_id: str
    expires_at: dt.datetime
    expires_in: int


class PaymentCodes:
    """Short-lived, single-use codes a member shows and a cashier scans.

    A code is 18 digits drawn from the CSPRNG; the server keeps it, under a keyed hash of its digits,
    for its time to live, so a code is good only if the server issued it, and the store holds no
    usable codes. Redeeming takes it out in one atomic step: of two tills scanning the same code,
    one wins. A redeemed code leaves a marker naming who redeemed it, so the same request retried
    (after a dropped connection, with the same consumer key) is recognized, and everyone else is told
    the code was used. The store's own clock decides expiry, so skewed app-server or phone clocks
    cannot stretch a code's life.
    """

    USED_TTL = 600

    def __init__(self, store: KeyValueStore, key: bytes, *, ttl: int, per_minute: int):
        self.store, self.key, self.ttl, self.per_minute = store, key, ttl, per_minute

    def _slot(self, code: str) -> str:
        return hmac.new(self.key, code.encode(), hashlib.sha256).hexdigest()[:40]

    def issue(self, session: Session, actor: Actor, card_id: str) -> IssuedCode:
        """Issue a payment code for the acting member's active card."""
        card = owned_card(session, actor, card_id)
        usable_card(card)
        try:
            if self.store.incr(f"paycode:rate:{card.public_id}", 60) > self.per_minute:
                raise TooManyAttempts(60, "Too many payment codes in a minute; wait a moment.")
            record = json.dumps({"card": card.public_id})
            for _ in range(5):
                code = new_payment_code_digits()
                if self.store.set(f"paycode:{self._slot(code)}", record, self.ttl, only_if_absent=True):
                    break
            else:
                raise ServiceUnavailable("Could not issue a payment code; try again.")
        except StoreUnavailable:
            raise ServiceUnavailable("Payment codes are unavailable for a moment; try again.") from None
        return IssuedCode(code, card.public_id, utcnow() + dt.timedelta(seconds=self.ttl), self.ttl)

    def peek(self, card: Card, code: str) -> bool:
        """Tell whether a code is live and belongs to the card (for drawing it), without using it."""
        if not looks_like_payment_code(code):
            return False
        try:
            raw = self.store.get(f"paycode:{self._slot(code)}")
        except StoreUnavailable:
            raise ServiceUnavailable("Payment codes are unavailable for a moment; try again.") from None
        return raw is not None and json.loads(raw).get("card") == card.public_id

    def redeem(self, session: Session, code: str, *, consumer: str, card_id: str | None = None) -> Card:
        """Use a code once and return its card, which must be active; raise a clear refusal otherwise.

        `consumer` names the request (e.g. the till's user and Idempotency-Key): the same consumer
        may redeem the same code again, for a retried request; `card_id`, when given, must match.
        """
        code = (code or "").strip()
        if not looks_like_payment_code(code):
            raise RuleViolation("That is not a member payment code.", code="invalid_payment_code")
        slot = self._slot(code)
        try:
            raw = self.store.take(f"paycode:{slot}", mark=(f"paycode:used:{slot}", consumer, self.USED_TTL))
            if raw is not None:
                card_public_id = json.loads(raw)["card"]
            else:
                used = self.store.get(f"paycode:used:{slot}")
                if used is None:
                    raise RuleViolation("This payment code has expired or is not valid; ask the member to show "
                                        "a new one.", code="payment_code_expired")
                by, _, record = used.rpartition("\n")
                if by != consumer:
                    raise RuleViolation("This payment code has already been used; ask the member to show a new one.",
                                        code="payment_code_used")
                card_public_id = json.loads(record)["card"]
        except StoreUnavailable:
            raise ServiceUnavailable("Payment codes cannot be checked for a moment; try again.") from None
        card = session.scalar(select(Card).where(Card.public_id == card_public_id))
        if card is None:
            raise RuleViolation("This payment code is not valid.", code="invalid_payment_code")
        if card_id is not None and card_id != card.public_id:
            raise RuleViolation("This payment code belongs to another card.", code="payment_code_mismatch")
        usable_card(card)
        return card


_UNUSABLE = {
    CardStatus.ISSUED: ("card_not_active", "The card has not been activated yet."),
    CardStatus.FROZEN: ("card_frozen", "The card is frozen."),
    CardStatus.LOST: ("card_lost", "The card is reported lost."),
    CardStatus.REPLACED: ("card_replaced", "The card has been replaced; use the new card."),
    CardStatus.CANCELLED: ("card_cancelled", "The card is cancelled."),
}


def usable_card(card: Card) -> Card:
    """Return the card if it may pay now, else raise a 409 naming why not."""
    if card.status != CardStatus.ACTIVE:
        code, message = _UNUSABLE[card.status]
        raise Conflict(message, code=code)
    return card


# --- bulk issuance ---------------------------------------------------------------------------

def _eligible(union: Union) -> Select:
    live = select(Card.id).where(Card.member_id == Member.id, Card.status.in_(LIVE_STATUSES)).exists()
    return (select(Member.id).join(Union, Member.union_id == Union.id)
            .where(Union.path.startswith(union.path), Member.status == MemberStatus.ACTIVE, ~live))


def count_eligible(session: Session, actor: Actor, union_id: str) -> int:
    """Count the active members of a union's subtree (in the actor's scope) who have no live card."""
    union = members.get_union(session, actor, union_id)
    return session.scalar(select(func.count()).select_from(_eligible(union).subquery()))


def start_bulk_issuance(session: Session, actor: Actor, union_id: str) -> CardIssuanceRun:
    """Record a run issuing cards to every active member without one in a union's subtree."""
    union = members.get_union(session, actor, union_id)
    busy = session.scalar(select(CardIssuanceRun.public_id).where(
        CardIssuanceRun.union_id == union.id,
        CardIssuanceRun.status.in_((IssuanceStatus.QUEUED, IssuanceStatus.RUNNING))))
    if busy:
        raise Conflict(f"Cards are already being issued for this union ({busy}).", code="issuance_running")
    total = count_eligible(session, actor, union_id)
    run = CardIssuanceRun(public_id=new_public_id("cis"), union_id=union.id, created_by_id=actor.user_id,
                          total=total, status=IssuanceStatus.QUEUED)
    session.add(run)
    session.flush()
    audit.record(session, actor, "card.bulk_issuance_started", "card_issuance", run.public_id,
                 after={"union_id": union.public_id, "total": total})
    session.commit()
    return run


def get_issuance(session: Session, actor: Actor, run_id: str) -> CardIssuanceRun:
    """Return a bulk issuance run of the actor's scope."""
    run = session.scalar(select(CardIssuanceRun).where(CardIssuanceRun.public_id == run_id))
    if run is None:
        raise NotFound("No such issuance run.")
    union = session.get(Union, run.union_id)
    root = members.scope_root(session, actor)
    if root is not None and not union.path.startswith(root.path):
        raise NotFound("No such issuance run.")
    return run


def run_bulk_issuance(session: Session, cipher: FieldCipher, run_id: str, *, prefix: str,
                      chunk: int = ISSUANCE_CHUNK) -> CardIssuanceRun:
    """Work through a run in committed chunks from where it stopped; safe to start twice."""
    run = session.scalar(select(CardIssuanceRun).where(CardIssuanceRun.public_id == run_id)
                         .with_for_update(of=CardIssuanceRun))
    if run is None:
        raise NotFound("No such issuance run.")
    if run.status == IssuanceStatus.COMPLETED:
        return run
    run.status = IssuanceStatus.RUNNING
    run.started_at = run.started_at or utcnow()
    run.progressed_at = utcnow()
    run.error = None
    session.commit()
    union = session.get(Union, run.union_id)
    actor = Actor(run.created_by_id, "card-issuance", Role.UNION_ADMIN)
    try:
        while True:
            run = session.scalar(select(CardIssuanceRun).where(CardIssuanceRun.id == run.id)
                                 .with_for_update(of=CardIssuanceRun).execution_options(populate_existing=True))
            member_ids = list(session.scalars(_eligible(union).where(Member.id > run.cursor)
                                              .order_by(Member.id).limit(chunk)))
            if not member_ids:
                break
            issued = _issue_chunk(session, cipher, actor, run, member_ids, prefix)
            run.cursor = member_ids[-1]
            run.processed += len(member_ids)
            run.issued += issued
            run.skipped += len(member_ids) - issued
            run.progressed_at = utcnow()
            session.commit()
    except Exception as exc:
        session.rollback()
        run = session.scalar(select(CardIssuanceRun).where(CardIssuanceRun.public_id == run_id))
        run.status = IssuanceStatus.FAILED
        run.error = f"{type(exc).__name__}: stopped after {run.processed} members; resume to go on."
        session.commit()
        raise
    run.status = IssuanceStatus.COMPLETED
    run.total = max(run.total, run.processed)
    run.finished_at = utcnow()
    audit.record(session, actor, "card.bulk_issuance_completed", "card_issuance", run.public_id,
                 after={"issued": run.issued, "skipped": run.skipped})
    session.commit()
    return run


def _issue_chunk(session: Session, cipher: FieldCipher, actor: Actor, run: CardIssuanceRun,
                 member_ids: list[int], prefix: str) -> int:
    """Issue cards to a chunk of members; return how many. A member whose freshly drawn number happened to
    be taken already is given another one; a member who got a card meanwhile is skipped."""
    issued = 0
    pending = list(member_ids)
    for _ in range(NUMBER_ATTEMPTS):
        done = _insert_cards(session, cipher, actor, run, pending, prefix)
        issued += len(done)
        pending = [m for m in pending if m not in done]
        if pending:
            carded = set(session.scalars(select(Card.member_id).where(Card.member_id.in_(pending),
                                                                      Card.status.in_(LIVE_STATUSES))))
            pending = [m for m in pending if m not in carded]
        if not pending:
            break
    return issued


def _insert_cards(session: Session, cipher: FieldCipher, actor: Actor, run: CardIssuanceRun,
                  member_ids: list[int], prefix: str) -> set[int]:
    """Insert cards, purse accounts, purses and audit entries; return the members who got a card."""
    now = utcnow()
    rows = [{**_card_fields(cipher, prefix), "member_id": member_id} for member_id in member_ids]
    if session.get_bind().dialect.name == "postgresql":
        return _issue_chunk_postgres(session, actor, run, rows, now)
    # A member who got a card meanwhile (or a number drawn twice) is skipped, not failed.
    table = Card.__table__
    stmt = (dialect_insert(session, table).on_conflict_do_nothing()
            .returning(table.c.id, table.c.public_id, table.c.number_masked, table.c.member_id))
    inserted = session.execute(stmt, [{**row, "status": CardStatus.ISSUED, "frozen_by_staff": False,
                                       "issued_by_id": actor.user_id, "issued_at": now, "updated_at": now}
                                      for row in rows]).all()
    if not inserted:
        return set()
    codes = [general_account(r.public_id) for r in inserted]
    ledger.open_accounts(session, codes, normal_side="credit", owner_kind="card")
    session.execute(Purse.__table__.insert(), [
        {"card_id": r.id, "kind": PurseKind.GENERAL.value, "program_id": None, "label": "",
         "account_code": general_account(r.public_id), "currency": "CNY", "created_at": now} for r in inserted])
    member_public = dict(session.execute(select(Member.id, Member.public_id)
                                         .where(Member.id.in_([r.member_id for r in inserted]))).all())
    session.execute(AuditEvent.__table__.insert(), [
        {"occurred_at": now, "actor_id": actor.user_id, "actor_label": actor.label, "action": "card.issued",
         "object_type": "card", "object_id": r.public_id, "before": None,
         "after": {"number": r.number_masked, "status": "issued", "member_id": member_public[r.member_id],
                   "run": run.public_id}, "request_id": None, "ip": None} for r in inserted])
    return {r.member_id for r in inserted}


# The same as above on PostgreSQL in one statement, its rows passed as arrays (no statement of thousands of
# parameters to build and parse).
_PG_ISSUE = text("""
WITH new_cards AS (
    INSERT INTO cards (public_id, number_enc, number_index, number_masked, member_id, status, frozen_by_staff,
                       issued_by_id, issued_at, updated_at)
    SELECT c.public_id, c.number_enc, c.number_index, c.number_masked, c.member_id, 'issued', false, :by, :now, :now
    FROM unnest(CAST(:public_ids AS text[]), CAST(:encs AS text[]), CAST(:indexes AS text[]),
                CAST(:masks AS text[]), CAST(:members AS bigint[]))
        AS c(public_id, number_enc, number_index, number_masked, member_id)
    ON CONFLICT DO NOTHING
    RETURNING id, public_id, number_masked, member_id
), new_accounts AS (
    INSERT INTO ledger_accounts (code, currency, normal_side, allow_negative, mode, slices, owner_kind, owner_id,
                                 metadata, status, created_at)
    SELECT 'card:' || public_id || '\\:general', 'CNY', 'credit', false, 'single', 1, 'card', NULL, '{}', 'open', :now
    FROM new_cards
    RETURNING id
), new_balances AS (
    INSERT INTO ledger_balances (account_id, slice, normal_side, allow_negative, debits_posted, credits_posted,
                                 debits_pending, credits_pending)
    SELECT id, 0, 'credit', false, 0, 0, 0, 0 FROM new_accounts
), new_purses AS (
    INSERT INTO card_purses (card_id, kind, program_id, label, account_code, currency, created_at)
    SELECT id, 'general', NULL, '', 'card:' || public_id || '\\:general', 'CNY', :now FROM new_cards
), new_audit AS (
    INSERT INTO audit_events (occurred_at, actor_id, actor_label, action, object_type, object_id, after)
    SELECT :now, :by, :label, 'card.issued', 'card', n.public_id,
           jsonb_build_object('number', n.number_masked, 'status', 'issued', 'member_id', m.public_id, 'run', CAST(:run AS text))
    FROM new_cards n JOIN members m ON m.id = n.member_id
)
SELECT member_id FROM new_cards
""")


def _issue_chunk_postgres(session: Session, actor: Actor, run: CardIssuanceRun, rows: list[dict], now) -> set[int]:
    return set(session.execute(_PG_ISSUE, {
        "public_ids": [r["public_id"] for r in rows], "encs": [r["number_enc"] for r in rows],
        "indexes": [r["number_index"] for r in rows], "masks": [r["number_masked"] for r in rows],
        "members": [r["member_id"] for r in rows], "by": actor.user_id, "label": actor.label, "now": now,
        "run": run.public_id}).scalars())


def stalled(run: CardIssuanceRun, now: dt.datetime | None = None) -> bool:
    """Tell whether a run stopped (failed, or queued/running without progress for a while)."""
    if run.status == IssuanceStatus.FAILED:
        return True
    now = now or utcnow()
    since = run.progressed_at or run.created_at
    return run.status in (IssuanceStatus.QUEUED, IssuanceStatus.RUNNING) and now - since > ISSUANCE_STALE_AFTER
