"""Fault tests: an app of its own on a scratch PostgreSQL database and real Redis, a TCP proxy that can
cut a service off mid-way, and a small world of a member, a card and a shop that takes it."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import uuid
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import func, select

from benefits.models import OfferBudget, OfferUsage
from core.auth import Actor
from core.config import normalize_database_url
from core.db import db
from core.models import AuditEvent, Role
from payments import ledger
from payments.checkout.models import Payment
from tests import factories as f
from tests.checkout.conftest import card_with_pin, fund, funded_program, make_offer
from tests.conftest import (ENV_DATABASE_URL, ENV_REDIS_URL, app_of_its_own, is_postgres, scratch_database,
                            skip_or_fail)


def require_services() -> None:
    """Skip (or fail under REQUIRE_SERVICES) unless PostgreSQL and Redis are both configured."""
    if not is_postgres(normalize_database_url(ENV_DATABASE_URL)):
        skip_or_fail("fault tests need PostgreSQL (set DATABASE_URL)")
    if not ENV_REDIS_URL:
        skip_or_fail("fault tests need Redis (set REDIS_URL)")


class TcpProxy:
    """Forward a local port to a server until cut: then every open connection drops at once and new
    ones are refused, as when the server goes away; `restore` brings the port back.

    `swallow` makes it go silent instead, connections kept open: "requests" are lost before the server
    sees them, or "replies" after the server acted on them."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = 0
        self.swallow: str | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        """Listen (again) on the proxy's port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def close(self) -> None:
        self.cut()

    def url(self, url: str) -> str:
        """Return `url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        address = f"127.0.0.1:{self.port}"
        netloc = f"{netloc[0]}@{address}" if len(netloc) == 2 else address
        return parts._replace(netloc=netloc).geturl()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            for a, b, kind in ((client, upstream, "requests"), (upstream, client, "replies")):
                threading.Thread(target=self._pump, args=(a, b, kind), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, kind: str) -> None:
        try:
            while data := src.recv(65536):
                if self.swallow != kind:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def proxy_to(url: str, default_port: int):
    """A TCP proxy in front of the server of `url`."""
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="session")
def fault_database(tmp_path_factory):
    """One scratch PostgreSQL database for the fault tests (each test makes its own world in it)."""
    require_services()
    with scratch_database(tmp_path_factory, "uc_faults") as url:
        yield url


def app_config(tmp_path_factory, database_url: str, name: str) -> dict:
    """The settings of a fault test's app (real Redis under a prefix of its own, inline jobs)."""
    instance = tmp_path_factory.mktemp(f"{name}-instance")
    return {"INSTANCE_PATH": str(instance), "DATABASE_URL": database_url, "REDIS_URL": ENV_REDIS_URL,
            "REDIS_PREFIX": f"ucfault:{uuid.uuid4().hex[:8]}:", "UPLOAD_FOLDER": str(instance / "up"),
            "SECRET_KEY": f"{name}-secret", "DATA_KEY": f"{name}-data-key-long-enough", "JOBS_MODE": "sync",
            "STATS_REFRESH_AFTER": 0, "PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_KIB": 1024,
            "TESTING": True}


@contextlib.contextmanager
def own_app(tmp_path_factory, database_url: str, name: str, **config):
    """An app of its own on the fault tests' database (`config` overrides the settings).

    The app binds the process-wide database handle and job runner to itself; they are given back
    afterwards, so later tests are not affected."""
    settings = app_config(tmp_path_factory, database_url, name) | config
    try:
        with app_of_its_own(settings) as app:
            yield app
    finally:
        forget_redis_keys(settings["REDIS_PREFIX"])


def forget_redis_keys(prefix: str) -> None:
    """Remove what a test app left in the test Redis under its prefix."""
    client = redis.Redis.from_url(ENV_REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def shop_world(app, *, offer_program: bool = False) -> dict:
    """A member with an active card, a PIN and ¥500 on it; a restaurant with a cashier; and, with
    `offer_program`, a union-funded offer (once per member, from a budget) paid by a funded program."""
    cipher = app.extensions["cipher"]
    with app.app_context():
        session = db.session
        federation = f.union(session, f"宁夏总工会{f.next_id()}", None, "640000")
        city = f.union(session, "银川市总工会", federation, "640100")
        member = f.member(session, cipher, city, "王芳")
        shop = f.merchant(session, cipher, "好味餐厅", category="dining")
        users = {"member": f.user(session, Role.MEMBER, member=member),
                 "cashier": f.user(session, Role.MERCHANT_CASHIER, merchant_id=shop.id),
                 "maker": f.user(session, Role.FINANCE_MAKER), "approver": f.user(session, Role.FINANCE_APPROVER)}
        card = card_with_pin(session, cipher, app, member, users["member"])
        general = fund(session, card, 50_000)
        world = {"member": member, "shop": shop, "card": card, "general": general,
                 "store": shop.stores[0], "users": users,
                 "h": {name: f.bearer(session, u) for name, u in users.items()},
                 "a": {name: Actor.of(u) for name, u in users.items()}}
        if offer_program:
            program = funded_program(session, users, city, amount=100_000)
            world["program"] = program
            world["offer"] = make_offer(session, merchant=shop, kind="amount_off", value=500, funding="union",
                                        program_id=program.public_id, budget=10_000, limit_count=1,
                                        limit_period="ever", title="满额立减")
        return world


def snapshot(app, world) -> dict:
    """What a payment changes: payments, ledger transactions and entries, balances, offer usage and budgets,
    audit records."""
    with app.app_context():
        s = db.session
        accounts = [world["general"], world["shop"].payable_account]
        if "program" in world:
            accounts.append(f"program:{world['program'].public_id}:budget")
        return {
            "payments": s.scalar(select(func.count()).select_from(Payment)),
            "transactions": s.scalar(select(func.count()).select_from(ledger.Transaction)),
            "entries": s.scalar(select(func.count()).select_from(ledger.Entry)),
            "balances": {code: ledger.balance(s, code).posted for code in accounts},
            "usage": sorted(s.execute(select(OfferUsage.lineage, OfferUsage.count, OfferUsage.amount)).all()),
            "budgets": sorted(s.execute(select(OfferBudget.lineage, OfferBudget.used)).all()),
            "audit": s.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.action == "payment.created")),
        }


def verify_books(app) -> None:
    with app.app_context():
        report = ledger.verify(db.session)
        assert report.ok, report.problems


def sign_in(client, username: str, password: str = f.PASSWORD):
    """Sign in on the login page, as a browser does."""
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def assert_api_error(resp, status: int, error: str) -> dict:
    """The answer is the API's error document (not a traceback) with this status and machine word."""
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["code"] == status and body["error"] == error, body
    assert body["message"] and "Traceback" not in resp.get_data(as_text=True)
    return body

