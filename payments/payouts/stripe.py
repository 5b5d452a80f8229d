"""Stripe Connect payouts through the official SDK: a transfer from the platform to the merchant's
connected account, then a payout from that account to its bank; and the stand-in used when the
platform has no Stripe key.

Both requests carry idempotency keys derived from our payout id, so a retry returns what the first
attempt made. Stripe forgets a key after 24 hours, so a later retry first looks for a transfer an
earlier attempt made (its `transfer_group` is our payout id); a second payout of the same money is
refused by Stripe itself, as the connected account's balance holds the transferred amount once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator

import stripe

from payments.payouts.provider import SendFailed, Sent

log = logging.getLogger(__name__)

# Stripe's refusals of the request itself (bad account, capability missing, balance too low): retrying
# the same request will not help until something changes. Everything else is an outage.
REFUSALS = (stripe.InvalidRequestError, stripe.IdempotencyError, stripe.CardError, stripe.PermissionError)


@contextlib.contextmanager
def _stripe_errors(action: str, payout_id: str, transfer_id: str | None = None) -> Iterator[None]:
    """Turn SDK errors into SendFailed, naming what was refused and keeping any transfer already made."""
    try:
        yield
    except REFUSALS as exc:
        log.warning("Stripe refused to %s for payout %s: %s %s (request %s)", action, payout_id,
                    type(exc).__name__, exc.code, exc.request_id)
        raise SendFailed(f"Stripe refused to {action}: {exc.user_message or exc}",
                         code=exc.code or "stripe_refused", transfer_id=transfer_id) from exc
    except stripe.StripeError as exc:
        # Connection failures, time-outs, rate limits, Stripe's own errors, a key Stripe refuses.
        log.error("Stripe failed to %s for payout %s: %s %s (request %s)", action, payout_id, type(exc).__name__,
                  exc.user_message, exc.request_id)
        raise SendFailed(f"Stripe could not {action}: it is unavailable right now; it is tried again later.",
                         code="stripe_unavailable", transfer_id=transfer_id) from exc


class StripePayouts:
    """Payouts through Stripe Connect: a transfer to the connected account, then a payout to its bank."""

    def __init__(self, client: stripe.StripeClient):
        self._client = client

    def send(self, *, payout_id: str, amount: int, currency: str, account_id: str, transfer_id: str | None = None,
             attempts: int = 0) -> Sent:
        """Transfer the amount to the connected account (once) and pay it out to the account's bank."""
        if transfer_id is None and attempts:
            transfer_id = self._earlier_transfer(payout_id, account_id)
        if transfer_id is None:
            with _stripe_errors("make the transfer", payout_id):
                transfer = self._client.v1.transfers.create(
                    params={"amount": amount, "currency": currency.lower(), "destination": account_id,
                            "transfer_group": payout_id, "metadata": {"payout_id": payout_id},
                            "description": f"Union member card payout {payout_id}"},
                    options={"idempotency_key": f"{payout_id}:transfer"})
            transfer_id = transfer.id
        with _stripe_errors("make the payout", payout_id, transfer_id):
            payout = self._client.v1.payouts.create(
                params={"amount": amount, "currency": currency.lower(), "metadata": {"payout_id": payout_id},
                        "description": f"Union member card payout {payout_id}"},
                options={"stripe_account": account_id, "idempotency_key": f"{payout_id}:payout"})
        return Sent(transfer_id, payout.id, dt.datetime.fromtimestamp(payout.created, dt.timezone.utc))

    def reclaim(self, *, payout_id: str, transfer_id: str, amount: int) -> str:
        """Reverse what is left of the transfer (once: a retry with the same key is the same reversal)."""
        with _stripe_errors("look up the transfer", payout_id, transfer_id):
            transfer = self._client.v1.transfers.retrieve(transfer_id).to_dict()
        left = min(amount, transfer["amount"] - transfer.get("amount_reversed", 0))
        if left <= 0:
            # Already taken back (by us earlier, or by Stripe's dashboard): name the latest reversal.
            reversals = (transfer.get("reversals") or {}).get("data") or []
            return reversals[0]["id"] if reversals else transfer_id
        with _stripe_errors("reverse the transfer", payout_id, transfer_id):
            reversal = self._client.v1.transfers.reversals.create(
                transfer_id, params={"amount": left, "metadata": {"payout_id": payout_id}},
                options={"idempotency_key": f"{payout_id}:reversal"})
        return reversal.id

    def _earlier_transfer(self, payout_id: str, account_id: str) -> str | None:
        """Return the transfer an earlier attempt made for this payout, if Stripe has one."""
        with _stripe_errors("look up earlier transfers", payout_id):
            found = self._client.v1.transfers.list(params={"transfer_group": payout_id, "destination": account_id,
                                                           "limit": 10})
        for transfer in found.data:
            made = transfer.to_dict()
            if (made.get("metadata") or {}).get("payout_id") == payout_id and not made.get("reversed"):
                return transfer.id
        return None


class DisabledStripePayouts:
    """Refuse Stripe payouts on a platform configured without a Stripe key (they stay ready)."""

    MESSAGE = "Stripe payouts are not configured on this platform."

    def send(self, *, payout_id: str, amount: int, currency: str, account_id: str, transfer_id: str | None = None,
             attempts: int = 0) -> Sent:
        """Refuse: Stripe is not configured."""
        raise SendFailed(self.MESSAGE, code="stripe_not_configured")

    def reclaim(self, *, payout_id: str, transfer_id: str, amount: int) -> str:
        """Refuse: Stripe is not configured."""
        raise SendFailed(self.MESSAGE, code="stripe_not_configured")
