import datetime as dt
"""Stripe: the official SDK against the Stripe-shaped test server, Connect onboarding, and the webhook endpoint."""

import base64
import socket
import threading
import time
import uuid

import pytest
import requests
import stripe
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.errors import RuleViolation, ServiceUnavailable
from core.stripe_client import DEFAULT_MAX_NETWORK_RETRIES, MAX_NETWORK_RETRIES, stripe_client
from merchants.connect import DisabledConnect, StripeConnect, connect_provider
from payments import webhooks
from payments.models import StripeEvent
from tests.stripe_server import decode_params, signature_header, webhook_delivery

EXPRESS = {"type": "express", "email": "owner@example.com", "business_profile": {"name": "银川好味餐厅"},
           "capabilities": {"transfers": {"requested": True}}, "metadata": {"merchant_id": "mch_1"}}
WEBHOOK_URL = "/api/v1/webhooks/stripe"


@pytest.fixture
def sdk(stripe_app_config):
    return stripe_client(stripe_app_config)


@pytest.fixture
def connect(stripe_app_config):
    return connect_provider(stripe_app_config)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- the test server, through the SDK -------------------------------------------------------------

def test_the_sdk_creates_an_express_account_in_stripe_wire_format(sdk, stripe_server):
    account = sdk.v1.accounts.create(params=EXPRESS, options={"idempotency_key": "mch_1:account"})
    assert account.id.startswith("acct_") and account.object == "account" and account.type == "express"
    assert (account.charges_enabled, account.payouts_enabled, account.details_submitted) == (False, False, False)
    assert account.capabilities.to_dict() == {"transfers": "inactive"}
    assert account.metadata.to_dict() == {"merchant_id": "mch_1"}
    assert account.business_profile.name == "银川好味餐厅" and account.email == "owner@example.com"

    sent = stripe_server.requests_to("POST", "/v1/accounts")[0]
    assert sent.headers["Authorization"] == f"Bearer {stripe_server.api_key}"
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.idempotency_key == "mch_1:account" and sent.headers["Stripe-Version"]
    assert "capabilities[transfers][requested]=true" in sent.body and "metadata[merchant_id]=mch_1" in sent.body
    assert sent.params == {"type": "express", "email": "owner@example.com", "business_profile": {"name": "银川好味餐厅"},
                           "capabilities": {"transfers": {"requested": "true"}}, "metadata": {"merchant_id": "mch_1"}}

    fetched = sdk.v1.accounts.retrieve(account.id)
    assert fetched.to_dict() == account.to_dict()
    assert [a.id for a in sdk.v1.accounts.list(params={"limit": 10}).data] == [account.id]


def test_an_idempotent_retry_returns_the_first_account_and_other_params_are_refused(sdk, stripe_server):
    first = sdk.v1.accounts.create(params=EXPRESS, options={"idempotency_key": "k-1"})
    again = sdk.v1.accounts.create(params=EXPRESS, options={"idempotency_key": "k-1"})
    assert again.id == first.id and again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(stripe_server.objects("accounts")) == 1

    with pytest.raises(stripe.IdempotencyError) as refused:
        sdk.v1.accounts.create(params=EXPRESS | {"email": "other@example.com"}, options={"idempotency_key": "k-1"})
    assert refused.value.http_status == 400 and "same parameters" in refused.value.user_message
    with pytest.raises(stripe.IdempotencyError):
        sdk.v1.account_links.create(params={"account": first.id, "refresh_url": "https://p.example/r",
                                            "return_url": "https://p.example/d", "type": "account_onboarding"},
                                    options={"idempotency_key": "k-1"})
    assert len(stripe_server.objects("accounts")) == 1
    # Without an explicit key the SDK sends a fresh one per call: two calls, two accounts.
    sdk.v1.accounts.create(params=EXPRESS)
    sdk.v1.accounts.create(params=EXPRESS)
    assert len(stripe_server.objects("accounts")) == 3


