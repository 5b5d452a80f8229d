"""A Stripe-shaped HTTP server for tests: the official SDK talks to it as it would to api.stripe.com.

It speaks Stripe's wire format (form-encoded requests with bracket notation, JSON objects with
`object` and prefixed ids, the `{"error": {...}}` body with Stripe's statuses), checks the API key,
honours `Idempotency-Key`, logs what it received, and signs webhook deliveries as Stripe does.

A resource is a builder registered with `@resource(...)` over an in-memory store: accounts, account
links, payment intents, transfers, payouts and balance transactions below. Money is followed as Stripe
does: a transfer moves it from the platform to a connected account's balance, a payout (made with the
`Stripe-Account` header) takes it from that balance to the account's bank, and every movement leaves a
balance transaction on the account it touched.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import html
import json
import re
import secrets
import string
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import parse_qsl

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

DEFAULT_API_KEY = "sk_test_unioncard_platform_key"
DEFAULT_WEBHOOK_SECRET = "whsec_unioncard_test_secret"
# The version the SDK pins; events carry it as Stripe stamps the endpoint's version on them.
API_VERSION = "2026-10-28.endive"
ACCOUNT_LINK_TTL_SECONDS = 300
IDEMPOTENCY_KEY_MAX_LENGTH = 255
LIST_LIMIT_MAX = 100
_ALPHABET = string.ascii_letters + string.digits
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


class StripeError(Exception):
    """An error Stripe would answer with: an HTTP status and the `error` object."""

    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.code, self.param = status, type_, message, code, param
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"type": self.type, "message": self.message}
        if self.code:
            error["code"] = self.code
        if self.param:
            error["param"] = self.param
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> StripeError:
    """Return an `invalid_request_error`, the type Stripe uses for bad parameters and unknown objects."""
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def missing(param: str) -> StripeError:
    return invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


@dataclasses.dataclass(frozen=True)
class Resource:
    """One Stripe collection: its URL segment, `object` name, id prefix and what creating it takes."""

    path: str
    object: str
    prefix: str | None
    params: frozenset[str]
    create: Callable[[StripeServer, dict, str | None], dict] | None
    update: Callable[[StripeServer, dict, dict], None] | None = None
    id_length: int = 24
    # Objects belong to the account a request acts for (the platform, or the one in Stripe-Account).
    scoped: bool = False
    # Top-level fields a list request may filter on by equality (`created` ranges work on every list).
    filters: frozenset[str] = frozenset()


RESOURCES: dict[str, Resource] = {}


def resource(path: str, object_: str, prefix: str | None, *, params: set[str], id_length: int = 24,
             update: Callable[[StripeServer, dict, dict], None] | None = None, scoped: bool = False,
             filters: set[str] = frozenset()):
    """Register `fn(server, params, new_id) -> object` as the creator of `POST /v1/<path>`.

    A resource without an id prefix (account links) is created and answered but never stored.
    """

    def decorate(fn):
        RESOURCES[path] = Resource(path, object_, prefix, frozenset(params) | {"expand"}, fn, update, id_length,
                                   scoped, frozenset(filters))
        return fn

    return decorate


@dataclasses.dataclass
class ReceivedRequest:
    """A request as the server saw it, for tests to assert on what the SDK sent."""

    method: str
    path: str
    params: dict
    body: str
    headers: dict[str, str]
    api_key: str | None
    status: int = 0
    replayed: bool = False

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("Idempotency-Key")


@dataclasses.dataclass
class _Fault:
    status: int
    type: str
    message: str
    code: str | None
    path: str | None
    should_retry: bool | None
    times: int


@dataclasses.dataclass
class _Saved:
    endpoint: str
    fingerprint: str
    status: int
    body: str
    request_id: str


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def decode_params(pairs: list[tuple[str, str]]) -> dict:
    """Turn Stripe's bracket notation (`a[b][0][c]=v`, `expand[]=x`) back into nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        match = _KEY_RE.match(key)
        if not match:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise invalid(f"Invalid parameter: {'.'.join(parts[:depth + 1])} is both a value and a hash.",
                              param=parts[0])
            node = child
        last = parts[-1]
        if last == "":
            last = str(len(node))
        if isinstance(node.get(last), dict):
            raise invalid(f"Invalid parameter: {key} is both a value and a hash.", param=parts[0])
        node[last] = value
    return _listify(root)


def _listify(value):
    if not isinstance(value, dict):
        return value
    if value and all(key.isdigit() for key in value):
        return [_listify(value[key]) for key in sorted(value, key=int)]
    return {key: _listify(item) for key, item in value.items()}


def form_string(params: dict, name: str) -> str | None:
    """Read a text parameter; a hash or list where text belongs is refused as Stripe does."""
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise invalid(f"Invalid string: {name} must be a string, not a {type(value).__name__}", param=name)
    return value


def form_bool(params: dict, name: str, default: bool | None = None) -> bool | None:
    """Read a boolean parameter as the SDK encodes it (`true` / `false`)."""
    value = params.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise invalid(f"Invalid boolean: {value}", param=name)
    return value == "true"


def metadata(params: dict, current: dict[str, str] | None = None) -> dict[str, str]:
    """Merge `metadata` into `current` as Stripe does: strings only, an empty value removes the key."""
    merged = dict(current or {})
    given = params.get("metadata", {})
    if given == "":
        return {}
    if not isinstance(given, dict):
        raise invalid("Invalid hash", param="metadata")
    for key, value in given.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid metadata[{key}]: must be a string", param=f"metadata[{key}]")
        if len(key) > 40 or len(value) > 500:
            raise invalid("Metadata keys are limited to 40 characters and values to 500.", param=f"metadata[{key}]")
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise invalid("You can have at most 50 metadata keys.", param="metadata")
    return merged


