"""Stripe Connect for merchant onboarding: the provider interface, the SDK implementation, and the
stand-in used when the platform has no Stripe key."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Protocol

import stripe

from core.errors import RuleViolation, ServiceUnavailable
from core.stripe_client import stripe_client, stripe_configured

log = logging.getLogger(__name__)


class ConnectProvider(Protocol):
    """Create a merchant's connected account and send the merchant to finish onboarding."""

    def create_account(self, *, merchant_id: str, business_name: str, email: str | None,
                       idempotency_key: str) -> str:
        """Create the merchant's connected account; return its id (`acct_...`)."""
        ...

    def onboarding_link(self, account_id: str, *, refresh_url: str, return_url: str) -> str:
        """Return a single-use URL where the merchant completes onboarding."""
        ...


@contextlib.contextmanager
def _stripe_errors(action: str) -> Iterator[None]:
    """Turn SDK errors into domain errors: the request's fault is 422, Stripe's or ours is 503."""
    try:
        yield
    except (stripe.InvalidRequestError, stripe.IdempotencyError, stripe.CardError) as exc:
        log.warning("Stripe refused to %s: %s %s (request %s)", action, type(exc).__name__, exc.code,
                    exc.request_id)
        raise RuleViolation(f"Stripe refused to {action}: {exc.user_message}", code="stripe_error") from exc
    except stripe.StripeError as exc:
        # Connection failures, time-outs, rate limits, Stripe's own errors, and a key Stripe refuses:
        # none is the merchant's doing, and retrying later (or fixing the key) is the remedy.
        log.error("Stripe failed to %s: %s %s (request %s)", action, type(exc).__name__,
                  exc.user_message, exc.request_id)
        raise ServiceUnavailable("Stripe is unavailable right now; try again later.",
                                 code="stripe_unavailable") from exc


class StripeConnect:
    """Express connected accounts through the official SDK."""

    def __init__(self, client: stripe.StripeClient, *, country: str | None = None):
        self._client = client
        # Without a country Stripe uses the platform's own.
        self._country = country

    def create_account(self, *, merchant_id: str, business_name: str, email: str | None,
                       idempotency_key: str) -> str:
        """Create an Express account able to receive transfers; a retry with the same key returns it again."""
        params: dict = {
            "type": "express",
            "business_profile": {"name": business_name},
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"merchant_id": merchant_id},
        }
        if email:
            params["email"] = email
        if self._country:
            params["country"] = self._country
        with _stripe_errors("create the Connect account"):
            account = self._client.v1.accounts.create(params=params, options={"idempotency_key": idempotency_key})
        return account.id

    def onboarding_link(self, account_id: str, *, refresh_url: str, return_url: str) -> str:
        """Return a fresh account onboarding link (each link works once and expires within minutes)."""
        with _stripe_errors("create the onboarding link"):
            link = self._client.v1.account_links.create(params={
                "account": account_id, "refresh_url": refresh_url, "return_url": return_url,
                "type": "account_onboarding",
            })
        return link.url


class DisabledConnect:
    """Refuse Stripe settlement on a platform configured without a Stripe key."""

    MESSAGE = "Stripe payouts are not configured on this platform; choose bank settlement."

    def create_account(self, *, merchant_id: str, business_name: str, email: str | None,
                       idempotency_key: str) -> str:
        """Refuse: Stripe is not configured."""
        raise RuleViolation(self.MESSAGE, code="stripe_not_configured")

    def onboarding_link(self, account_id: str, *, refresh_url: str, return_url: str) -> str:
        """Refuse: Stripe is not configured."""
        raise RuleViolation(self.MESSAGE, code="stripe_not_configured")


def connect_provider(config: Mapping) -> ConnectProvider:
    """Return the Connect provider the configuration calls for."""
    if not stripe_configured(config):
        return DisabledConnect()
    return StripeConnect(stripe_client(config), country=config.get("STRIPE_CONNECT_COUNTRY") or None)