def test_an_account_link_points_at_onboarding_that_returns_to_the_platform(sdk, stripe_server):
    account = sdk.v1.accounts.create(params=EXPRESS)
    link = sdk.v1.account_links.create(params={"account": account.id, "refresh_url": "https://p.example/refresh",
                                               "return_url": "https://p.example/done", "type": "account_onboarding"})
    assert link.object == "account_link" and link.url.startswith(stripe_server.url)
    assert link.expires_at > link.created >= int(time.time()) - 5

    page = requests.get(link.url, allow_redirects=False, timeout=5)
    assert page.status_code == 200 and account.id in page.text
    done = requests.post(link.url, allow_redirects=False, timeout=5)
    assert done.status_code == 302 and done.headers["Location"] == "https://p.example/done"
    assert sdk.v1.accounts.retrieve(account.id).payouts_enabled is True
    # A link works once: a second visit is sent to refresh_url for a new link.
    again = requests.get(link.url, allow_redirects=False, timeout=5)
    assert again.status_code == 302 and again.headers["Location"] == "https://p.example/refresh"
    assert stripe_server.events[-1]["type"] == "account.updated"


def test_the_server_answers_errors_as_stripe_does(sdk, stripe_server):
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        sdk.v1.accounts.retrieve("acct_doesnotexist")
    assert (unknown.value.http_status, unknown.value.code) == (404, "resource_missing")
    with pytest.raises(stripe.InvalidRequestError) as no_type:
        sdk.v1.accounts.create(params={"email": "a@example.com"})
    assert (no_type.value.code, no_type.value.param) == ("parameter_missing", "type")
    with pytest.raises(stripe.InvalidRequestError) as typo:
        sdk.v1.accounts.create(params=EXPRESS | {"bussiness_name": "x"})
    assert (typo.value.code, typo.value.param) == ("parameter_unknown", "bussiness_name")
    with pytest.raises(stripe.InvalidRequestError) as china:
        sdk.v1.accounts.create(params=EXPRESS | {"country": "CN"})
    assert china.value.code == "country_unsupported"
    with pytest.raises(stripe.InvalidRequestError) as link:
        sdk.v1.account_links.create(params={"account": "acct_nope", "refresh_url": "https://p.example/r",
                                            "return_url": "https://p.example/d", "type": "account_onboarding"})
    assert (link.value.code, link.value.param) == ("resource_missing", "account")
    assert stripe_server.objects("accounts") == [] and stripe_server.crashes == []

    raw = requests.post(f"{stripe_server.url}/v1/accounts", data={"type": "express"},
                        headers={"Authorization": f"Bearer {stripe_server.api_key}"}, timeout=5)
    assert raw.status_code == 400
    assert raw.json() == {"error": {"type": "invalid_request_error", "param": "capabilities",
                                    "message": "Express accounts must request at least the `transfers` capability."}}
    assert raw.headers["Request-Id"].startswith("req_")


def test_a_wrong_or_missing_key_is_refused_with_401_and_basic_auth_is_accepted(stripe_server, stripe_app_config):
    wrong = stripe_client(stripe_app_config | {"STRIPE_API_KEY": "sk_test_not_the_platform_key"})
    with pytest.raises(stripe.AuthenticationError) as refused:
        wrong.v1.accounts.create(params=EXPRESS)
    assert refused.value.http_status == 401 and "sk_test_not_the_platform_key" not in refused.value.user_message
    assert stripe_server.objects("accounts") == []

    url = f"{stripe_server.url}/v1/accounts"
    assert requests.get(url, timeout=5).status_code == 401
    basic = base64.b64encode(f"{stripe_server.api_key}:".encode()).decode()
    assert requests.get(url, headers={"Authorization": f"Basic {basic}"}, timeout=5).status_code == 200


def test_the_sdk_retries_a_server_error_with_the_same_idempotency_key(stripe_server, stripe_app_config):
    sdk = stripe_client(stripe_app_config | {"STRIPE_MAX_NETWORK_RETRIES": 1})
    stripe_server.fail_next(500, path="/v1/accounts")
    account = sdk.v1.accounts.create(params=EXPRESS)
    tries = stripe_server.requests_to("POST", "/v1/accounts")
    assert [t.status for t in tries] == [500, 200]
    assert tries[0].idempotency_key == tries[1].idempotency_key
    assert [a["id"] for a in stripe_server.objects("accounts")] == [account.id]


def test_bracket_notation_decodes_to_nested_params():
    pairs = [("a[b][c]", "1"), ("items[0][price]", "p1"), ("items[1][price]", "p2"), ("expand[]", "x"),
             ("expand[]", "y"), ("metadata[k]", "")]
    assert decode_params(pairs) == {"a": {"b": {"c": "1"}}, "items": [{"price": "p1"}, {"price": "p2"}],
                                    "expand": ["x", "y"], "metadata": {"k": ""}}


