"""The OpenAPI document lists, for each operation, the errors any operation of its kind may answer: the
fuzzing checks a status against these lists, so they must be there by number, not only under `default`."""

from __future__ import annotations

import re

import pytest

from core.idempotency import KEY_RE

pytestmark = pytest.mark.fuzz

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document(app):
    return app.test_client().get("/api/v1/openapi.json").get_json()


@pytest.fixture(scope="module")
def operations(document):
    return [(method, path, operation) for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS]


def test_an_operation_whose_path_names_an_object_lists_404(operations):
    missing = [(m, p) for m, p, op in operations if "{" in p and "404" not in op["responses"]]
    assert missing == []


def test_an_operation_that_takes_a_body_lists_400_and_422(operations):
    missing = [(m, p) for m, p, op in operations
               if "requestBody" in op and not {"400", "422"} <= set(op["responses"])]
    assert missing == []


def test_a_keyed_post_lists_400_and_409_and_the_keys_it_takes(operations):
    keyed = [(p, op) for m, p, op in operations if m == "post" and op.get("security")]
    assert len(keyed) > 40
    for path, op in keyed:
        assert {"400", "409"} <= set(op["responses"]), path
        header = next(p for p in op["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key")
        pattern = re.compile(header["schema"]["pattern"])
        assert pattern.pattern == KEY_RE.pattern and header["schema"]["maxLength"] == 255
    assert pattern.match("order-2026-0001") and not pattern.match("with space") and not pattern.match("")


def test_an_error_is_listed_with_the_api_error_body(document, operations):
    shared = document["components"]["responses"]
    for method, path, op in operations:
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                response = shared[response["$ref"].rsplit("/", 1)[1]] if "$ref" in response else response
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ApiError"}, (method, path, status)
