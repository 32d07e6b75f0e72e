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
from fastapi import APIRouter, Body, Header, Path
from starlette.responses import Response

from app import errors
from app.api.answers import render
from app.api.deps import Db, IdempotencyKey
from app.api.problems import error_responses
from app.domain.earning import Rule
from app.domain.types import RuleId
from app.ledger.idempotency import Answer
from app.programs import rule_sets as repository
from app.programs.access import Caches, IsAdmin
from app.programs.models import Caller
from app.rules import service
from app.rules.schemas import PATCH_DESCRIPTION, PATCH_EXAMPLE, RuleSetView, RuleView

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
        headers={"ETag": repository.etag(version)},
    )


def _render(answer: Answer, caller: Caller) -> Response:
    """The write's response (or its replay) with the ETag of the version it produced."""
    headers = {"ETag": repository.etag(answer.body["rules_version"])}
    if answer.status == 201:
        headers["Location"] = f"/v1/rules/{answer.body['rule']['id']}"
    return render(answer, caller.program, headers)


async def _change(
    caller: Caller,
    database: Db,
    caches: Caches,
    *,
    key: str,
    operation: str,
    request: Any,
    if_match: str | None,
    change: service.Change,
) -> Response:
    program_id = caller.program.id
    async with database.transaction() as tx:
        answer = await service.change_rules(
            tx,
            program_id=program_id,
            key=key,
            operation=operation,
            request=request,
            if_match=if_match,
            change=change,
        )
        # this process reads the new rules at once (the others when their cache expires, and
        # their postings under the old rules are refused as stale meanwhile)
        tx.after_commit(lambda: caches.programs.forget(program_id))
    return _render(answer, caller)


@router.get(
    "",
    response_model=RuleSetView,
    summary="The current earning rules",
    description='The current version of the rules, with `ETag: "<version>"`.',
    responses=error_responses(),
)
async def get_rules(caller: IsAdmin, database: Db) -> Response:
    async with database.single() as db:
        stored = await repository.current(db, caller.program.id)
    return _json(_set_view(stored), version=stored.version)


@router.get(
    "/versions/{version}",
    response_model=RuleSetView,
    summary="An earlier version of the rules",
    description="Versions are never changed: this is what earns recorded with it used.",
    responses=error_responses(errors.RulesVersionNotFound),
)
async def get_rules_version(
    version: Annotated[int, Path(ge=1, le=2_147_483_647, description="A rules version")],
    caller: IsAdmin,
    database: Db,
) -> Response:
    async with database.single() as db:
        stored = await repository.by_version(db, caller.program.id, version)
    if stored is None:
        raise errors.RulesVersionNotFound(f"the rules have no version {version}")
    return Response(orjson.dumps(_set_view(stored)), media_type="application/json")


@router.get(
    "/{rule_id}",
    response_model=RuleView,
    summary="One rule of the current rules",
    responses=error_responses(errors.RuleNotFound),
)
async def get_rule(rule_id: RulePath, caller: IsAdmin, database: Db) -> Response:
    async with database.single() as db:
        stored = await repository.current(db, caller.program.id)
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
    responses=error_responses(errors.RuleExists, *_WRITE_ERRORS, body=True),
)
async def add_rule(
    rule: Annotated[Rule, Body()],
    caller: IsAdmin,
    key: IdempotencyKey,
    database: Db,
    caches: Caches,
    if_match: IfMatch = None,
) -> Response:
    return await _change(
        caller,
        database,
        caches,
        key=key,
        operation="add_rule",
        request=rule.model_dump(mode="json"),
        if_match=if_match,
        change=service.add_rule(rule),
    )


@router.patch(
    "/{rule_id}",
    response_model=RuleView,
    summary="Change a rule (JSON merge patch)",
    description=PATCH_DESCRIPTION,
    responses=error_responses(
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
    database: Db,
    caches: Caches,
    if_match: IfMatch = None,
) -> Response:
    return await _change(
        caller,
        database,
        caches,
        key=key,
        operation="patch_rule",
        # canonical text: a patch may hold integers beyond 64 bits, which orjson refuses
        request={"rule_id": rule_id, "patch": json.dumps(patch, sort_keys=True)},
        if_match=if_match,
        change=service.patch_rule(rule_id, patch),
    )


@router.delete(
    "/{rule_id}",
    response_model=RuleView,
    summary="Remove a rule",
    description="Writes a new version without the rule; the answer shows the removed rule.",
    responses=error_responses(errors.RuleNotFound, *_WRITE_ERRORS),
)
async def delete_rule(
    rule_id: RulePath,
    caller: IsAdmin,
    key: IdempotencyKey,
    database: Db,
    caches: Caches,
    if_match: IfMatch = None,
) -> Response:
    return await _change(
        caller,
        database,
        caches,
        key=key,
        operation="delete_rule",
        request={"rule_id": rule_id},
        if_match=if_match,
        change=service.delete_rule(rule_id),
    )


def _set_view(stored: repository.StoredRuleSet) -> dict[str, Any]:
    return {
        **stored.rules.model_dump(mode="json"),
        "created_at": stored.created_at.isoformat(),
    }
