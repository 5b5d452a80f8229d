import pytest

from core.models import Role
from tests import factories as f


@pytest.fixture
def admin_headers(session):
    return f.bearer(session, f.user(session, Role.UNION_ADMIN))


def assert_error(resp, status, word):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["code"] == status and body["error"] == word and body["message"]
    return body


def test_malformed_json_is_400(client, admin_headers):
    resp = client.post("/api/v1/members", headers=admin_headers, data='{"name": ', content_type="application/json")
    assert_error(resp, 400, "malformed_json")


def test_missing_fields_and_wrong_types_are_422_per_field(client, admin_headers):
    resp = client.post("/api/v1/members", headers=admin_headers, json={"name": 12, "id_number": ["x"]})
    body = assert_error(resp, 422, "validation_error")
    assert set(body["errors"]) == {"name", "id_number", "phone", "union_id"}
    assert all(isinstance(t, str) for texts in body["errors"].values() for t in texts)


def test_unknown_fields_are_refused_not_ignored(client, admin_headers):
    resp = client.post("/api/v1/unions", headers=admin_headers, json={"name": "x", "region": "640000", "colour": 1})
    body = assert_error(resp, 422, "validation_error")
    assert "colour" in body["errors"]


def test_a_json_body_that_is_not_an_object_is_422(client, admin_headers):
    for payload in ("[1, 2]", '"text"', "null", "42"):
        resp = client.post("/api/v1/unions", headers=admin_headers, data=payload, content_type="application/json")
        assert resp.status_code in (400, 422), payload
        assert resp.get_json()["code"] == resp.status_code


def test_oversized_json_is_413(client, admin_headers, app):
    big = "x" * (app.config["MAX_JSON_LENGTH"] + 10)
    resp = client.post("/api/v1/unions", headers=admin_headers, json={"name": big, "region": "640000"})
    assert_error(resp, 413, "payload_too_large")


def test_oversized_upload_is_413(client, admin_headers, app):
    app.config["MAX_CONTENT_LENGTH"], old = 1024, app.config["MAX_CONTENT_LENGTH"]
    try:
        import io

        data = {"file": (io.BytesIO(b"name,id_number,phone,union_id\n" + b"x" * 4096), "m.csv")}
        resp = client.post("/api/v1/members/imports", headers=admin_headers, data=data,
                           content_type="multipart/form-data")
        assert_error(resp, 413, "payload_too_large")
    finally:
        app.config["MAX_CONTENT_LENGTH"] = old


def test_unknown_path_and_method_are_json_under_the_api(client, admin_headers):
    assert_error(client.get("/api/v1/no-such-thing"), 404, "not_found")
    resp = client.put("/api/v1/unions", headers=admin_headers, json={})
    assert_error(resp, 405, "method_not_allowed")
    assert "GET" in resp.headers["Allow"]


def test_bad_query_values_are_422(client, admin_headers):
    assert_error(client.get("/api/v1/members?limit=0", headers=admin_headers), 422, "validation_error")
    assert_error(client.get("/api/v1/members?limit=abc", headers=admin_headers), 422, "validation_error")
    assert_error(client.get("/api/v1/members?cursor=%%%", headers=admin_headers), 422, "validation_error")
    assert_error(client.get("/api/v1/members?hardship=maybe", headers=admin_headers), 422, "validation_error")


def test_pages_get_a_friendly_error_page(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404
    assert resp.mimetype == "text/html"
    assert "页面不存在" in resp.get_data(as_text=True)


def test_an_unexpected_error_is_a_500_in_the_api_format_without_details(client, app, admin_headers, monkeypatch):
    from members import service

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "list_unions", boom)
    resp = client.get("/api/v1/unions", headers=admin_headers)
    assert_error(resp, 500, "internal_error")
    assert "secret" not in resp.get_data(as_text=True)


def test_request_ids_are_echoed(client):
    resp = client.get("/healthz", headers={"X-Request-Id": "abc12345-req"})
    assert resp.headers["X-Request-Id"] == "abc12345-req"
    assert len(client.get("/healthz", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]) == 32


def test_nul_characters_are_refused_everywhere(client, admin_headers):
    resp = client.get("/api/v1/members?q=a%00b", headers=admin_headers)
    assert_error(resp, 422, "validation_error")
    assert resp.get_json()["errors"] == {"q": ["Text may not contain NUL characters."]}
    resp = client.post("/api/v1/unions", headers=admin_headers, json={"name": "a\u0000b", "region": "640000"})
    assert_error(resp, 422, "validation_error")
    assert "name" in resp.get_json()["errors"]


