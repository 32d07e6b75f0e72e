"""Errors as HTTP: every failure is an RFC 9457 `application/problem+json` response.

`app.errors` defines the errors (status, stable code, title); this module renders them, turns
the framework's own failures (validation, unknown routes, wrong methods) and database failures
into them, and documents them per operation in the OpenAPI document. A 500 carries no stack
trace; it is logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app import errors
from app.db import translate

PROBLEM_JSON = "application/problem+json"

log = structlog.get_logger(__name__)


def problem_response(error: errors.ApiError, headers: Mapping[str, str] | None = None) -> Response:
    body = error.problem().model_dump(exclude_none=True)
    if isinstance(error, errors.ServiceUnavailable):
        headers = {"Retry-After": "1", **(headers or {})}
    return Response(
        orjson.dumps(body), status_code=error.status, media_type=PROBLEM_JSON, headers=headers
    )


def error_responses(
    *documented: type[errors.ApiError], body: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for an authenticated endpoint: each status with the codes it may
    carry. `body=True` adds the problems of reading a JSON body."""
    by_status: dict[int, list[str]] = {}
    every: tuple[type[errors.ApiError], ...] = (
        *documented,
        errors.ValidationFailed,
        errors.Unauthorized,
        errors.Forbidden,
        errors.ServiceUnavailable,
    )
    if body:
        every += (errors.MalformedJson, errors.PayloadTooLarge)
    for error in every:
        by_status.setdefault(error.status, []).append(error.code)
    return {
        status: {
            "model": errors.Problem,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "Problem details; code is one of: " + ", ".join(sorted(set(codes))),
        }
        for status, codes in sorted(by_status.items())
    }


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [str(part) for part in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in exc.errors()
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.ApiError)
    async def api_error_handler(_: Request, exc: errors.ApiError) -> Response:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_handler(_: Request, exc: RequestValidationError) -> Response:
        found = _validation_errors(exc)
        if any(err["type"] == "json_invalid" for err in found):
            return problem_response(errors.MalformedJson(found[0]["msg"]))
        first = found[0] if found else {"loc": [], "msg": "invalid request"}
        where = ".".join(part for part in first["loc"] if part != "body") or "body"
        return problem_response(errors.ValidationFailed(f"{where}: {first['msg']}", errors=found))

    @app.exception_handler(StarletteHTTPException)
    async def http_error_handler(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return problem_response(errors.NotFound("No such endpoint"))
        if exc.status_code == 405:
            return problem_response(errors.MethodNotAllowed(), headers=exc.headers)
        body = {
            "type": errors.PROBLEM_TYPE_BASE + "bad_request",
            "title": "Bad request",
            "status": exc.status_code,
            "code": "bad_request",
            "detail": str(exc.detail),
        }
        return Response(
            orjson.dumps(body),
            status_code=exc.status_code,
            media_type=PROBLEM_JSON,
            headers=exc.headers,
        )

    @app.exception_handler(asyncpg.PostgresError)
    async def database_error_handler(request: Request, exc: asyncpg.PostgresError) -> Response:
        translated = translate(exc)
        if translated is None:
            log.error("database_error", path=request.url.path, error=str(exc))
            translated = errors.ApiError("An unexpected database error occurred; it was logged.")
        return problem_response(translated)

    @app.exception_handler(OSError)
    async def unreachable_handler(request: Request, exc: OSError) -> Response:
        # Connecting to the database failed (refused, reset, no route): retry later.
        log.warning("database_unreachable", path=request.url.path, error=str(exc))
        return problem_response(
            errors.ServiceUnavailable("the database is unavailable; retry shortly")
        )

    @app.exception_handler(Exception)
    async def unexpected_handler(request: Request, exc: Exception) -> Response:
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(
            errors.ApiError("An unexpected error occurred; it has been logged.")
        )
