"""Pytest fixtures for the Stripe test server.

Import them into tests/conftest.py:

    from tests.stripe_fixtures import stripe_app_config, stripe_server, stripe_server_session  # noqa: F401

`stripe_server` is one server for the whole run, emptied before each test; `stripe_app_config`
points the session's `app` at it (API key, API base, webhook secret) for one test and restores
the previous configuration afterwards. Code under test builds its SDK client from `app.config`
through `core.stripe_client`, so nothing else needs to change.
"""

from __future__ import annotations

import pytest

from tests.stripe_server import StripeServer


@pytest.fixture(scope="session")
def stripe_server_session():
    """Start one Stripe test server for the run."""
    with StripeServer() as server:
        yield server


@pytest.fixture
def stripe_server(stripe_server_session):
    """The Stripe test server, with no objects, requests, keys or faults left from another test."""
    stripe_server_session.reset()
    yield stripe_server_session
    # A bug in the test server reaches the code under test as a Stripe 500; name it instead.
    crashes = list(stripe_server_session.crashes)
    stripe_server_session.reset()
    assert not crashes, f"the Stripe test server failed: {crashes!r}"


@pytest.fixture
def stripe_app_config(app, stripe_server, monkeypatch):
    """Configure the app to use the Stripe test server for this test; return the settings applied."""
    settings = {
        "STRIPE_API_KEY": stripe_server.api_key,
        "STRIPE_API_BASE": stripe_server.url,
        "STRIPE_WEBHOOK_SECRET": stripe_server.webhook_secret,
        # A failed call is reported at once instead of after the SDK's back-off sleeps.
        "STRIPE_MAX_NETWORK_RETRIES": 0,
    }
    for key, value in settings.items():
        monkeypatch.setitem(app.config, key, value)
    return settings
