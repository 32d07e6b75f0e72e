"""API fuzzing: schemathesis drives every operation of the service's own OpenAPI document.

The document is the one the app generates (the same as the committed openapi/openapi.json,
which test_openapi keeps current). Every operation gets a bounded, derandomized set of
generated requests (schema examples, boundary "coverage" cases and random ones, valid and
deliberately invalid, plus unsupported methods), sent over HTTP to a real `points-ledger serve`
process, once with a valid admin API key and once without one. Every response must:

* not be a server error (no 5xx),
* carry a status code the document lists for that operation,
* carry a content type the document lists for that status,
* have a body and headers that validate against the documented schemas,
* be a 4xx when the request violates the document (negative data rejection),
* with the key: never be a 401; without it: never be a 2xx on a /v1 operation.

The last tests walk the success path of every write and read (which random data rarely reaches:
idempotency keys collide, members do not exist) and validates those responses the same way,
and pin the bugs the fuzzer found.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.openapi import generate
from tests.support import CLI, ROOT, LiveServer, TestProgram

pytestmark = pytest.mark.load

# Hypothesis examples per operation and key mode (schema-derived boundary cases come on top).
EXAMPLES = int(os.environ.get("POINTS_LEDGER_FUZZ_EXAMPLES", "30"))

schema = schemathesis.openapi.from_dict(generate())

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzz_key(live_server: LiveServer) -> str:
    """The admin key of a program of the fuzzer's own (made with the CLI, as an operator)."""
    slug = f"fuzz-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "POINTS_LEDGER_DATABASE_URL": live_server.database_url, "NO_COLOR": "1"}
    done = subprocess.run(
        [*CLI, "program", "create", "--slug", slug, "--name", "Fuzz", "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["api_key"])


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.mark.parametrize("auth", ["api_key", "no_key"])
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(
    case: schemathesis.Case,
    auth: str,
    live_server: LiveServer,
    fuzz_key: str,
    http: requests.Session,
) -> None:
    # Schemathesis generates the Authorization header itself: a random bearer token, or none
    # in some invalid cases. With `api_key` a generated header carries the program's real key
    # instead; with `no_key` requests go out with the random token or with no header at all.
    # (The case itself is left alone: Hypothesis may hand the same case to both runs.)
    headers = None
    if auth == "api_key" and case.headers and "Authorization" in case.headers:
        headers = {"Authorization": f"Bearer {fuzz_key}"}
    response = case.call_and_validate(
        base_url=live_server.base_url, session=http, headers=headers, checks=CHECKS, timeout=30
    )
    if headers is not None:
        assert response.status_code != 401, response.text
    if auth == "no_key" and case.path.startswith("/v1/"):
        assert not 200 <= response.status_code < 300, response.text


def test_success_responses_conform(
    live_server: LiveServer, fuzz_key: str, http: requests.Session
) -> None:
    """Each operation's 2xx answer, validated against the document like the fuzzed ones."""
    auth = {"Authorization": f"Bearer {fuzz_key}"}

    def call(path: str, method: str, expected: int, **parts: Any) -> Any:
        headers = {**auth, **parts.pop("headers", {})}
        case = schema[path][method].Case(headers=headers, **parts)
        response = case.call_and_validate(
            base_url=live_server.base_url, session=http, checks=CHECKS, timeout=30
        )
        assert response.status_code == expected, response.text
        return response.json()

    def write(path: str, body: dict[str, Any], expected: int = 201, **parts: Any) -> Any:
        return call(
            path,
            "POST",
            expected,
            body=body,
            headers={"Idempotency-Key": uuid.uuid4().hex},
            **parts,
        )

    member = f"m-{uuid.uuid4().hex[:8]}"
    write("/v1/members", {"external_id": member, "birthday": "1990-02-28", "attributes": {"a": 1}})
    write("/v1/members", {"external_id": member}, expected=200)
    earned = write(
        "/v1/earn",
        {"member": member, "order": {"id": "o-1", "amount": 12_345, "currency": "EUR"}},
    )
    assert earned["points"] == 123
    write("/v1/earn", {"member": member, "points": 50, "metadata": {"channel": "web"}})
    redeemed = write("/v1/redeem", {"member": member, "points": 20, "order_id": "o-2"})
    write("/v1/adjustments", {"member": member, "points": -3, "reason": "goodwill"})
    reversal = write(
        "/v1/transactions/{transaction_id}/reverse",
        {"reason": "order cancelled"},
        path_parameters={"transaction_id": redeemed["transaction_id"]},
    )
    assert reversal["reverses"] == redeemed["transaction_id"]
    got = call(
        "/v1/transactions/{transaction_id}",
        "GET",
        200,
        path_parameters={"transaction_id": earned["transaction_id"]},
    )
    assert got["id"] == earned["transaction_id"]
    assert (
        call("/v1/members/{external_id}", "GET", 200, path_parameters={"external_id": member})[
            "balance"
        ]["available"]
        == 123 + 50 - 3
    )
    page = call(
        "/v1/members/{external_id}/transactions",
        "GET",
        200,
        path_parameters={"external_id": member},
        query={"limit": 2},
    )
    assert len(page["items"]) == 2 and page["next_cursor"]
    call(
        "/v1/members/{external_id}/transactions",
        "GET",
        200,
        path_parameters={"external_id": member},
        query={"limit": 2, "cursor": page["next_cursor"]},
    )


@pytest.mark.parametrize(
    "path,body",
    [
        # Found by the fuzzer: a number was read as a Unix time (0 -> 1970-01-01).
        ("/v1/members", {"external_id": "iso-1", "birthday": 0}),
        ("/v1/members", {"external_id": "iso-2", "birthday": "0"}),
        ("/v1/members", {"external_id": "iso-3", "birthday": "2024-05-17T00:00:00"}),
        ("/v1/earn", {"member": "iso-4", "points": 1, "occurred_at": 1_700_000_000}),
        ("/v1/earn", {"member": "iso-5", "points": 1, "occurred_at": "1700000000"}),
    ],
)
async def test_dates_must_be_iso_8601_text(
    client: httpx.AsyncClient, program: TestProgram, path: str, body: dict[str, Any]
) -> None:
    response = await client.post(path, json=body, headers=program.write_headers())
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
