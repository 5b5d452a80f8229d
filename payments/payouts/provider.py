"""Where a Stripe payout is sent: the provider interface, what it answers, and the provider the
configuration picks. Bank payouts have no provider call: they leave in the bank transfer file
(`payments.payouts.bankfile`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Sent:
    """What the provider made for a payout: the transfer to the merchant's account, the payout from it to
    the merchant's bank, and when the provider made the payout (by its own clock)."""

    transfer_id: str
    payout_id: str
    created: dt.datetime


class SendFailed(Exception):
    """The provider did not send the payout; it stays ready and is tried again later.

    `transfer_id` names a transfer that was made before the failure (the payout step failed), so the
    next attempt pays out that transfer instead of making another.
    """

    def __init__(self, message: str, *, code: str, transfer_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.transfer_id = transfer_id


class PayoutProvider(Protocol):
    """Send a payout: money from the platform to the merchant's connected account and on to its bank."""

    def send(self, *, payout_id: str, amount: int, currency: str, account_id: str, transfer_id: str | None = None,
             attempts: int = 0) -> Sent:
        """Send `amount` minor units for our payout `payout_id`; return the provider's ids.

        Sending the same payout again never pays it twice: `transfer_id` is the transfer an earlier
        attempt made, and `attempts` says whether one may have made it unbeknown to us. Raise
        SendFailed when it was not sent.
        """
        ...

    def reclaim(self, *, payout_id: str, transfer_id: str, amount: int) -> str:
        """Take back what is left of a transfer whose payout to the merchant's bank failed (the money is on the
        merchant's Stripe balance, and settlement pays it again); return the reversal's id. Doing it again
        takes nothing more. Raise SendFailed when the provider did not do it."""
        ...


def payout_provider(config: Mapping) -> PayoutProvider:
    """Return the Stripe payout provider the configuration calls for (a refusing one without a key)."""
    # Imported here: the Stripe module builds on the types above.
    from core.stripe_client import stripe_client, stripe_configured
    from payments.payouts.stripe import DisabledStripePayouts, StripePayouts

    if not stripe_configured(config):
        return DisabledStripePayouts()
    return StripePayouts(stripe_client(config))
