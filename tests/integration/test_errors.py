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
    body = assert_error(resp, 500, "internal_error")
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
