import datetime as dt

from sqlalchemy import func, select

from core.db import utcnow
from core.models import ApiToken, AuditEvent, Role
from tests import factories as f


def login(client, username, password=f.PASSWORD, ip="10.0.0.1"):
    return client.post("/api/v1/auth/tokens", json={"username": username, "password": password},
                       environ_base={"REMOTE_ADDR": ip})


def test_token_issued_for_good_credentials_and_works(client, session):
    u = f.user(session, Role.AUDITOR, username="alice")
    resp = login(client, "Alice")  # usernames are case-insensitive
    assert resp.status_code == 201
    body = resp.get_json()
    assert body["token"].startswith("uct_") and body["user"]["role"] == "auditor"
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert dt.timedelta(hours=7) < expires - utcnow() <= dt.timedelta(hours=8)
    stored = session.scalar(select(ApiToken).where(ApiToken.user_id == u.id))
    assert stored.token_hash != body["token"] and body["token"] not in stored.token_hash
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.get_json()["username"] == "alice"


def test_wrong_password_and_unknown_user_answer_the_same(client, session):
    f.user(session, Role.AUDITOR, username="bob")
    wrong = login(client, "bob", "not-the-password")
    unknown = login(client, "nobody-here", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {
        "code": 401, "error": "invalid_credentials", "message": "Wrong username or password."}


def test_missing_and_bad_tokens_are_401(client, session):
    assert client.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401
    resp = client.get("/api/v1/me", headers={"Authorization": "Bearer uct_forged"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_token"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_refused(client, session):
    u = f.user(session, Role.AUDITOR)
    headers = f.bearer(session, u)
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    token = session.scalar(select(ApiToken).where(ApiToken.user_id == u.id))
    token.expires_at = utcnow() - dt.timedelta(seconds=1)
    session.commit()
    assert client.get("/api/v1/me", headers=headers).status_code == 401


def test_revoking_the_current_token_stops_it_at_once_and_is_audited(client, session):
    u = f.user(session, Role.AUDITOR)
    headers = f.bearer(session, u)
    other = f.bearer(session, u)
    assert client.delete("/api/v1/auth/tokens/current", headers=headers).status_code == 204
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert client.get("/api/v1/me", headers=other).status_code == 200  # only that token
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.token.revoked")).all()
    assert [e.actor_id for e in events] == [u.id]


def test_a_user_can_revoke_only_their_own_tokens(client, session):
    alice, bob = f.user(session, Role.AUDITOR), f.user(session, Role.AUDITOR)
    a_headers, b_headers = f.bearer(session, alice), f.bearer(session, bob)
    bob_token = session.scalar(select(ApiToken).where(ApiToken.user_id == bob.id))
    assert client.delete(f"/api/v1/auth/tokens/{bob_token.public_id}", headers=a_headers).status_code == 404
    assert client.get("/api/v1/me", headers=b_headers).status_code == 200
    assert client.delete(f"/api/v1/auth/tokens/{bob_token.public_id}", headers=b_headers).status_code == 204
    assert client.get("/api/v1/me", headers=b_headers).status_code == 401


def test_deactivated_user_loses_api_access(client, session):
    u = f.user(session, Role.AUDITOR)
    headers = f.bearer(session, u)
    u.is_active = False
    session.commit()
    assert client.get("/api/v1/me", headers=headers).status_code == 401
    assert login(client, u.username).status_code == 401


def test_five_failures_lock_the_account_even_for_the_right_password(client, session, app):
    f.user(session, Role.AUDITOR, username="carol")
    statuses = [login(client, "carol", "wrong-password-x").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    locked = login(client, "carol")
    assert locked.status_code == 429
    assert locked.get_json()["error"] == "too_many_attempts"
    assert 0 < int(locked.headers["Retry-After"]) <= app.config["LOGIN_LOCKOUT_SECONDS"]
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.login.locked")) is not None
    # Other users are not affected.
    f.user(session, Role.AUDITOR, username="dave")
    assert login(client, "dave").status_code == 201


def test_a_good_login_resets_the_failure_count(client, session):
    f.user(session, Role.AUDITOR, username="erin")
    for _ in range(4):
        assert login(client, "erin", "wrong-password-x").status_code == 401
    assert login(client, "erin").status_code == 201
    for _ in range(4):
        assert login(client, "erin", "wrong-password-x").status_code == 401
    assert login(client, "erin").status_code == 201


def test_one_address_guessing_many_usernames_is_locked_out(client, session, app):
    limit = app.config["LOGIN_IP_MAX_FAILURES"]
    f.user(session, Role.AUDITOR, username="frank")
    for i in range(limit):
        login(client, f"guess-{i}", "wrong-password-x", ip="10.9.9.9")
    assert login(client, "frank", ip="10.9.9.9").status_code == 429
    assert login(client, "frank", ip="10.9.9.10").status_code == 201


def test_passwords_are_argon2id_and_production_cost_is_the_library_default(session):
    from argon2 import PasswordHasher

    from core.config import load_config

    u = f.user(session, Role.AUDITOR)
    assert u.password_hash.startswith("$argon2id$") and f.PASSWORD not in u.password_hash
    cfg = load_config("/tmp/unused-instance", {"SECRET_KEY": "x", "DATA_KEY": "y"})
    defaults = PasswordHasher()
    assert (cfg["PASSWORD_HASH_TIME_COST"], cfg["PASSWORD_HASH_MEMORY_KIB"]) == (
        defaults.time_cost, defaults.memory_cost)


def test_issuing_a_token_is_audited_without_the_token(client, session):
    u = f.user(session, Role.AUDITOR)
    body = login(client, u.username, ip="10.0.0.7").get_json()
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.token.issued",
                                                    AuditEvent.object_id == body["token_id"]))
    assert (event.actor_id, event.object_type, event.ip) == (u.id, "token", "10.0.0.7")
    assert event.after["user_id"] == u.public_id and body["token"] not in str(event.after)
    login(client, u.username, "wrong-password-x")
    assert session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "auth.token.issued",
                                                                  AuditEvent.actor_id == u.id)) == 1


def test_parallel_wrong_passwords_get_no_more_guesses_than_the_limit(app, engine, monkeypatch):
    """Twenty guesses at once: at most LOGIN_MAX_FAILURES are checked, the rest are refused unverified."""
    import threading

    from sqlalchemy.orm import Session

    import core.auth

    with Session(engine) as sess:
        username = f.user(sess, Role.AUDITOR).username
    verified, lock = [], threading.Lock()
    real_verify = core.auth.verify_password

    def counting_verify(stored_hash, password):
        with lock:
            verified.append(password)
        return real_verify(stored_hash, password)

    monkeypatch.setattr(core.auth, "verify_password", counting_verify)
    start = threading.Barrier(20)
    statuses = []

    def guess(i):
        client = app.test_client()
        start.wait()
        resp = login(client, username, f"wrong-password-{i}", ip=f"10.77.{f.next_id() % 250}.1")
        with lock:
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    limit = app.config["LOGIN_MAX_FAILURES"]
    assert len(statuses) == 20 and set(statuses) <= {401, 429}
    assert len(verified) <= limit
    assert statuses.count(401) <= limit - 1 and statuses.count(429) >= 20 - limit + 1
    assert login(app.test_client(), username).status_code == 429  # and the account is locked