def test_webhook_signatures_are_the_ones_stripe_computes(stripe_server):
    body, headers = webhook_delivery({"id": "evt_1", "object": "event", "type": "x.y", "data": {"object": {}}},
                                     "whsec_abc", timestamp=1_700_000_000)
    assert headers["Stripe-Signature"] == stripe.WebhookSignature.generate_signature_header(
        body.decode(), "whsec_abc", timestamp=1_700_000_000)
    fresh_body, fresh = stripe_server.delivery(stripe_server.emit("x.y", {"id": "obj_1"}))
    event = stripe.Webhook.construct_event(fresh_body, fresh["Stripe-Signature"], stripe_server.webhook_secret)
    assert event.type == "x.y" and event.data.object.id == "obj_1"
    assert signature_header(body, "whsec_abc", 1) != signature_header(body, "whsec_abd", 1)


def test_completing_onboarding_enables_the_account_and_returns_account_updated(sdk, stripe_server):
    account = sdk.v1.accounts.create(params=EXPRESS)
    event = stripe_server.complete_onboarding(account.id)
    assert event["type"] == "account.updated" and event["account"] == account.id and event["id"].startswith("evt_")
    obj = event["data"]["object"]
    assert (obj["id"], obj["payouts_enabled"], obj["details_submitted"]) == (account.id, True, True)
    # Transfers only: Stripe enables charges only with the card_payments capability.
    assert obj["charges_enabled"] is False and obj["capabilities"] == {"transfers": "active"}
    assert event["data"]["previous_attributes"]["payouts_enabled"] is False
    assert sdk.v1.events.retrieve(event["id"]).type == "account.updated"
    assert stripe_server.complete_onboarding(account.id, charges_enabled=True)["data"]["object"]["charges_enabled"]


# --- the SDK client and the Connect provider -------------------------------------------------------

def test_the_client_is_configured_from_app_config_and_shared():
    client = stripe_client({"STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": "http://127.0.0.1:9/"})
    options = client._requestor._options
    assert options.base_addresses["api"] == options.base_addresses["connect"] == "http://127.0.0.1:9"
    assert options.max_network_retries == DEFAULT_MAX_NETWORK_RETRIES
    assert client._requestor._client._timeout == (5.0, 30.0)
    assert stripe_client({"STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": "http://127.0.0.1:9"}) is client
    real = stripe_client({"STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": "", "STRIPE_MAX_NETWORK_RETRIES": 50})
    assert real._requestor._options.base_addresses["api"] == "https://api.stripe.com"
    assert real._requestor._options.max_network_retries == MAX_NETWORK_RETRIES
    with pytest.raises(ValueError):
        stripe_client({"STRIPE_API_KEY": ""})


def test_stripe_connect_creates_an_express_account_once_per_key(connect, stripe_server):
    assert isinstance(connect, StripeConnect)
    account_id = connect.create_account(merchant_id="mch_7", business_name="固原百货", email=None,
                                        idempotency_key="merchant:mch_7:connect")
    assert account_id.startswith("acct_")
    again = connect.create_account(merchant_id="mch_7", business_name="固原百货", email=None,
                                   idempotency_key="merchant:mch_7:connect")
    assert again == account_id and len(stripe_server.objects("accounts")) == 1
    sent = stripe_server.requests_to("POST", "/v1/accounts")[0]
    assert sent.idempotency_key == "merchant:mch_7:connect"
    assert sent.params == {"type": "express", "business_profile": {"name": "固原百货"},
                           "capabilities": {"transfers": {"requested": "true"}}, "metadata": {"merchant_id": "mch_7"}}

    url = connect.onboarding_link(account_id, refresh_url="https://p.example/r", return_url="https://p.example/d")
    assert url.startswith(f"{stripe_server.url}/connect/onboarding/{account_id}/")
    assert stripe_server.requests_to("POST", "/v1/account_links")[0].params == {
        "account": account_id, "refresh_url": "https://p.example/r", "return_url": "https://p.example/d",
        "type": "account_onboarding"}


def test_stripe_connect_sends_the_email_and_the_configured_country(stripe_app_config, stripe_server):
    connect = connect_provider(stripe_app_config | {"STRIPE_CONNECT_COUNTRY": "HK"})
    account_id = connect.create_account(merchant_id="mch_8", business_name="Shop", email="boss@example.com",
                                        idempotency_key="k-8")
    stored = stripe_server.get("accounts", account_id)
    assert (stored["country"], stored["email"], stored["default_currency"]) == ("HK", "boss@example.com", "hkd")


