"""Schemathesis against the API's own OpenAPI document: every operation, sent by callers who may and may not
call it, naming objects that exist (theirs or not) or random ones, never answers 5xx and always answers as
the document says: a status it lists for the operation, the content type and the schema it gives."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_headers_conformance, response_schema_conformance,
                                               status_code_conformance)

from core.models import Role
from tests.fuzz.conftest import ANONYMOUS, PLATFORM_ADMIN

pytestmark = pytest.mark.fuzz

schema = schemathesis.pytest.from_fixture("fuzz_schema")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
SIGNED_IN = [*(role.value for role in Role), PLATFORM_ADMIN]
RULE_PARAMETER = re.compile(r"<(?:[^<>]*:)?([^<>:]+)>")


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    # schemathesis' fixture-loaded schemas read and rename the test's node id through `_nodeid`, which
    # pytest 9 no longer has.
    request.node._nodeid = request.node.nodeid


def allowed_callers(app, method: str, path: str) -> list[str]:
    """Return who may call an operation (everyone, anonymous included, for a public one)."""
    for rule in app.url_map.iter_rules():
        if RULE_PARAMETER.sub(r"{\1}", rule.rule) == path and method.upper() in rule.methods:
            roles = app.view_functions[rule.endpoint].allowed_roles
            break
    else:
        raise AssertionError(f"no route for {method} {path}")
    if roles is None:
        return [ANONYMOUS, *SIGNED_IN]
    names = sorted(role.value for role in roles)
    return [*names, PLATFORM_ADMIN] if Role.UNION_ADMIN in roles else names


def callers(app, method: str, path: str) -> list[str]:
    """Who an example may be sent as: any caller allowed, one role that is not, and nobody."""
    allowed = allowed_callers(app, method, path)
    refused = [name for name in SIGNED_IN if name not in allowed][:1]
    return [*allowed, *refused, *([] if ANONYMOUS in allowed else [ANONYMOUS])]


def with_known_values(case, known: dict[str, list], data) -> None:
    """Let a path, query or body name an object that exists (the caller's or not), or carry a value that fits
    (a valid unused ID number, the card's PIN), or keep the random value.

    Only a part generated as valid is touched: an invalid one must reach the API as schemathesis made it."""
    parts = {ParameterLocation.PATH: case.path_parameters, ParameterLocation.QUERY: case.query,
             ParameterLocation.BODY: case.body if isinstance(case.body, dict) else None}
    for location, values in parts.items():
        component = case.meta.components.get(location) if case.meta else None
        if not values or (component is not None and component.mode != GenerationMode.POSITIVE):
            continue
        for name in list(values):
            if known.get(name):
                values[name] = data.draw(st.sampled_from([*known[name], values[name]]), label=name)


@schema.given(data=st.data())
@settings(deadline=None, suppress_health_check=list(HealthCheck))
@schema.parametrize()
def test_every_operation_answers_as_documented(case, data, app, fuzz_world):
    caller = data.draw(st.sampled_from(callers(app, case.method, case.path)), label="caller")
    with_known_values(case, fuzz_world.known, data)
    headers = fuzz_world.headers[caller]
    with fuzz_world.example():
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)
