"""The fuzzed API's world: one user per role with a token, and the objects they own and do not own, on a
database of the module's own, each example run in a transaction rolled back afterwards; and the OpenAPI
document loaded from the app for schemathesis."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import uuid

import pytest
import schemathesis

from core.db import db, make_engine
from core.i18n import business_date
from core.ids import new_public_id
from core.models import Role
from tests import factories as f
from tests.conftest import scratch_database
from tests.integration.test_authorization_matrix import complete_application, offer_world, payment_world
from tests.integration.test_authorization_matrix import settlement_world

PIN = "583920"
ANONYMOUS = "anonymous"
# A union admin without a union administers the whole platform.
PLATFORM_ADMIN = "platform_admin"

# CI runs a bounded, repeatable number of examples; FUZZ_MAX_EXAMPLES and FUZZ_SEED explore further by hand.
FUZZ_CONFIG = {
    "seed": int(os.environ.get("FUZZ_SEED", "9")),
    "generation": {"mode": "all", "max-examples": int(os.environ.get("FUZZ_MAX_EXAMPLES", "25")),
                   "deterministic": True, "database": "none", "with-security-parameters": False},
    "phases": {"examples": {"enabled": True}, "fuzzing": {"enabled": True}, "coverage": {"enabled": False},
               "stateful": {"enabled": False}},
}


class World:
    """The seeded world: who may call (headers per caller), and values that name or fit what exists, by the
    name of the field or parameter that may take them (its ids, a valid unused ID number, the card's PIN...)."""

    def __init__(self, connection, kv, headers: dict[str, dict], known: dict[str, list]):
        self.connection = connection
        self.kv = kv
        self.headers = headers
        self.known = known

    @contextlib.contextmanager
    def example(self):
        """Run one example in a transaction rolled back afterwards, with rate limits and codes of its own."""
        prefix = self.kv.prefix
        self.kv.prefix = f"{prefix}{uuid.uuid4().hex[:8]}:"
        # A transaction per example, not a savepoint in one long one: PostgreSQL keeps a lock for every
        # savepoint rolled back until the transaction ends, and thousands of them exhaust its lock table.
        transaction = self.connection.begin()
        try:
            yield
        finally:
            transaction.rollback()
            self.kv.prefix = prefix


def build_world(session, app) -> tuple[dict[str, dict], dict[str, list]]:
    """Create one user per role with a token, and the objects they own and do not own."""
    from cards import service as cards
    from core.auth import Actor
    from merchants import service as merchants
    from payments.disbursement import service as disbursement
    from payments.disbursement.models import ProgramKind, PursePolicy
    from payments.topups.models import TopUp

    cipher = app.extensions["cipher"]
    tree = f.org_tree(session)
    own_member = f.member(session, cipher, tree["yc_base"], "本人")
    other_member = f.member(session, cipher, tree["gy_base"], "他人")
    fresh = f.member(session, cipher, tree["yc_base"], "新人")
    shop = f.merchant(session, cipher, "本店")
    other_shop = f.merchant(session, cipher, "别家")
    users = f.user_per_role(session, union=tree["yc"], member=own_member, merchant_id=shop.id)
    platform_admin = f.user(session, Role.UNION_ADMIN)
    headers = {role.value: f.bearer(session, u) for role, u in users.items()}
    headers[PLATFORM_ADMIN] = f.bearer(session, platform_admin)
    headers[ANONYMOUS] = {}

    draft = complete_application(session, cipher, app, users[Role.APPLICANT])
    other_applicant = f.user(session, Role.APPLICANT)
    submitted = complete_application(session, cipher, app, other_applicant)
    merchants.submit_application(session, Actor.of(other_applicant), submitted.public_id)
    card = cards.issue_card(session, cipher, f.PLATFORM, own_member.public_id, prefix="880064")
    cards.change_state(session, Actor.of(users[Role.MEMBER]), card.public_id, "activate")
    cards.set_pin(session, cipher, cards.PinGuard(app.extensions["kv"], max_failures=5, lockout=60),
                  Actor.of(users[Role.MEMBER]), card.public_id, pin=PIN, current_pin=None)
    other_card = cards.issue_card(session, cipher, f.PLATFORM, other_member.public_id, prefix="880064")
    top_up = TopUp(public_id=new_public_id("top"), member_id=own_member.id, card_id=card.id, amount=1000,
                   payment_intent_id=f"pi_fuzz_{f.next_id()}")
    session.add(top_up)
    session.commit()
    run = cards.start_bulk_issuance(session, f.PLATFORM, tree["xq"].public_id)
    maker = Actor.of(users[Role.FINANCE_MAKER])
    program = disbursement.create_program(session, maker, name="送温暖", kind=ProgramKind.HARDSHIP_AID,
                                          purse=PursePolicy.GENERAL, union_id=tree["fed"].public_id)
    funding = disbursement.create_funding(session, maker, program.public_id, amount=1000, currency="CNY",
                                          reference="r")
    batch = disbursement.create_batch_from_rule(session, maker, program.public_id, disbursement.Rule(amount=100),
                                                max_lines=1000)
    offers = offer_world(session, tree, users, other_shop)
    payments = payment_world(session, app, users, card, shop, other_shop)
    payments.update(settlement_world(session, shop, other_shop))

    def public(*objects):
        return [o.public_id for o in objects]

    known = {
        "union_id": public(*tree.values()),
        "parent_id": public(tree["yc"], tree["gy"]),
        "member_id": public(own_member, other_member, fresh),
        "card_id": public(card, other_card),
        "merchant_id": public(shop, other_shop),
        "store_id": public(shop.stores[0], other_shop.stores[0]),
        "application_id": public(draft, submitted),
        "document_id": public(draft.documents[0]),
        "offer_id": public(*offers.values()),
        "program_id": public(program),
        "funding_id": public(funding),
        "batch_id": public(batch),
        "run_id": public(run),
        "top_up_id": public(top_up),
        "payment_id": public(payments["payment"], payments["other_payment"]),
        "settlement_id": public(payments["settlement"], payments["other_settlement"]),
        "payout_id": public(payments["payout"], payments["other_payout"]),
        "user_id": public(users[Role.MERCHANT_CASHIER]),
        "line_no": [1],
        "id_number": [f.unique_id_number()],
        "phone": [f.phone()],
        "region": ["640104"],
        "uscc": [f.uscc()],
        "pin": [PIN],
        "business_date": [(business_date() - dt.timedelta(days=1)).isoformat()],
        "username": [users[Role.APPLICANT].username, f"applicant-{f.next_id()}"],
        "password": [f.PASSWORD],
    }
    # Requests share the connection: with this session's savepoint still open, closing it would undo them.
    session.commit()
    known.update(uploads(app, headers, tree))
    return headers, known


def uploads(app, headers, tree) -> dict[str, list[str]]:
    """Make through the API what an uploaded file makes: a member import and a bank reconciliation."""
    client = app.test_client()
    members = (f"name,id_number,phone,union_id\n张,{f.unique_id_number()},13900000000,"
               f"{tree['yc_base'].public_id}\n")
    imported = client.post("/api/v1/members/imports", headers=headers[Role.UNION_ADMIN.value],
                           content_type="multipart/form-data", data={"file": (io.BytesIO(members.encode()), "m.csv")})
    statement = "date,reference,amount,currency,description\n2026-11-20,WIRE-1,100,CNY,x\n"
    reconciled = client.post("/api/v1/reconciliations", headers=headers[Role.FINANCE_MAKER.value],
                             content_type="multipart/form-data",
                             data={"source": "bank", "file": (io.BytesIO(statement.encode()), "s.csv")})
    assert imported.status_code in (201, 202) and reconciled.status_code == 201, (imported.status_code,
                                                                                  reconciled.status_code)
    return {"import_id": [imported.get_json()["id"]], "rec_id": [reconciled.get_json()["id"]]}


@pytest.fixture(scope="module")
def fuzz_world(app, stripe_server_session, tmp_path_factory):
    """Seed the world on a database of the module's own (the app's database handle is lent to it and given
    back afterwards), with Stripe's test server standing in for Stripe."""
    kv = app.extensions["kv"]
    stripe_server_session.reset()
    stripe = {"STRIPE_API_KEY": stripe_server_session.api_key, "STRIPE_API_BASE": stripe_server_session.url,
              "STRIPE_WEBHOOK_SECRET": stripe_server_session.webhook_secret, "STRIPE_MAX_NETWORK_RETRIES": 0}
    saved_config = {key: app.config[key] for key in stripe if key in app.config}
    saved_handle, saved_prefix = (db.engine, db.factory), kv.prefix
    app.config.update(stripe)
    kv.prefix = f"{saved_prefix}fuzz{uuid.uuid4().hex[:8]}:"
    try:
        with scratch_database(tmp_path_factory, "uc_fuzz") as url:
            db.engine = make_engine(url)
            try:
                with db.engine.connect() as conn:
                    db.bind_to(conn)
                    with conn.begin():
                        session = db.new_session()
                        try:
                            headers, known = build_world(session, app)
                        finally:
                            session.close()
                    yield World(conn, kv, headers, known)
            finally:
                db.engine.dispose()
        crashes = list(stripe_server_session.crashes)
        assert not crashes, f"the Stripe test server failed: {crashes!r}"
    finally:
        db.engine, db.factory = saved_handle
        kv.prefix = saved_prefix
        for key in stripe:
            app.config.pop(key, None)
        app.config.update(saved_config)
        stripe_server_session.reset()


@pytest.fixture(scope="module")
def fuzz_schema(app, fuzz_world):
    """The app's OpenAPI document, called in-process (WSGI, no network).

    Each operation's catch-all `default` answer is left out, so every status the API gives must be one the
    document lists for that operation by number."""
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("default", None)
    schema = schemathesis.openapi.from_dict(document, config=schemathesis.Config.from_dict(FUZZ_CONFIG))
    schema.app = app
    return schema
