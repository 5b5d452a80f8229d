"""The small interfaces over Redis and the job queue: the real one and the fallback behave alike."""

import time
import uuid

import pytest

from core.redis import MemoryStore, RedisStore, StoreUnavailable


@pytest.fixture(params=["memory", "redis"])
def store(request):
    prefix = f"uctest:{uuid.uuid4().hex[:8]}:"
    if request.param == "memory":
        return MemoryStore(prefix)
    return RedisStore(request.getfixturevalue("redis_url"), prefix)


def test_counters_expire_after_their_window(store):
    assert [store.incr("c", 1) for _ in range(3)] == [1, 2, 3]
    assert 0 < store.ttl("c") <= 1
    time.sleep(1.1)
    assert store.incr("c", 1) == 1


def test_set_only_if_absent_is_single_use(store):
    assert store.set("code", "a", 30, only_if_absent=True) is True
    assert store.set("code", "b", 30, only_if_absent=True) is False
    assert store.get("code") == "a"
    store.delete("code")
    assert store.get("code") is None and store.ttl("code") == 0


def test_prefixes_keep_tenants_apart(store):
    store.set("k", "1", 30)
    other = MemoryStore("other:") if isinstance(store, MemoryStore) else RedisStore(store.url, "other:")
    assert other.get("k") is None


def test_redis_down_is_reported_not_hidden():
    dead = RedisStore("redis://127.0.0.1:1/0", "x:")
    assert dead.ping() is False
    with pytest.raises(StoreUnavailable):
        dead.incr("c", 10)


def test_login_fails_closed_when_redis_is_down(client, session, app):
    from core.models import Role
    from tests import factories as f

    f.user(session, Role.AUDITOR, username="grace")
    real = app.extensions["kv"]
    app.extensions["kv"] = RedisStore("redis://127.0.0.1:1/0", "x:")
    try:
        resp = client.post("/api/v1/auth/tokens", json={"username": "grace", "password": f.PASSWORD})
    finally:
        app.extensions["kv"] = real
    assert resp.status_code == 503 and resp.get_json()["error"] == "service_unavailable"


def test_healthz_reports_database_and_redis(client, app):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["redis"] == ("ok" if app.config["REDIS_URL"] else "in-process fallback")


def test_healthz_says_when_redis_is_down(client, app):
    real = app.extensions["kv"]
    app.extensions["kv"] = RedisStore("redis://127.0.0.1:1/0", "x:")
    try:
        resp = client.get("/healthz")
    finally:
        app.extensions["kv"] = real
    assert resp.status_code == 503 and resp.get_json()["redis"] == "unavailable"


def test_rq_runs_a_queued_import_through_real_redis(client, session, app, redis_url, tmp_path):
    """The queue path: enqueue on Redis, a worker picks it up, the import completes."""
    import io

    from rq import SimpleWorker

    from core.jobs import jobs
    from core.models import Role
    from members import service
    from tests import factories as f

    tree = f.org_tree(session)
    actor_user = f.user(session, Role.UNION_ADMIN)
    actor = f.PLATFORM.__class__(actor_user.id, "t", Role.UNION_ADMIN)
    csv_text = "name,id_number,phone,union_id\n" + "".join(
        f"成员{i},{f.unique_id_number()},139{i:08d},{tree['yc_base'].public_id}\n" for i in range(5))
    imp = service.start_import(session, actor, io.BytesIO(csv_text.encode()), "m.csv",
                               app.config["UPLOAD_FOLDER"], 100)
    old_mode = jobs.mode
    jobs.mode = "rq"
    try:
        with app.app_context():
            queue = jobs.queue(f"uctest-{uuid.uuid4().hex[:8]}")
            job = queue.enqueue("core.jobs.run_job", "members.jobs:run_import_job", imp.public_id)
            SimpleWorker([queue], connection=queue.connection).work(burst=True)
            assert job.get_status(refresh=True) == "finished", job.latest_result()
    finally:
        jobs.mode = old_mode
    session.expire_all()
    done = service.get_import(session, f.PLATFORM, imp.public_id)
    assert (done.status.value, done.created_rows) == ("completed", 5)


def test_counters_count_down_but_not_below_zero_or_back_to_life(store):
    assert store.decr("gone") == 0 and store.get("gone") is None
    store.incr("c", 30)
    store.incr("c", 30)
    assert store.decr("c") == 1 and store.decr("c") == 0 and store.decr("c") == 0
    assert 0 < store.ttl("c") <= 30  # the window the first increment started is kept


def test_healthz_says_when_the_database_is_down(client, monkeypatch):
    from sqlalchemy.orm import sessionmaker

    from core.db import db, make_engine

    dead = make_engine("sqlite:////nonexistent-directory/unioncard.sqlite3")
    monkeypatch.setattr(db, "factory", sessionmaker(dead))
    try:
        resp = client.get("/healthz")
    finally:
        dead.dispose()
    assert resp.status_code == 503
    body = resp.get_json()
    assert (body["status"], body["database"]) == ("degraded", "unavailable")
