"""Stripe events about payouts: registered with the webhook endpoint's dispatcher.

Our payout is found by the `payout_id` in the object's metadata, else by Stripe's transfer or payout
id. An event about a payout that is not ours is accepted and ignored. Events arrive in any order:
each carries its `created` time, and one older than what the payout last heard changes nothing; a
`payout.paid` ends the payout paid whether or not `transfer.created` came first, and a
`payout.failed` after `payout.paid` gives the returned money back to the merchant's payable. The
dispatcher (payments.webhooks.handle_event) runs each event once, in the transaction that records it.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session

from core.errors import BadRequest, Conflict
from payments.payouts import service
from payments.payouts.models import Payout
from payments.webhooks import register

log = logging.getLogger(__name__)


def _object(event: dict) -> dict:
    obj = event["data"]["object"]
    if not (isinstance(obj.get("id"), str) and 0 < len(obj["id"]) <= 255):
        raise BadRequest(f"The {event['type']} event lacks the object's id.", code="malformed_event")
    return obj


def _text(value, limit: int = 255) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _metadata_payout_id(obj: dict) -> str | None:
    metadata = obj.get("metadata")
    return _text(metadata.get("payout_id"), 32) if isinstance(metadata, dict) else None


def _created(event: dict) -> dt.datetime | None:
    created = event.get("created")
    if isinstance(created, int) and not isinstance(created, bool) and 0 < created < 2**37:
        return dt.datetime.fromtimestamp(created, dt.timezone.utc)
    return None


def _find(session: Session, event: dict, obj: dict, *, transfer: bool) -> Payout | None:
    """Lock our payout the object is about, or log and return None for someone else's."""
    payout = service.payout_for_stripe(session, payout_id=_metadata_payout_id(obj),
                                       transfer_id=obj["id"] if transfer else None,
                                       stripe_payout_id=None if transfer else obj["id"])
    if payout is None:
        log.info("Stripe event %s (%s) about %s is no payout of ours; ignored", event["id"], event["type"], obj["id"])
        return None
    account = event.get("account")
    if not transfer and account is not None and payout.stripe_account_id not in (None, account):
        log.error("Stripe event %s (%s) comes from account %s, not payout %s's %s; ignored", event["id"],
                  event["type"], account, payout.public_id, payout.stripe_account_id)
        return None
    ids = {"transfer_id": obj["id"]} if transfer else {"stripe_payout_id": obj["id"]}
    if not service.record_stripe_ids(session, payout, **ids):
        log.error("Stripe event %s (%s) names %s for payout %s, which has %s and %s; ignored", event["id"],
                  event["type"], obj["id"], payout.public_id, payout.stripe_transfer_id, payout.stripe_payout_id)
        return None
    return payout


def _apply(event: dict, payout: Payout, outcome) -> None:
    """Run a state change, logging (not refusing) news that is stale or impossible for the payout's state."""
    try:
        result = outcome()
    except Conflict as exc:
        # Acknowledged all the same: Stripe would only send it again, and it would still not apply.
        log.warning("Stripe event %s (%s) does not apply to payout %s (%s): %s", event["id"], event["type"],
                    payout.public_id, payout.status.value, exc.message)
        return
    if result == "stale":
        log.info("Stripe event %s (%s) is older than payout %s's state (%s); ignored", event["id"], event["type"],
                 payout.public_id, payout.status.value)


@register("transfer.created")
@register("transfer.updated")
def transfer_seen(session: Session, event: dict) -> None:
    """Keep the transfer's id on our payout (its status changes only with the payout's own events)."""
    _find(session, event, _object(event), transfer=True)


@register("transfer.reversed")
def transfer_reversed(session: Session, event: dict) -> None:
    """A transfer taken back in full: the money is back with the platform, and the payout has failed."""
    transfer = _object(event)
    payout = _find(session, event, transfer, transfer=True)
    if payout is None:
        return
    if transfer.get("reversed") is not True:
        log.warning("Transfer %s of payout %s was partly reversed (%r of %r); left to finance", transfer["id"],
                    payout.public_id, transfer.get("amount_reversed"), transfer.get("amount"))
        return
    _apply(event, payout, lambda: service.record_failed(
        session, service.STRIPE, payout, at=_created(event), code="transfer_reversed",
        message="Stripe reversed the transfer to the merchant's account."))


@register("payout.paid")
def payout_paid(session: Session, event: dict) -> None:
    """The merchant's bank accepted the payout: it is paid."""
    obj = _object(event)
    payout = _find(session, event, obj, transfer=False)
    if payout is not None:
        _apply(event, payout, lambda: service.record_paid(session, service.STRIPE, payout, at=_created(event)))


@register("payout.failed")
def payout_failed(session: Session, event: dict) -> None:
    """The merchant's bank refused or returned the payout: it failed, and the money is owed to the merchant."""
    obj = _object(event)
    payout = _find(session, event, obj, transfer=False)
    if payout is None:
        return
    code = _text(obj.get("failure_code"), service.CODE_MAX) or "payout_failed"
    message = _text(obj.get("failure_message"), service.MESSAGE_MAX) or "Stripe reports the payout failed."
    _apply(event, payout, lambda: service.record_failed(session, service.STRIPE, payout, at=_created(event),
                                                        code=code, message=message))