def test_stripe_connect_maps_refusals_to_422_and_outages_to_503(connect, stripe_server, stripe_app_config):
    with pytest.raises(RuleViolation) as invalid:
        connect.onboarding_link("acct_unknown", refresh_url="https://p.example/r", return_url="https://p.example/d")
    assert invalid.value.code == "stripe_error" and "No such account" in invalid.value.message
    with pytest.raises(RuleViolation) as bad_email:
        connect.create_account(merchant_id="m", business_name="n", email="not-an-email", idempotency_key="k-e")
    assert bad_email.value.code == "stripe_error" and bad_email.value.status == 422
    connect.create_account(merchant_id="m", business_name="n", email=None, idempotency_key="k-reused")
    with pytest.raises(RuleViolation) as reused:
        connect.create_account(merchant_id="m", business_name="other", email=None, idempotency_key="k-reused")
    assert reused.value.code == "stripe_error"

    stripe_server.fail_next(500)
    with pytest.raises(ServiceUnavailable) as outage:
        connect.create_account(merchant_id="m", business_name="n", email=None, idempotency_key="k-500")
    assert outage.value.status == 503 and "sk_test" not in outage.value.message
    stripe_server.fail_next(429, "invalid_request_error", "Too many requests", code="rate_limit")
    with pytest.raises(ServiceUnavailable):
        connect.create_account(merchant_id="m", business_name="n", email=None, idempotency_key="k-429")

    wrong_key = connect_provider(stripe_app_config | {"STRIPE_API_KEY": "sk_test_wrong"})
    with pytest.raises(ServiceUnavailable):
        wrong_key.create_account(merchant_id="m", business_name="n", email=None, idempotency_key="k-401")
    unreachable = connect_provider(stripe_app_config | {"STRIPE_API_BASE": closed_port_url()})
    with pytest.raises(ServiceUnavailable):
        unreachable.onboarding_link("acct_x", refresh_url="https://p.example/r", return_url="https://p.example/d")


def test_without_a_key_connect_is_disabled_and_says_to_choose_bank_settlement():
    provider = connect_provider({"STRIPE_API_KEY": "", "STRIPE_API_BASE": ""})
    assert isinstance(provider, DisabledConnect)
    with pytest.raises(RuleViolation) as refused:
        provider.create_account(merchant_id="m", business_name="n", email=None, idempotency_key="k")
    assert refused.value.code == "stripe_not_configured" and "bank settlement" in refused.value.message
    with pytest.raises(RuleViolation) as link:
        provider.onboarding_link("acct_x", refresh_url="https://p.example/r", return_url="https://p.example/d")
    assert link.value.code == "stripe_not_configured"


# --- the webhook endpoint ---------------------------------------------------------------------------

def deliver(client, body: bytes, headers: dict):
    return client.post(WEBHOOK_URL, data=body, headers=headers)


def stored_event(session, event_id):
    return session.scalar(select(StripeEvent).where(StripeEvent.event_id == event_id))


@pytest.fixture
def recorded(monkeypatch):
    """Register a handler for `test.recorded` events that notes what it was called with."""
    calls = []
    monkeypatch.setitem(webhooks.HANDLERS, "test.recorded", lambda session, event: calls.append(event["id"]))
    return calls


def test_a_signed_event_is_processed_once_and_a_replay_is_ignored(client, session, stripe_server,
                                                                  stripe_app_config, recorded):
    event = stripe_server.emit("test.recorded", {"id": "obj_1", "object": "thing"})
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 200 and resp.get_json() == {"received": True, "handled": True}
    assert recorded == [event["id"]]
    row = stored_event(session, event["id"])
    assert row.type == "test.recorded" and row.processed_at >= row.received_at

    # Stripe redelivers with a fresh signature; the event itself is the same.
    replay = deliver(client, *stripe_server.delivery(event))
    assert replay.status_code == 200 and replay.get_json() == {"received": True, "handled": False}
    assert recorded == [event["id"]]


def test_an_event_type_without_a_handler_is_acknowledged_and_recorded_unprocessed(client, session, stripe_server,
                                                                                 stripe_app_config):
    event = stripe_server.emit("customer.created", {"id": "cus_1", "object": "customer"})
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 200 and resp.get_json() == {"received": True, "handled": False}
    row = stored_event(session, event["id"])
    assert row.type == "customer.created" and row.processed_at is None


