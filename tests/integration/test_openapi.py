def test_the_openapi_document_describes_the_api(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and doc["info"]["version"] == "v1"
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    paths = doc["paths"]
    for path, method in [("/api/v1/auth/tokens", "post"), ("/api/v1/unions", "post"), ("/api/v1/unions", "get"),
                         ("/api/v1/members", "post"), ("/api/v1/members", "get"),
                         ("/api/v1/members/imports", "post"), ("/api/v1/members/{member_id}/hardship", "put")]:
        assert method in paths[path], (path, method)
    assert "security" not in paths["/api/v1/auth/tokens"]["post"]
    assert paths["/api/v1/members"]["get"]["security"] == [{"bearerAuth": []}]
    header = [p for p in paths["/api/v1/members"]["post"]["parameters"] if p["in"] == "header"]
    assert [p["name"] for p in header] == ["Idempotency-Key"]
    member = doc["components"]["schemas"]["Member"]["properties"]
    assert {"id", "name", "id_number", "phone", "union_id", "status", "hardship"} <= set(member)
    error = doc["components"]["schemas"]["ApiError"]["properties"]
    assert set(error) == {"code", "error", "message", "errors"}
