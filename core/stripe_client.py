"""The one place the Stripe SDK is configured: API key, API base, time-outs and retries."""

from __future__ import annotations

import functools
from collections.abc import Mapping

import stripe

CONNECT_TIMEOUT_SECONDS = 5.0
DEFAULT_READ_TIMEOUT_SECONDS = 30.0
DEFAULT_MAX_NETWORK_RETRIES = 2
# Each retry backs off up to a few seconds inside a request: keep the worst case short.
MAX_NETWORK_RETRIES = 3


def stripe_configured(config: Mapping) -> bool:
    """Tell whether the configuration names a Stripe API key."""
    return bool(config.get("STRIPE_API_KEY"))


def stripe_client(config: Mapping) -> stripe.StripeClient:
    """Return the SDK client for `config`; an empty STRIPE_API_BASE means Stripe's own API."""
    api_key = config.get("STRIPE_API_KEY") or ""
    if not api_key:
        raise ValueError("STRIPE_API_KEY is not configured")
    read_timeout = float(config.get("STRIPE_TIMEOUT_SECONDS") or DEFAULT_READ_TIMEOUT_SECONDS)
    retries = config.get("STRIPE_MAX_NETWORK_RETRIES")
    retries = DEFAULT_MAX_NETWORK_RETRIES if retries in (None, "") else int(retries)
    return _client(api_key, (config.get("STRIPE_API_BASE") or "").rstrip("/"), read_timeout,
                   max(0, min(retries, MAX_NETWORK_RETRIES)))


@functools.lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, read_timeout: float, retries: int) -> stripe.StripeClient:
    # One client per configuration, shared by every request, so its HTTP connections are reused.
    http = stripe.RequestsClient(timeout=(CONNECT_TIMEOUT_SECONDS, read_timeout))
    bases = {"api": api_base, "connect": api_base, "files": api_base} if api_base else None
    return stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=retries, http_client=http)