def test_a_failing_handler_leaves_nothing_so_stripe_can_retry(client, session, stripe_server, stripe_app_config,
                                                              monkeypatch):
    def refuse(session, event):
        raise RuleViolation("not yet", code="not_yet")

    monkeypatch.setitem(webhooks.HANDLERS, "test.failing", refuse)
    event = stripe_server.emit("test.failing", {"id": "obj_2"})
    assert deliver(client, *stripe_server.delivery(event)).status_code == 422
    assert stored_event(session, event["id"]) is None
    monkeypatch.setitem(webhooks.HANDLERS, "test.failing", lambda session, event: None)
    assert deliver(client, *stripe_server.delivery(event)).get_json()["handled"] is True


def test_account_updated_calls_the_merchant_service_with_the_account_state(client, stripe_server, stripe_app_config,
                                                                           sdk, monkeypatch):
    import merchants.service

    calls = []
    monkeypatch.setattr(merchants.service, "apply_stripe_account_update",
                        lambda session, account_id, **flags: calls.append((account_id, flags)))
    account = sdk.v1.accounts.create(params=EXPRESS)
    event = stripe_server.complete_onboarding(account.id)
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.get_json() == {"received": True, "handled": True}
    assert calls == [(account.id, {"charges_enabled": False, "payouts_enabled": True, "details_submitted": True,
                                   "as_of": dt.datetime.fromtimestamp(event["created"], dt.timezone.utc)})]


def test_account_updated_marks_the_merchant_enabled(client, session, cipher, stripe_server, stripe_app_config, sdk):
    from merchants.models import Merchant
    from tests import factories as f

    merchant = f.merchant(session, cipher)
    account = sdk.v1.accounts.create(params=EXPRESS | {"metadata": {"merchant_id": merchant.public_id}})
    merchant.stripe_account_id, merchant.stripe_status = account.id, "pending"
    session.commit()
    event = stripe_server.complete_onboarding(account.id, charges_enabled=True)
    assert deliver(client, *stripe_server.delivery(event)).get_json()["handled"] is True
    session.expire_all()
    assert session.get(Merchant, merchant.id).stripe_status == "enabled"


def test_an_account_updated_event_without_the_account_state_is_refused(client, stripe_server, stripe_app_config):
    event = stripe_server.emit("account.updated", {"id": "acct_x", "object": "account", "charges_enabled": "yes"})
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 400 and resp.get_json()["error"] == "malformed_event"


@pytest.mark.parametrize("tamper", ["no header", "wrong secret", "other body", "garbled header", "stale", "v0 only"])
def test_a_delivery_without_a_valid_signature_is_refused(client, session, stripe_server, stripe_app_config,
                                                        recorded, tamper):
    event = stripe_server.emit("test.recorded", {"id": "obj_3"})
    body, headers = stripe_server.delivery(event)
    if tamper == "no header":
        del headers["Stripe-Signature"]
    elif tamper == "wrong secret":
        headers["Stripe-Signature"] = signature_header(body, "whsec_someone_else")
    elif tamper == "other body":
        body = body.replace(b"obj_3", b"obj_4")
    elif tamper == "garbled header":
        headers["Stripe-Signature"] = "t=abc,v1=,,=="
    elif tamper == "stale":
        _, headers = stripe_server.delivery(event, timestamp=int(time.time()) - 301)
    elif tamper == "v0 only":
        headers["Stripe-Signature"] = headers["Stripe-Signature"].replace("v1=", "v0=")
    resp = deliver(client, body, headers)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["code"] == 400 and resp.get_json()["error"] == "invalid_signature"
    assert recorded == [] and stored_event(session, event["id"]) is None


def test_a_recent_signature_within_the_tolerance_is_accepted(client, stripe_server, stripe_app_config, recorded):
    event = stripe_server.emit("test.recorded", {"id": "obj_5"})
    resp = deliver(client, *stripe_server.delivery(event, timestamp=int(time.time()) - 240))
    assert resp.status_code == 200 and recorded == [event["id"]]


@pytest.mark.parametrize("body, error", [
    (b"{not json", "malformed_json"),
    (b"", "malformed_json"),
    (b"[1, 2]", "malformed_event"),
    (b'"event"', "malformed_event"),
    (b'{"id": "evt_1", "object": "event", "type": "x.y"}', "malformed_event"),
    (b'{"id": 5, "object": "event", "type": "x.y", "data": {"object": {}}}', "malformed_event"),
    (b'{"id": "evt_1", "object": "event", "type": "x.y", "data": {"object": []}}', "malformed_event"),
    (b'{"id": "evt_1", "object": "v2.core.event", "type": "x.y"}', "malformed_json"),
    (b'{"id": "evt_1", "object": "event", "type": "' + b"x" * 101 + b'", "data": {"object": {}}}', "malformed_event"),
])
def test_a_signed_body_that_is_not_a_stripe_event_is_refused_with_400(client, stripe_server, stripe_app_config,
                                                                      body, error):
    headers = {"Content-Type": "application/json",
               "Stripe-Signature": signature_header(body, stripe_server.webhook_secret)}
    resp = deliver(client, body, headers)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["error"] == error