def test_cursor_out_of_range_is_422(client, admin_headers):
    import base64

    huge = base64.urlsafe_b64encode(b"k" + str(10**30).encode()).decode().rstrip("=")
    assert_error(client.get(f"/api/v1/members?cursor={huge}", headers=admin_headers), 422, "validation_error")


DEEP_JSON = "[" * 60_000 + "]" * 60_000


@pytest.mark.parametrize("path, content_type", [
    ("/api/v1/unions", "application/json"),
    ("/api/v1/members", "application/merge-patch+json"),
    ("/api/v1/auth/tokens", "application/json"),  # public: refused before any authentication
])
def test_json_nested_too_deeply_is_400_not_a_crash(client, admin_headers, path, content_type):
    resp = client.post(path, headers=admin_headers, data=DEEP_JSON, content_type=content_type)
    body = assert_error(resp, 400, "malformed_json")
    assert "nested" in body["message"]


def test_nul_in_nested_json_and_in_keys_is_found(client, admin_headers):
    import json

    doc = {"name": "x"}
    inner = doc
    for _ in range(500):
        inner["n"] = {}
        inner = inner["n"]
    inner["bad\u0000key"] = "v"
    resp = client.post("/api/v1/unions", headers=admin_headers, data=json.dumps(doc),
                       content_type="application/json")
    body = assert_error(resp, 422, "validation_error")
    assert list(body["errors"]) == ["n" + ".n" * 499 + ".bad\u0000key"]


def test_nul_scan_walks_without_recursion():
    from core.web import _nul_fields

    doc = leaf = []
    for _ in range(100_000):
        leaf.append([])
        leaf = leaf[0]
    leaf.append({"k\u0000": "ok", "v": "a\u0000"})
    found = _nul_fields(doc)
    prefix = "[0]" * 100_001
    assert sorted(found) == sorted([f"{prefix}.k\u0000", f"{prefix}.v"])


@pytest.mark.parametrize("query", ["since=9999-12-31T23:00:00-05:00", "until=0001-01-01T00:00:00%2B05:00"])
def test_audit_dates_beyond_what_utc_can_hold_are_422(client, session, query):
    auditor = f.bearer(session, f.user(session, Role.AUDITOR))
    body = assert_error(client.get(f"/api/v1/audit-events?{query}", headers=auditor), 422, "validation_error")
    assert set(body["errors"]) == {query.split("=")[0]}
    ok = client.get("/api/v1/audit-events?since=2020-01-01T08:00:00%2B08:00", headers=auditor)
    assert ok.status_code == 200


def test_redis_down_during_a_view_is_503_and_frees_the_idempotency_key(client, session, app, admin_headers):
    from sqlalchemy import func, select

    from core.jobs import jobs
    from core.models import IdempotencyKey

    tree = f.org_tree(session)
    csv_text = "name,id_number,phone,union_id\n" + "".join(
        f"成员{i},{f.unique_id_number()},139{i:08d},{tree['yc_base'].public_id}\n" for i in range(3))
    headers = admin_headers | {"Idempotency-Key": "queue-down-1"}
    saved = jobs.mode, app.config["REDIS_URL"], app.config["IMPORT_INLINE_ROWS"]
    # The job queue lives in Redis: with Redis down, queueing a large import fails.
    jobs.mode, app.config["REDIS_URL"], app.config["IMPORT_INLINE_ROWS"] = "rq", "redis://127.0.0.1:1/0", 1
    try:
        import io

        resp = client.post("/api/v1/members/imports", headers=headers, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(csv_text.encode()), "m.csv")})
    finally:
        jobs.mode, app.config["REDIS_URL"], app.config["IMPORT_INLINE_ROWS"] = saved
    assert_error(resp, 503, "service_unavailable")
    assert resp.headers["Retry-After"]
    assert session.scalar(select(func.count(IdempotencyKey.id)).where(IdempotencyKey.key == "queue-down-1")) == 0


def test_key_value_store_down_during_a_view_is_503(client, admin_headers, monkeypatch):
    from core.redis import StoreUnavailable
    from members import service

    def store_down(*args, **kwargs):
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(service, "list_unions", store_down)
    assert_error(client.get("/api/v1/unions", headers=admin_headers), 503, "service_unavailable")