def signature_header(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """Return the `Stripe-Signature` header Stripe sends: `t=<unix time>,v1=<HMAC-SHA256 of "t.payload">`."""
    text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
    t = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), f"{t}.{text}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def webhook_delivery(event: dict, secret: str = DEFAULT_WEBHOOK_SECRET, *,
                     timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Return the body and headers of a webhook delivery of `event`, signed with `secret`."""
    body = json.dumps(event, indent=2).encode("utf-8")
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Stripe-Signature": signature_header(body, secret, timestamp),
    }
    return body, headers


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *_args) -> None:
        """Skip the access log line per SDK call: `StripeServer.requests` has them."""


class StripeServer:
    """An in-memory Stripe for one platform account, served over HTTP on 127.0.0.1."""

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
                 platform_country: str = "US"):
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.platform_country = platform_country
        # Where the hosted onboarding page delivers account.updated when a test runs a live app.
        self.webhook_url: str | None = None
        self._lock = threading.RLock()
        self._server = None
        self._thread: threading.Thread | None = None
        self._urls = Map([
            Rule("/v1/transfers/<transfer_id>/reversals", endpoint="reversals", methods=["POST"]),
            Rule("/v1/<resource_path>", endpoint="collection", methods=["GET", "POST"]),
            Rule("/v1/<resource_path>/<object_id>", endpoint="item", methods=["GET", "POST"]),
            Rule("/connect/onboarding/<account_id>/<token>", endpoint="onboarding", methods=["GET", "POST"]),
        ])
        self.reset()

    def reset(self) -> None:
        """Forget every object, request, idempotency key and pending fault."""
        with self._lock:
            self.store: dict[str, dict[str, dict]] = {}
            self.requests: list[ReceivedRequest] = []
            self.events: list[dict] = []
            self._idempotency: dict[tuple[str, str, str], _Saved] = {}
            self._faults: list[_Fault] = []
            self._links: dict[str, dict] = {}
            self.crashes: list[Exception] = []
            self.webhook_url = None
            # Who owns each object of a scoped resource: None for the platform, else a connected account.
            self._owners: dict[str, str | None] = {}
            # Balances by account (None: the platform) and currency; only connected accounts' are enforced.
            self.balances: dict[str | None, dict[str, int]] = {}
            # The connected account the request being served acts for (its Stripe-Account header).
            self.acting_account: str | None = None

    # Serving

    def start(self) -> StripeServer:
        """Serve on a free port in a background thread."""
        self._server = make_server("127.0.0.1", 0, self.wsgi, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="stripe-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> StripeServer:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The API base to give the SDK (STRIPE_API_BASE)."""
        if self._server is None:
            raise RuntimeError("the Stripe test server is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    # What tests use

    def objects(self, resource_path: str) -> list[dict]:
        """Return the stored objects of one resource, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(obj)) for obj in self.store.get(resource_path, {}).values()]

    def get(self, resource_path: str, object_id: str) -> dict:
        with self._lock:
            return json.loads(json.dumps(self.store[resource_path][object_id]))

    def requests_to(self, method: str, path: str) -> list[ReceivedRequest]:
        """Return the logged requests of one method and path (`/v1/accounts`)."""
        with self._lock:
            return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def fail_next(self, status: int = 500, type_: str = "api_error",
                  message: str = "An unknown error occurred on Stripe's end.", *, code: str | None = None,
                  path: str | None = None, times: int = 1, should_retry: bool | None = None) -> None:
        """Answer the next `times` authenticated API requests (to `path`, if given) with this error.

        A fault stands for a failure before Stripe ran the request, so nothing is saved under its
        Idempotency-Key and a retry with the same key runs the request for real.
        """
        with self._lock:
            self._faults.append(_Fault(status, type_, message, code, path, should_retry, times))

    def complete_onboarding(self, account_id: str, *, charges_enabled: bool | None = None,
                            payouts_enabled: bool = True) -> dict:
        """Finish an account's onboarding as the merchant would; return the `account.updated` event.

        Charges are enabled only with the card_payments capability unless told otherwise, as on Stripe.
        """
        with self._lock:
            account = self.store.get("accounts", {}).get(account_id)
            if account is None:
                raise KeyError(account_id)
            before = {name: account[name] for name in ("charges_enabled", "payouts_enabled", "details_submitted",
                                                       "capabilities", "requirements")}
            if charges_enabled is None:
                charges_enabled = "card_payments" in account["capabilities"]
            account["capabilities"] = {name: "active" for name in account["capabilities"]}
            account["charges_enabled"] = charges_enabled
            account["payouts_enabled"] = payouts_enabled
            account["details_submitted"] = True
            account["requirements"] = _requirements([])
            account["tos_acceptance"] = {"date": int(time.time())}
            changed = {name: value for name, value in before.items() if account[name] != value}
            return self.emit("account.updated", account, previous_attributes=changed, account=account_id)

    def succeed_payment_intent(self, intent_id: str, *, amount_received: int | None = None) -> dict:
        """Take the payment as the member's checkout would; return the `payment_intent.succeeded` event.

        `amount_received` stands in for what Stripe reports having taken (the intent's amount unless told).
        """
        with self._lock:
            intent = self._payment_intent(intent_id)
            if intent["status"] in ("succeeded", "canceled"):
                raise ValueError(f"{intent_id} is {intent['status']}")
            intent["status"] = "succeeded"
            intent["amount_received"] = intent["amount"] if amount_received is None else amount_received
            intent["last_payment_error"] = None
            intent["latest_charge"] = new_id("ch")
            intent["payment_method"] = new_id("pm")
            self.add_balance_transaction(intent["amount_received"], intent["currency"], "charge",
                                         source=intent["latest_charge"], description=intent["description"])
            return self.emit("payment_intent.succeeded", intent)

    def fail_payment_intent(self, intent_id: str, *, code: str = "card_declined",
                            message: str = "Your card was declined.") -> dict:
        """Fail a payment attempt (the intent waits for another); return `payment_intent.payment_failed`."""
        with self._lock:
            intent = self._payment_intent(intent_id)
            if intent["status"] in ("succeeded", "canceled"):
                raise ValueError(f"{intent_id} is {intent['status']}")
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {"type": "card_error", "code": code, "message": message}
            return self.emit("payment_intent.payment_failed", intent)

    def cancel_payment_intent(self, intent_id: str, *, reason: str = "abandoned") -> dict:
        """Cancel an unpaid intent; return the `payment_intent.canceled` event."""
        with self._lock:
            intent = self._payment_intent(intent_id)
            if intent["status"] == "succeeded":
                raise ValueError(f"{intent_id} is succeeded")
            intent["status"] = "canceled"
            intent["canceled_at"] = int(time.time())
            intent["cancellation_reason"] = reason
            return self.emit("payment_intent.canceled", intent)

    def _payment_intent(self, intent_id: str) -> dict:
        intent = self.store.get("payment_intents", {}).get(intent_id)
        if intent is None:
            raise KeyError(intent_id)
        return intent

    def pay_payout(self, payout_id: str) -> dict:
        """Let the bank accept a payout; return the `payout.paid` event (of the account that made it)."""
        with self._lock:
            payout = self._payout(payout_id)
            if payout["status"] not in PAYOUT_OPEN:
                raise ValueError(f"{payout_id} is {payout['status']}")
            payout["status"] = "paid"
            return self.emit("payout.paid", payout, previous_attributes={"status": "in_transit"},
                             account=self._owners.get(payout_id))

    def fail_payout(self, payout_id: str, *, code: str = "account_closed",
                    message: str = "The bank account has been closed.") -> dict:
        """Let the bank return a payout, before or after it was paid; return the `payout.failed` event.

        As on Stripe, the money goes back to the balance of the account that made the payout.
        """
        with self._lock:
            payout = self._payout(payout_id)
            if payout["status"] not in (*PAYOUT_OPEN, "paid"):
                raise ValueError(f"{payout_id} is {payout['status']}")
            previous = payout["status"]
            account = self._owners.get(payout_id)
            returned = self.add_balance_transaction(payout["amount"], payout["currency"], "payout_failure",
                                                    source=payout_id, account=account,
                                                    description="Payout returned by the bank")
            payout.update(status="failed", failure_code=code, failure_message=message,
                          failure_balance_transaction=returned["id"])
            return self.emit("payout.failed", payout, previous_attributes={"status": previous}, account=account)

    def reverse_transfer(self, transfer_id: str, amount: int | None = None) -> dict:
        """Take (part of) a transfer back from its connected account; return the `transfer.reversed` event."""
        with self._lock:
            transfer = self.store.get("transfers", {}).get(transfer_id)
            if transfer is None:
                raise KeyError(transfer_id)
            amount = transfer["amount"] - transfer["amount_reversed"] if amount is None else amount
            if not 0 < amount <= transfer["amount"] - transfer["amount_reversed"]:
                raise ValueError(f"{transfer_id} has less than {amount} left to reverse")
            destination, currency = transfer["destination"], transfer["currency"]
            txn = self.add_balance_transaction(amount, currency, "transfer_refund", source=transfer_id,
                                               description="Transfer reversal")
            self.add_balance_transaction(-amount, currency, "payment_refund", source=transfer["destination_payment"],
                                         account=destination, created=txn["created"])
            reversal = {"id": new_id("trr"), "object": "transfer_reversal", "amount": amount,
                        "balance_transaction": txn["id"], "created": txn["created"], "currency": currency,
                        "metadata": {}, "transfer": transfer_id}
            reversals = transfer["reversals"]
            reversals["data"].insert(0, reversal)
            reversals["total_count"] += 1
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            return self.emit("transfer.reversed", transfer)

    def _create_reversal(self, params: dict, transfer_id: str) -> tuple[int, dict]:
        """POST /v1/transfers/{id}/reversals: take (part of) a transfer back, as the platform may."""
        if self.acting_account is not None:
            raise invalid("Transfers are reversed by the platform, not a connected account.", status=400)
        unknown = set(params) - {"amount", "metadata", "description", "refund_application_fee", "expand"}
        if unknown:
            raise invalid(f"Received unknown parameter: {sorted(unknown)[0]}", param=sorted(unknown)[0])
        with self._lock:
            transfer = self.store.get("transfers", {}).get(transfer_id)
            if transfer is None:
                raise invalid(f"No such transfer: '{transfer_id}'", param="id", code="resource_missing", status=404)
            left = transfer["amount"] - transfer["amount_reversed"]
            amount = left if params.get("amount") in (None, "") else _intent_amount(params)
            if left == 0:
                raise invalid("Transfer has already been fully reversed.", code="transfer_already_reversed")
            if amount > left:
                raise invalid(f"Amount ({amount}) exceeds what is left of the transfer ({left}).", param="amount")
            self.reverse_transfer(transfer_id, amount)
            reversal = transfer["reversals"]["data"][0]
            reversal["metadata"] = dict(params.get("metadata") or {})
            return 200, reversal

    def payout_event(self, payout_id: str, outcome: str = "paid", *, url: str | None = None,
                     timestamp: int | None = None, **failure) -> int | tuple[bytes, dict[str, str]]:
        """Settle a payout (`paid` or `failed`) and deliver the signed event to `url`, answering the status,
        or, without a URL, return the signed body and headers for a test client to post."""
        if outcome not in ("paid", "failed"):
            raise ValueError(f"a payout ends paid or failed, not {outcome}")
        event = self.pay_payout(payout_id) if outcome == "paid" else self.fail_payout(payout_id, **failure)
        if url is not None:
            return self.deliver(event, url)
        return self.delivery(event, timestamp=timestamp)

    def balance(self, account: str | None = None, currency: str = "cny") -> int:
        """Return an account's balance in a currency (None: the platform's)."""
        with self._lock:
            return self.balances.get(account, {}).get(currency.lower(), 0)

    def add_balance_transaction(self, amount: int, currency: str, type_: str, *, source: str | None = None,
                                account: str | None = None, fee: int = 0, description: str | None = None,
                                created: int | None = None, reporting_category: str | None = None) -> dict:
        """Move an account's balance (None: the platform) by `amount - fee`, recorded as a balance transaction."""
        with self._lock:
            created = int(time.time()) if created is None else int(created)
            txn_id = new_id("txn")
            txn = {
                "id": txn_id,
                "object": "balance_transaction",
                "amount": amount,
                "available_on": created,
                "created": created,
                "currency": currency.lower(),
                "description": description,
                "exchange_rate": None,
                "fee": fee,
                "fee_details": [{"amount": fee, "application": None, "currency": currency.lower(),
                                 "description": "Stripe processing fees", "type": "stripe_fee"}] if fee else [],
                "net": amount - fee,
                "reporting_category": reporting_category or REPORTING_CATEGORIES.get(type_, type_),
                "source": source,
                "status": "available",
                "type": type_,
            }
            self.store.setdefault("balance_transactions", {})[txn_id] = txn
            self._owners[txn_id] = account
            held = self.balances.setdefault(account, {})
            held[txn["currency"]] = held.get(txn["currency"], 0) + txn["net"]
            return txn

    def _payout(self, payout_id: str) -> dict:
        payout = self.store.get("payouts", {}).get(payout_id)
        if payout is None:
            raise KeyError(payout_id)
        return payout

    def emit(self, type_: str, obj: dict, *, previous_attributes: dict | None = None,
             account: str | None = None) -> dict:
        """Create and store an event about `obj` as Stripe would send it to a webhook endpoint."""
        data = {"object": json.loads(json.dumps(obj))}
        if previous_attributes is not None:
            data["previous_attributes"] = previous_attributes
        event = {
            "id": new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }
        if account is not None:
            # Connect endpoints receive events of connected accounts with the account named.
            event["account"] = account
        with self._lock:
            self.store.setdefault("events", {})[event["id"]] = event
            self.events.append(event)
        return event

    def delivery(self, event: dict, *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        """Return the signed body and headers of delivering `event` with this server's webhook secret."""
        return webhook_delivery(event, self.webhook_secret, timestamp=timestamp)

    def deliver(self, event: dict, url: str | None = None) -> int:
        """POST a signed delivery of `event` to a running app's webhook URL; return the status."""
        body, headers = self.delivery(event)
        req = urllib.request.Request(url or self.webhook_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    # The HTTP side

    def wsgi(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            try:
                response = self._dispatch(request)
            except Exception as exc:  # a bug in this server: answer as Stripe does, and keep serving
                self.crashes.append(exc)
                body = StripeError(500, "api_error", f"Stripe test server error: {exc!r}").body()
                response = Response(json.dumps(body), status=500, mimetype="application/json")
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = self._urls.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except HTTPException:
            endpoint, args = None, {}
        if endpoint == "onboarding":
            return self._onboarding_page(request, **args)
        logged = ReceivedRequest(request.method, request.path, {}, request.get_data(as_text=True),
                                 dict(request.headers), None)
        self.requests.append(logged)
        request_id = new_id("req", 14)
        headers = {"Request-Id": request_id, "Stripe-Version": request.headers.get("Stripe-Version", API_VERSION)}
        self.acting_account = None
        try:
            logged.api_key = self._authenticate(request)
            self.acting_account = self._acting_account(request)
            pairs = parse_qsl(logged.body if request.method == "POST" else request.query_string.decode(),
                              keep_blank_values=True)
            logged.params = decode_params(pairs)
            if endpoint is None:
                raise invalid(f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                              "https://stripe.com/docs or we can help at https://support.stripe.com/.", status=404)
            self._take_fault(request.path)
            if endpoint == "reversals":
                route = lambda: self._create_reversal(logged.params, **args)  # noqa: E731
            else:
                route = lambda: self._route(request.method, logged.params, **args)  # noqa: E731
            status, body, replayed = self._idempotent(request, logged, request_id, route)
        except StripeError as exc:
            status, body, replayed = exc.status, json.dumps(exc.body()), False
            headers.update(exc.headers)
        logged.status, logged.replayed = status, replayed
        if request.method == "POST" and logged.idempotency_key:
            headers["Idempotency-Key"] = logged.idempotency_key
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status=status, headers=headers, mimetype="application/json")

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credentials.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
            except ValueError:
                key = ""
        challenge = {"WWW-Authenticate": 'Bearer realm="Stripe"'}
        if not key:
            raise StripeError(401, "invalid_request_error",
                              "You did not provide an API key. You need to provide your API key in the "
                              "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                              "YOUR_SECRET_KEY').", headers=challenge)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "*" * len(key)
            raise StripeError(401, "invalid_request_error", f"Invalid API Key provided: {masked}",
                              code="api_key_invalid" if key.startswith(("sk_", "rk_")) else None, headers=challenge)
        return key

    def _acting_account(self, request: Request) -> str | None:
        """Return the connected account named by Stripe-Account, refusing one the platform does not have."""
        account = request.headers.get("Stripe-Account")
        if account is None:
            return None
        if account not in self.store.get("accounts", {}):
            key = self.api_key
            raise StripeError(403, "invalid_request_error",
                              f"The provided key '{key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}' does not have "
                              f"access to account '{account}' (or that account does not exist). Application access "
                              "may have been revoked.", code="account_invalid")
        return account

    def _take_fault(self, path: str) -> None:
        for fault in self._faults:
            if fault.path is None or fault.path == path:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                headers = {}
                if fault.should_retry is not None:
                    headers["Stripe-Should-Retry"] = "true" if fault.should_retry else "false"
                raise StripeError(fault.status, fault.type, fault.message, code=fault.code, headers=headers)

    def _idempotent(self, request: Request, logged: ReceivedRequest, request_id: str,
                    run: Callable[[], tuple[int, dict]]) -> tuple[int, str, bool]:
        key = logged.idempotency_key
        if request.method != "POST" or not key:
            status, obj = run()
            return status, json.dumps(obj), False
        if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
            raise invalid(f"Idempotency keys can be at most {IDEMPOTENCY_KEY_MAX_LENGTH} characters long.",
                          param="Idempotency-Key")
        endpoint = f"{request.method} {request.path}"
        fingerprint = json.dumps(logged.params, sort_keys=True)
        # Stripe scopes keys to the API key (and connected account) that used them.
        scope = (logged.api_key, request.headers.get("Stripe-Account", ""), key)
        saved = self._idempotency.get(scope)
        if saved is not None:
            if saved.endpoint != endpoint:
                raise StripeError(400, "idempotency_error",
                                  f"Keys for idempotent requests can only be used for the same endpoint they were "
                                  f"first used for ('{saved.endpoint}' vs '{endpoint}'). Try using a key other than "
                                  f"'{key}' if you meant to execute a different request.")
            if saved.fingerprint != fingerprint:
                raise StripeError(400, "idempotency_error",
                                  "Keys for idempotent requests can only be used with the same parameters they were "
                                  f"first used with. Try using a key other than '{key}' if you meant to execute a "
                                  "different request.")
            return saved.status, saved.body, True
        status, obj = run()
        body = json.dumps(obj)
        # Only requests that ran are saved; a refused one may be retried with the same key.
        self._idempotency[scope] = _Saved(endpoint, fingerprint, status, body, request_id)
        return status, body, False

    def _route(self, method: str, params: dict, resource_path: str, object_id: str | None = None) -> tuple[int, dict]:
        res = RESOURCES.get(resource_path)
        if res is None:
            raise invalid(f"Unrecognized request URL ({method}: /v1/{resource_path}"
                          f"{'/' + object_id if object_id else ''}).", status=404)
        if object_id is None and method == "POST":
            if res.create is None:
                raise invalid(f"Unrecognized request URL (POST: /v1/{resource_path}).", status=404)
            return 200, self._create(res, params)
        if object_id is None:
            return 200, self._list(res, params)
        obj = self.store.get(res.path, {}).get(object_id) if res.prefix else None
        if obj is not None and res.scoped and self._owners.get(object_id) != self.acting_account:
            obj = None
        if obj is None:
            raise invalid(f"No such {res.object}: '{object_id}'", param="id", code="resource_missing", status=404)
        if method == "POST":
            if res.update is None:
                raise invalid(f"Unrecognized request URL (POST: /v1/{resource_path}/{object_id}).", status=404)
            self._check_params(res, params)
            res.update(self, obj, params)
        return 200, obj

    def _check_params(self, res: Resource, params: dict) -> None:
        for name in params:
            if name not in res.params:
                raise invalid(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")

    def _create(self, res: Resource, params: dict) -> dict:
        self._check_params(res, params)
        object_id = new_id(res.prefix, res.id_length) if res.prefix else None
        obj = res.create(self, params, object_id)
        obj.setdefault("object", res.object)
        if object_id is not None:
            obj = {"id": object_id, **obj}
            self.store.setdefault(res.path, {})[object_id] = obj
            if res.scoped:
                self._owners[object_id] = self.acting_account
        return obj

    def _list(self, res: Resource, params: dict) -> dict:
        try:
            limit = int(params.get("limit", 10))
        except (TypeError, ValueError):
            raise invalid("Invalid integer: limit", param="limit") from None
        if not 1 <= limit <= LIST_LIMIT_MAX:
            raise invalid(f"This value must be between 1 and {LIST_LIMIT_MAX}.", param="limit")
        # Stripe lists newest first (objects made in the same second: the later one first).
        stored = list(self.store.get(res.path, {}).values())
        items = [obj for _, obj in sorted(enumerate(stored), key=lambda pair: (-pair[1].get("created", 0), -pair[0]))]
        if res.scoped:
            items = [item for item in items if self._owners.get(item["id"]) == self.acting_account]
        for name in sorted(res.filters & params.keys()):
            wanted = form_string(params, name)
            items = [item for item in items if item.get(name) == wanted]
        if "created" in params:
            items = [item for item in items if _created_matches(item.get("created"), params["created"])]
        after = params.get("starting_after")
        if after:
            ids = [item["id"] for item in items]
            if after not in ids:
                raise invalid(f"No such {res.object}: '{after}'", param="starting_after", code="resource_missing",
                              status=404)
            items = items[ids.index(after) + 1:]
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit, "url": f"/v1/{res.path}"}

    def _onboarding_page(self, request: Request, account_id: str, token: str) -> Response:
        """Stand in for Stripe's hosted onboarding: a link works once and returns to the platform."""
        link = self._links.get(token)
        now = int(time.time())
        if link is None or link["account"] != account_id:
            return Response("This link is not valid.", status=404, mimetype="text/plain")
        if request.method == "GET":
            if link["visited"] or link["expires_at"] < now:
                return Response(status=302, headers={"Location": link["refresh_url"]})
            link["visited"] = True
            page = (f"<!doctype html><title>Stripe test onboarding</title><h1>Onboarding "
                    f"{html.escape(account_id)}</h1><form method=post><button>Complete onboarding</button></form>")
            return Response(page, mimetype="text/html")
        if link["completed"]:
            return Response(status=302, headers={"Location": link["refresh_url"]})
        link["completed"] = True
        event = self.complete_onboarding(account_id)
        if self.webhook_url:
            self.deliver(event)
        return Response(status=302, headers={"Location": link["return_url"]})


def _requirements(due: list[str]) -> dict:
    return {
        "currently_due": list(due), "eventually_due": list(due), "past_due": list(due),
        "pending_verification": [], "errors": [], "current_deadline": None,
        "disabled_reason": "requirements.past_due" if due else None,
    }


ACCOUNT_TYPES = ("custom", "express", "standard")
CAPABILITIES = {"card_payments", "transfers", "alipay_payments", "wechat_pay_payments", "link_payments",
                "bank_transfer_payments", "cartes_bancaires_payments", "legacy_payments"}
# The countries Connect accounts can be created in (mainland China is not one of them).
COUNTRIES = {"AE", "AT", "AU", "BE", "BG", "BR", "CA", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB",
             "GI", "GR", "HK", "HR", "HU", "IE", "IT", "JP", "LI", "LT", "LU", "LV", "MT", "MX", "MY", "NL", "NO",
             "NZ", "PL", "PT", "RO", "SE", "SG", "SI", "SK", "TH", "US"}
CURRENCIES = {"US": "usd", "GB": "gbp", "HK": "hkd", "SG": "sgd", "JP": "jpy", "AU": "aud", "CA": "cad",
              "CH": "chf", "MY": "myr", "TH": "thb", "NZ": "nzd"}
ONBOARDING_DUE = ["business_profile.mcc", "business_profile.url", "business_type", "external_account",
                  "representative.first_name", "representative.last_name", "tos_acceptance.date",
                  "tos_acceptance.ip"]
BUSINESS_PROFILE_FIELDS = ("mcc", "name", "product_description", "support_email", "support_phone", "support_url", "url")


def _email(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        raise invalid(f"Invalid email address: {value}", param="email", code="email_invalid")
    return value


def _business_profile(params: dict, current: dict) -> dict:
    given = params.get("business_profile", {})
    if not isinstance(given, dict):
        raise invalid("Invalid hash", param="business_profile")
    for name in given:
        if name not in BUSINESS_PROFILE_FIELDS:
            raise invalid(f"Received unknown parameter: business_profile[{name}]",
                          param=f"business_profile[{name}]", code="parameter_unknown")
        current[name] = form_string(given, name) or None
    return current


def _capabilities(params: dict, current: dict) -> dict:
    given = params.get("capabilities", {})
    if not isinstance(given, dict):
        raise invalid("Invalid hash", param="capabilities")
    for name, options in given.items():
        if name not in CAPABILITIES:
            raise invalid(f"Invalid capabilities: {name} is not a capability", param=f"capabilities[{name}]")
        requested = form_bool(options if isinstance(options, dict) else {}, "requested")
        if requested is None:
            raise missing(f"capabilities[{name}][requested]")
        if requested:
            current.setdefault(name, "inactive")
        else:
            current.pop(name, None)
    return current


def _update_account(server: StripeServer, account: dict, params: dict) -> None:
    if "email" in params:
        account["email"] = _email(form_string(params, "email") or None)
    account["business_profile"] = _business_profile(params, account["business_profile"])
    account["capabilities"] = _capabilities(params, account["capabilities"])
    account["metadata"] = metadata(params, account["metadata"])


@resource("accounts", "account", "acct", id_length=16, update=_update_account,
          params={"type", "country", "email", "business_type", "business_profile", "capabilities", "metadata",
                  "controller", "company", "individual", "settings", "tos_acceptance", "default_currency",
                  "external_account"})
def create_account(server: StripeServer, params: dict, account_id: str) -> dict:
    """Create a connected account, not yet onboarded: nothing enabled until the merchant finishes."""
    account_type = form_string(params, "type")
    if account_type is None and "controller" not in params:
        raise missing("type")
    if account_type is not None and account_type not in ACCOUNT_TYPES:
        raise invalid("Invalid type: must be one of custom, express, or standard", param="type")
    country = (form_string(params, "country") or server.platform_country).upper()
    if country not in COUNTRIES:
        raise invalid(f"Connected accounts cannot be created in {country}.", param="country", code="country_unsupported")
    capabilities = _capabilities(params, {})
    if account_type in ("express", "custom") and not capabilities:
        raise invalid(f"{account_type.capitalize()} accounts must request at least the `transfers` capability.",
                      param="capabilities")
    return {
        "object": "account",
        "business_profile": _business_profile(params, {name: None for name in BUSINESS_PROFILE_FIELDS}),
        "business_type": form_string(params, "business_type"),
        "capabilities": capabilities,
        "charges_enabled": False,
        "controller": {"type": "application", "is_controller": True, "requirement_collection": "stripe",
                       "stripe_dashboard": {"type": account_type or "none"}},
        "country": country,
        "created": int(time.time()),
        "default_currency": form_string(params, "default_currency") or CURRENCIES.get(country, "usd"),
        "details_submitted": False,
        "email": _email(form_string(params, "email")),
        "external_accounts": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                              "url": f"/v1/accounts/{account_id}/external_accounts"},
        "metadata": metadata(params),
        "payouts_enabled": False,
        "requirements": _requirements(ONBOARDING_DUE),
        "tos_acceptance": {"date": None},
        "type": account_type or "none",
    }


@resource("account_links", "account_link", None, params={"account", "refresh_url", "return_url", "type", "collect",
                                                           "collection_options"})
def create_account_link(server: StripeServer, params: dict, _id: None) -> dict:
    """Create a single-use link to the (test) hosted onboarding page of an account."""
    for name in ("account", "type", "refresh_url", "return_url"):
        form_string(params, name)
    for name in ("account", "type"):
        if not params.get(name):
            raise missing(name)
    account_id = params["account"]
    if account_id not in server.store.get("accounts", {}):
        raise invalid(f"No such account: '{account_id}'", param="account", code="resource_missing")
    if params["type"] not in ("account_onboarding", "account_update"):
        raise invalid("Invalid type: must be one of account_onboarding or account_update", param="type")
    for name in ("refresh_url", "return_url"):
        if params["type"] == "account_onboarding" and not params.get(name):
            raise missing(name)
        if params.get(name) and not re.match(r"^https?://", params[name]):
            raise invalid(f"Not a valid URL: {params[name]}", param=name, code="url_invalid")
    created = int(time.time())
    token = secrets.token_urlsafe(12)
    server._links[token] = {"account": account_id, "refresh_url": params.get("refresh_url"),
                            "return_url": params.get("return_url"), "expires_at": created + ACCOUNT_LINK_TTL_SECONDS,
                            "visited": False, "completed": False}
    return {"object": "account_link", "created": created, "expires_at": created + ACCOUNT_LINK_TTL_SECONDS,
            "url": f"{server.url}/connect/onboarding/{account_id}/{token}"}


# The amounts a PaymentIntent may ask for: at least one minor unit, at most eight digits.
PAYMENT_INTENT_MAX_AMOUNT = 99_999_999
PAYMENT_INTENT_OPEN = ("requires_payment_method", "requires_confirmation", "requires_action")


def _intent_amount(params: dict) -> int:
    value = form_string(params, "amount")
    if value is None:
        raise missing("amount")
    if not re.fullmatch(r"\d{1,12}", value):
        raise invalid(f"Invalid integer: {value}", param="amount")
    amount = int(value)
    if amount < 1:
        raise invalid("This value must be greater than or equal to 1.", param="amount", code="amount_too_small")
    if amount > PAYMENT_INTENT_MAX_AMOUNT:
        raise invalid(f"Amount must be no more than {PAYMENT_INTENT_MAX_AMOUNT}.", param="amount",
                      code="amount_too_large")
    return amount


def _intent_currency(params: dict) -> str:
    value = form_string(params, "currency")
    if value is None:
        raise missing("currency")
    if not re.fullmatch(r"[a-zA-Z]{3}", value):
        raise invalid(f"Invalid currency: {value}.", param="currency")
    return value.lower()


def _update_payment_intent(server: StripeServer, intent: dict, params: dict) -> None:
    if intent["status"] not in PAYMENT_INTENT_OPEN:
        raise invalid(f"This PaymentIntent's parameters could not be updated because it has a status of "
                      f"{intent['status']}.", code="payment_intent_unexpected_state")
    if "amount" in params:
        intent["amount"] = _intent_amount(params)
    if "currency" in params:
        intent["currency"] = _intent_currency(params)
    if "description" in params:
        intent["description"] = form_string(params, "description") or None
    intent["metadata"] = metadata(params, intent["metadata"])


@resource("payment_intents", "payment_intent", "pi", update=_update_payment_intent,
          params={"amount", "currency", "metadata", "automatic_payment_methods", "description", "customer",
                  "payment_method_types", "receipt_email", "statement_descriptor_suffix", "capture_method"})
def create_payment_intent(server: StripeServer, params: dict, intent_id: str) -> dict:
    """Create a PaymentIntent waiting for the customer to pay it (with the client secret to do so)."""
    amount, currency = _intent_amount(params), _intent_currency(params)
    automatic = params.get("automatic_payment_methods")
    if automatic is not None:
        if not isinstance(automatic, dict):
            raise invalid("Invalid hash", param="automatic_payment_methods")
        enabled = form_bool(automatic, "enabled")
        if enabled is None:
            raise missing("automatic_payment_methods[enabled]")
        automatic = {"enabled": enabled}
    types = params.get("payment_method_types")
    if types is not None and (not isinstance(types, list) or not all(isinstance(t, str) for t in types)):
        raise invalid("Invalid array", param="payment_method_types")
    if automatic and automatic["enabled"] and types:
        raise invalid("You may only specify one of these parameters: automatic_payment_methods, "
                      "payment_method_types.", param="payment_method_types")
    capture = form_string(params, "capture_method") or "automatic"
    if capture not in ("automatic", "automatic_async", "manual"):
        raise invalid(f"Invalid capture_method: {capture}", param="capture_method")
    return {
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_received": 0,
        "automatic_payment_methods": automatic,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": capture,
        "client_secret": f"{intent_id}_secret_{''.join(secrets.choice(_ALPHABET) for _ in range(25))}",
        "confirmation_method": "automatic",
        "created": int(time.time()),
        "currency": currency,
        "customer": form_string(params, "customer"),
        "description": form_string(params, "description"),
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": False,
        "metadata": metadata(params),
        "payment_method": None,
        "payment_method_types": types or ["card"],
        "receipt_email": form_string(params, "receipt_email"),
        "status": "requires_payment_method",
    }


def _created_matches(created, condition) -> bool:
    """Tell whether a `created` time meets a list's `created` filter: a time, or a hash of gt/gte/lt/lte."""
    if isinstance(condition, str):
        condition = {"eq": condition}
    if not isinstance(condition, dict):
        raise invalid("Invalid hash", param="created")
    tests = {"eq": int.__eq__, "gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    for name, value in condition.items():
        if name not in tests or name == "eq" and len(condition) > 1:
            raise invalid(f"Received unknown parameter: created[{name}]", param=f"created[{name}]",
                          code="parameter_unknown")
        if not isinstance(value, str) or not re.fullmatch(r"\d{1,12}", value):
            raise invalid(f"Invalid integer: {value}", param="created" if name == "eq" else f"created[{name}]")
        if not isinstance(created, int) or not tests[name](created, int(value)):
            return False
    return True


def _amount(params: dict, *, minimum: int = 1) -> int:
    value = form_string(params, "amount")
    if value is None:
        raise missing("amount")
    if not re.fullmatch(r"\d{1,12}", value):
        raise invalid(f"Invalid integer: {value}", param="amount")
    if int(value) < minimum:
        raise invalid(f"This value must be greater than or equal to {minimum}.", param="amount",
                      code="amount_too_small")
    return int(value)


def _update_metadata(server: StripeServer, obj: dict, params: dict) -> None:
    if "description" in params:
        obj["description"] = form_string(params, "description") or None
    obj["metadata"] = metadata(params, obj["metadata"])


# What each kind of balance transaction counts as in Stripe's reports.
REPORTING_CATEGORIES = {"charge": "charge", "refund": "refund", "transfer": "transfer",
                        "transfer_refund": "transfer_reversal", "payout": "payout",
                        "payout_failure": "payout_reversal", "payment": "charge", "payment_refund": "refund", "adjustment": "other_adjustment",
                        "stripe_fee": "fee"}
PAYOUT_OPEN = ("pending", "in_transit")
PAYOUT_SECONDS = 2 * 24 * 3600  # a standard payout arrives about two days later


@resource("transfers", "transfer", "tr", update=_update_metadata, scoped=True,
          filters={"destination", "transfer_group"},
          params={"amount", "currency", "destination", "description", "metadata", "transfer_group",
                  "source_transaction", "source_type"})
def create_transfer(server: StripeServer, params: dict, transfer_id: str) -> dict:
    """Move money from the platform's balance to a connected account's (only the platform transfers)."""
    if server.acting_account is not None:
        raise invalid("Transfers are made by the platform, not on behalf of a connected account.",
                      status=400)
    amount, currency = _amount(params), _intent_currency(params)
    destination = form_string(params, "destination")
    if not destination:
        raise missing("destination")
    account = server.store.get("accounts", {}).get(destination)
    if account is None:
        raise invalid(f"No such destination: '{destination}'", param="destination", code="resource_missing")
    if account["capabilities"].get("transfers") != "active":
        raise invalid("Your destination account needs to have at least one of the following capabilities "
                      "enabled: transfers, crypto_transfers, legacy_payments", param="destination",
                      code="insufficient_capabilities_for_transfer")
    created = int(time.time())
    payment_id = new_id("py")
    sent = server.add_balance_transaction(-amount, currency, "transfer", source=transfer_id, created=created,
                                          description=form_string(params, "description"))
    server.add_balance_transaction(amount, currency, "payment", source=payment_id, account=destination,
                                   created=created)
    transfer = {
        "object": "transfer",
        "amount": amount,
        "amount_reversed": 0,
        "balance_transaction": sent["id"],
        "created": created,
        "currency": currency,
        "description": form_string(params, "description"),
        "destination": destination,
        "destination_payment": payment_id,
        "livemode": False,
        "metadata": metadata(params),
        "reversals": {"object": "list", "data": [], "has_more": False, "total_count": 0,
                      "url": f"/v1/transfers/{transfer_id}/reversals"},
        "reversed": False,
        "source_transaction": form_string(params, "source_transaction"),
        "source_type": form_string(params, "source_type") or "card",
        "transfer_group": form_string(params, "transfer_group"),
    }
    server.emit("transfer.created", {"id": transfer_id, **transfer})
    return transfer


@resource("payouts", "payout", "po", update=_update_metadata, scoped=True, filters={"status", "destination"},
          params={"amount", "currency", "description", "metadata", "method", "destination", "source_type",
                  "statement_descriptor"})
def create_payout(server: StripeServer, params: dict, payout_id: str) -> dict:
    """Send money from the acting account's balance (a connected account's, with Stripe-Account) to its bank."""
    amount, currency = _amount(params), _intent_currency(params)
    method = form_string(params, "method") or "standard"
    if method not in ("standard", "instant"):
        raise invalid(f"Invalid method: {method}", param="method")
    account_id = server.acting_account
    if account_id is not None:
        account = server.store["accounts"][account_id]
        if not account["payouts_enabled"]:
            raise invalid("Payouts are not enabled for this account: it has not finished onboarding or its "
                          "payouts have been paused.", code="payouts_not_allowed")
        if server.balance(account_id, currency) < amount:
            raise invalid("You have insufficient funds in your Stripe account for this transfer. Your balance "
                          f"in {currency} is too low.", code="balance_insufficient")
    created = int(time.time())
    txn = server.add_balance_transaction(-amount, currency, "payout", source=payout_id, account=account_id,
                                         created=created, description=form_string(params, "description"))
    payout = {
        "object": "payout",
        "amount": amount,
        "arrival_date": created + PAYOUT_SECONDS,
        "automatic": False,
        "balance_transaction": txn["id"],
        "created": created,
        "currency": currency,
        "description": form_string(params, "description"),
        "destination": form_string(params, "destination") or f"ba_{account_id or 'platform'}",
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "livemode": False,
        "metadata": metadata(params),
        "method": method,
        "original_payout": None,
        "reversed_by": None,
        "source_type": form_string(params, "source_type") or "card",
        "statement_descriptor": form_string(params, "statement_descriptor"),
        "status": "pending",
        "type": "bank_account",
    }
    server.emit("payout.created", {"id": payout_id, **payout}, account=account_id)
    return payout


# Balance transactions are made by the movements themselves; the API lists and reads them.
RESOURCES["balance_transactions"] = Resource("balance_transactions", "balance_transaction", "txn",
                                             frozenset({"expand"}), None, scoped=True,
                                             filters=frozenset({"type", "source", "currency"}))

# Events are made by Stripe itself (StripeServer.emit); the API only reads them.
RESOURCES["events"] = Resource("events", "event", "evt", frozenset({"expand"}), None)