DEEP = b"[" * 50_000 + b"]" * 50_000


@pytest.mark.parametrize("body, headers", [
    (DEEP, {"Content-Type": "text/plain", "Stripe-Signature": "t=1,v1=00"}),
    (DEEP, {"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"}),
    (b"\xff\xfe\x00garbage", {"Content-Type": "application/octet-stream", "Stripe-Signature": "t=1,v1=00"}),
    (b"{}", {"Content-Type": "text/plain", "Stripe-Signature": "t=99999999999999999999999,v1=00"}),
    (b'{"a": "\\u0000"}', {"Content-Type": "application/json", "Stripe-Signature": "v1=00"}),
    (b"x" * 10_000, {"Content-Type": "application/x-www-form-urlencoded", "Stripe-Signature": "t=1," * 1000}),
])
def test_garbage_is_never_a_server_error(client, stripe_app_config, body, headers):
    resp = deliver(client, body, headers)
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)


def test_a_signed_body_nested_too_deep_for_the_parser_is_refused_with_400(client, stripe_server, stripe_app_config):
    headers = {"Content-Type": "text/plain", "Stripe-Signature": signature_header(DEEP, stripe_server.webhook_secret)}
    resp = deliver(client, DEEP, headers)
    assert resp.status_code == 400 and resp.get_json()["error"] == "malformed_json"


def test_an_invalid_utf8_body_with_a_valid_hmac_is_refused(client, stripe_server, stripe_app_config):
    import hashlib
    import hmac

    body = b'{"id": "evt_\xff"}'
    t = int(time.time())
    digest = hmac.new(stripe_server.webhook_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    resp = deliver(client, body, {"Content-Type": "application/json", "Stripe-Signature": f"t={t},v1={digest}"})
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_signature"


def test_without_a_webhook_secret_the_endpoint_answers_503(client, app, stripe_server, monkeypatch):
    monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET", "")
    event = stripe_server.emit("test.recorded", {"id": "obj_6"})
    resp = deliver(client, *stripe_server.delivery(event))
    assert resp.status_code == 503 and resp.get_json()["code"] == 503


def test_the_webhook_needs_no_csrf_token_or_bearer_and_is_documented(client, app, stripe_app_config):
    assert app.url_map.bind("localhost").match(WEBHOOK_URL, method="POST")[0] == "stripe_webhooks.receive_stripe_event"
    doc = client.get("/api/v1/openapi.json").get_json()
    operation = doc["paths"][WEBHOOK_URL]["post"]
    assert "security" not in operation
    assert {"200", "400", "503"} <= set(operation["responses"])
    assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["Stripe-Signature"]


def test_an_event_processed_by_another_delivery_first_is_not_processed_again(app, session, recorded):
    event = {"id": "evt_race", "object": "event", "type": "test.recorded", "data": {"object": {}}}
    session.add(StripeEvent(event_id="evt_race", type="test.recorded"))
    session.commit()
    assert webhooks.handle_event(session, event) is False and recorded == []


def test_concurrent_deliveries_of_one_event_process_it_once(postgres, engine, recorded):
    event = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "test.recorded", "data": {"object": {}}}
    first = Session(engine)
    outcome = {}

    def second_delivery():
        with Session(engine) as other:
            outcome["handled"] = webhooks.handle_event(other, event)

    try:
        first.add(StripeEvent(event_id=event["id"], type=event["type"]))
        first.flush()
        racer = threading.Thread(target=second_delivery)
        racer.start()
        racer.join(0.5)
        assert racer.is_alive(), "the second delivery should wait on the first one's uncommitted row"
        first.commit()
        racer.join(10)
        assert outcome == {"handled": False} and recorded == []
    finally:
        first.rollback()
        first.execute(delete(StripeEvent).where(StripeEvent.event_id == event["id"]))
        first.commit()
        first.close()


def test_a_handler_is_registered_once_per_type():
    with pytest.raises(ValueError):
        webhooks.register("account.updated")(lambda session, event: None)
    assert webhooks.HANDLERS["account.updated"] is webhooks.account_updated
