"""HTTP endpoints for the program's earning rules (scope `admin`), versioned.

Every change writes a new version of the whole rule set; earns record the version they were
computed with, and old versions stay readable at `/v1/rules/versions/{version}`. Responses
carry `ETag: "<version>"`; send it back as `If-Match` to change the rules only if nobody
else changed them since (412 `version_mismatch` otherwise).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, Path
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from app import errors
from app.db import get_autocommit_connection
from app.ledger.idempotency import IdempotencyKey, StoredResponse
from app.programs.auth import IsAdmin
from app.programs.settings import ChangeSession
from app.rules import repository, service
from app.rules.engine import Rule
from app.rules.schemas import PATCH_DESCRIPTION, PATCH_EXAMPLE, RuleSetView, RuleView
from app.rules.types import RuleId

router = APIRouter(prefix="/v1/rules", tags=["rules"])

RulePath = Annotated[RuleId, Path(description="The rule's id")]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1000,
        description='Apply the change only to this version of the rules: the ETag, e.g. "7".',
    ),
]
Connection = Annotated[AsyncConnection, Depends(get_autocommit_connection)]

_WRITE_ERRORS = (
    errors.IdempotencyKeyMissing,
    errors.IdempotencyConflict,
    errors.VersionConflict,
    errors.VersionMismatch,
)


def _json(body: Any, *, version: int, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"ETag": service.etag(version)},
    )


def _render(stored: StoredResponse) -> Response:
    """The write's response (or its replay) with the ETag of the version it produced."""
    response = stored.render()
    body = orjson.loads(stored.body) if isinstance(stored.body, str) else stored.body
    response.headers["ETag"] = service.etag(body["rules_version"])
    if stored.status == 201:
        response.headers["Location"] = f"/v1/rules/{body['rule']['id']}"
    return response


@router.get(
    "",
    response_model=RuleSetView,
    summary="The current earning rules",
    description='The current version of the rules, with `ETag: "<version>"`.',
    responses=errors.error_responses(),
)
async def get_rules(caller: IsAdmin, conn: Connection) -> Response:
    stored = await repository.current(conn, caller.program.id)
    return _json(_set_view(stored), version=stored.version)


@router.get(
    "/versions/{version}",
    response_model=RuleSetView,
    summary="An earlier version of the rules",
    description="Versions are never changed: this is what earns recorded with it used.",
    responses=errors.error_responses(errors.RulesVersionNotFound),
)
async def get_rules_version(
    version: Annotated[int, Path(ge=1, le=2_147_483_647, description="A rules version")],
    caller: IsAdmin,
    conn: Connection,
) -> Response:
    stored = await repository.by_version(conn, caller.program.id, version)
    if stored is None:
        raise errors.RulesVersionNotFound(f"the rules have no version {version}")
    return Response(orjson.dumps(_set_view(stored)), media_type="application/json")


@router.get(
    "/{rule_id}",
    response_model=RuleView,
    summary="One rule of the current rules",
    responses=errors.error_responses(errors.RuleNotFound),
)
async def get_rule(rule_id: RulePath, caller: IsAdmin, conn: Connection) -> Response:
    stored = await repository.current(conn, caller.program.id)
    for rule in stored.rules.rules:
        if rule.id == rule_id:
            body = RuleView(rules_version=stored.version, rule=rule).model_dump(mode="json")
            return _json(body, version=stored.version)
    raise errors.RuleNotFound(f"no rule {rule_id!r} in version {stored.version} of the rules")


@router.post(
    "",
    status_code=201,
    response_model=RuleView,
    summary="Add a rule",
    description="Adds the rule at the end of the list (order matters for base rates: the first"
    " one that applies wins) as a new version of the rules.",
    responses=errors.error_responses(errors.RuleExists, *_WRITE_ERRORS, body=True),
)
async def add_rule(
    rule: Annotated[Rule, Body()],
    caller: IsAdmin,
    key: IdempotencyKey,
    session: ChangeSession,
    if_match: IfMatch = None,
) -> Response:
    stored = await service.change_rules(
        session,
        program_id=caller.program.id,
        key=key,
        operation="add_rule",
        request=rule.model_dump(mode="json"),
        if_match=if_match,
        change=service.add_rule(rule),
    )
    return _render(stored)


@router.patch(
    "/{rule_id}",
    response_model=RuleView,
    summary="Change a rule (JSON merge patch)",
    description=PATCH_DESCRIPTION,
    responses=errors.error_responses(
        errors.RuleNotFound, errors.RuleKindImmutable, *_WRITE_ERRORS, body=True
    ),
)
async def patch_rule(
    rule_id: RulePath,
    patch: Annotated[
        dict[str, Any],
        Body(
            description=PATCH_DESCRIPTION,
            openapi_examples={"extend": {"summary": "Extend a campaign", "value": PATCH_EXAMPLE}},
        ),
    ],
    caller: IsAdmin,
    key: IdempotencyKey,
    session: ChangeSession,
    if_match: IfMatch = None,
) -> Response:
    stored = await service.change_rules(
        session,
        program_id=caller.program.id,
        key=key,
        operation="patch_rule",
        # canonical text: a patch may hold integers beyond 64 bits, which orjson refuses
        request={"rule_id": rule_id, "patch": json.dumps(patch, sort_keys=True)},
        if_match=if_match,
        change=service.patch_rule(rule_id, patch),
    )
    return _render(stored)


@router.delete(
    "/{rule_id}",
    response_model=RuleView,
    summary="Remove a rule",
    description="Writes a new version without the rule; the answer shows the removed rule.",
    responses=errors.error_responses(errors.RuleNotFound, *_WRITE_ERRORS),
)
async def delete_rule(
    rule_id: RulePath,
    caller: IsAdmin,
    key: IdempotencyKey,
    session: ChangeSession,
    if_match: IfMatch = None,
) -> Response:
    stored = await service.change_rules(
        session,
        program_id=caller.program.id,
        key=key,
        operation="delete_rule",
        request={"rule_id": rule_id},
        if_match=if_match,
        change=service.delete_rule(rule_id),
    )
    return _render(stored)


def _set_view(stored: repository.StoredRuleSet) -> dict[str, Any]:
    return {
        **stored.rules.model_dump(mode="json"),
        "created_at": stored.created_at.isoformat(),
    }
