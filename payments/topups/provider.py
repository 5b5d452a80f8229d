"""Where a top-up's payment is taken: Stripe PaymentIntents through the official SDK, or nothing at
all on a platform configured without a Stripe key."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import stripe

from core.errors import RuleViolation, ServiceUnavailable
from core.stripe_client import stripe_client, stripe_configured

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intent:
    """A PaymentIntent as the platform needs it: its id, and the secret the member's checkout uses."""

    id: str
    client_secret: str
    status: str


class PaymentIntents(Protocol):
    """Ask the payment provider for a payment the member then completes in its checkout."""

    def create(self, *, amount: int, currency: str, metadata: dict[str, str], description: str,
               idempotency_key: str) -> Intent:
        """Create a payment of `amount` minor units; a retry with the same key returns the same one."""
        ...


@contextlib.contextmanager
def _stripe_errors() -> Iterator[None]:
    """Turn SDK errors into domain errors: a refusal of the request is 422, an outage 503."""
    try:
        yield
    except (stripe.InvalidRequestError, stripe.IdempotencyError, stripe.CardError) as exc:
        log.warning("Stripe refused to create a PaymentIntent: %s %s (request %s)", type(exc).__name__, exc.code,
                    exc.request_id)
        raise RuleViolation(f"Stripe refused the payment: {exc.user_message}", code="stripe_error") from exc
    except stripe.StripeError as exc:
        # Connection failures, time-outs, rate limits, Stripe's own errors, a key Stripe refuses: none
        # is the member's doing, and trying again later (or fixing the key) is the remedy.
        log.error("Stripe failed to create a PaymentIntent: %s %s (request %s)", type(exc).__name__,
                  exc.user_message, exc.request_id)
        raise ServiceUnavailable("The payment service is unavailable right now; try again later.",
                                 code="stripe_unavailable") from exc


class StripePaymentIntents:
    """PaymentIntents through the official SDK, paid with whatever methods the Stripe account enables."""

    def __init__(self, client: stripe.StripeClient):
        self._client = client

    def create(self, *, amount: int, currency: str, metadata: dict[str, str], description: str,
               idempotency_key: str) -> Intent:
        """Create the PaymentIntent; Stripe answers a retry with the same key with the same intent."""
        params = {"amount": amount, "currency": currency.lower(), "metadata": metadata, "description": description,
                  "automatic_payment_methods": {"enabled": True}}
        with _stripe_errors():
            intent = self._client.v1.payment_intents.create(params=params,
                                                            options={"idempotency_key": idempotency_key})
        return Intent(intent.id, intent.client_secret, intent.status)


class DisabledPaymentIntents:
    """Refuse top-ups on a platform configured without a Stripe key."""

    MESSAGE = "Top-ups are not available: card payments through Stripe are not configured on this platform."

    def create(self, *, amount: int, currency: str, metadata: dict[str, str], description: str,
               idempotency_key: str) -> Intent:
        """Refuse: Stripe is not configured."""
        raise ServiceUnavailable(self.MESSAGE, code="stripe_not_configured")


def payment_intents(config: Mapping) -> PaymentIntents:
    """Return the PaymentIntents provider the configuration calls for."""
    if not stripe_configured(config):
        return DisabledPaymentIntents()
    return StripePaymentIntents(stripe_client(config))
