"""Property-based tests of the running service against its own OpenAPI description.

schemathesis reads `/api/openapi.json` from a real server (file backend, token auth on), makes
requests for every operation from the schemas (valid inputs, and invalid ones: wrong types,
patterns, missing parameters) with an admin token, and checks each answer: never a 5xx, a status
code the description lists for that operation (there is no catch-all `default`), the content
type it names, the headers it requires, and a body that matches its schema. Examples are drawn
derandomized, so a run is repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is a test dependency (pip install -e '.[test]')"
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode, checks  # noqa: E402

from mindproject.app import ROUTES  # noqa: E402
from mindproject.openapi import openapi_document  # noqa: E402
from tests.helpers import RunningServer, run_server  # noqa: E402

MAX_EXAMPLES = 40

# tus chunks (api/resumable.py) are raw bytes under their own media type.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
# Uploads take raw bytes of any other media type too.
schemathesis.serializer.alias("*/*", "application/octet-stream")

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
# A 501 the operation describes is its documented answer, not a server error: direct uploads on
# this server's file backend (docs/api.md). Every other check still applies to it.
DOCUMENTED_501_CHECKS = [check for check in CHECKS if check is not checks.not_a_server_error]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp_path = tmp_path_factory.mktemp("schemathesis")
    with run_server(tmp_path, f"file://{tmp_path / 'data'}") as server:
        with server.client() as admin:  # something to find, page through and delete
            for device in ("sensor-1", "sensor-2"):
                stored = admin.put(f"/api/devices/{device}", files={"file": ("f", b"reading")})
                assert stored.status_code == 200, stored.text
        yield server


# The operations, from the description in this checkout: one test per operation and mode.
# (The tests themselves draw from the description the running server serves; a test below
# checks that the two are the same.)
_PATHS = openapi_document(ROUTES)["paths"]
OPERATIONS = [
    (path, method.upper())
    for path, item in _PATHS.items()
    for method in item
    if method in ("get", "put", "post", "delete", "patch", "head", "options")
]


def _takes_input(path: str, method: str) -> bool:
    item = _PATHS[path]
    operation = item[method.lower()]
    return bool(item.get("parameters") or operation.get("parameters") or "requestBody" in operation)


# Valid inputs for every operation; invalid ones for every operation that takes any input
# (/healthz and /readyz take none: there is nothing to make invalid, hypothesis would find no
# example at all).
CASES = [
    pytest.param(path, method, mode, id=f"{method} {path} {mode.value}")
    for path, method in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _takes_input(path, method)
]


@pytest.fixture(scope="module")
def served_schema(live: RunningServer) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/api/openapi.json")


@pytest.mark.server
@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_every_operation_answers_as_described(
    live: RunningServer, served_schema: Any, path: str, method: str, mode: GenerationMode
) -> None:
    operation = served_schema[path][method]
    describes_501 = "501" in _PATHS[path][method.lower()]["responses"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_described(case: Any) -> None:
        response = case.call(base_url=live.url, headers=live.auth_headers, timeout=30)
        statuses.append(response.status_code)
        documented_501 = describes_501 and response.status_code == 501
        case.validate_response(response, checks=DOCUMENTED_501_CHECKS if documented_501 else CHECKS)

    statuses: list[int] = []
    answers_as_described()
    assert statuses
    if mode is GenerationMode.POSITIVE:
        # The admin token got through every time: these were real calls, not a wall of 401s.
        assert not {401, 403} & set(statuses), sorted(set(statuses))
    else:
        # Invalid inputs include a broken Authorization header (the description declares bearer
        # auth), answered 401; most calls must still have reached the routes.
        assert set(statuses) - {401}, sorted(set(statuses))


@pytest.mark.server
def test_the_description_is_the_served_one(live: RunningServer, served_schema: Any) -> None:
    with live.client() as client:
        assert client.get("/api/openapi.json").json() == openapi_document(ROUTES)
    labels = {op.ok().label for op in served_schema.get_all_operations()}
    assert labels == {f"{method} {path}" for path, method in OPERATIONS}
