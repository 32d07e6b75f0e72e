"""Errors as RFC 9457 problem details.

Every error the service returns is an `ApiError` subclass (or is translated into one), carrying
its HTTP status and a stable machine-readable `code`; one handler renders them all as
`application/problem+json`. Clients switch on `code`, never on `title` or `detail`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://points-ledger.dev/problems/"

log = structlog.get_logger(__name__)


class Problem(BaseModel):
    """RFC 9457 problem details, plus a stable `code`."""

    type: str = Field(examples=[PROBLEM_TYPE_BASE + "insufficient_points"])
    title: str
    status: int
    code: str = Field(description="Stable machine-readable error code.")
    detail: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems, for validation errors."
    )


class ApiError(Exception):
    """Base of every error the API reports; subclasses fix `status`, `code` and `title`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail or self.title)
        self.detail = detail
        self.errors = errors

    def problem(self) -> Problem:
        return Problem(
            type=PROBLEM_TYPE_BASE + self.code,
            title=self.title,
            status=self.status,
            code=self.code,
            detail=self.detail,
            errors=self.errors,
        )


class BadRequest(ApiError):
    status, code, title = 400, "bad_request", "Bad request"


class MalformedJson(ApiError):
    status, code, title = 400, "malformed_json", "Request body is not valid JSON"


class IdempotencyKeyMissing(ApiError):
    status, code, title = 400, "idempotency_key_missing", "Idempotency-Key header is required"


class Unauthorized(ApiError):
    status, code, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(ApiError):
    status, code, title = 403, "forbidden", "API key lacks the required scope"


class NotFound(ApiError):
    status, code, title = 404, "not_found", "Not found"


class MemberNotFound(NotFound):
    code, title = "member_not_found", "Member not found"


class TransactionNotFound(NotFound):
    code, title = "transaction_not_found", "Transaction not found"


class MethodNotAllowed(ApiError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(ApiError):
    status, code, title = 409, "conflict", "Conflict"


class InsufficientPoints(Conflict):
    code, title = "insufficient_points", "Not enough points available"


class IdempotencyConflict(Conflict):
    code, title = "idempotency_conflict", "Idempotency key was used with a different request"


class AlreadyReversed(Conflict):
    code, title = "already_reversed", "Transaction has already been reversed"


class NotReversible(Conflict):
    code, title = "not_reversible", "Transaction cannot be reversed"


class PayloadTooLarge(ApiError):
    status, code, title = 413, "payload_too_large", "Request body is too large"


class UnsupportedMediaType(ApiError):
    status, code, title = 415, "unsupported_media_type", "Request body must be application/json"


class ValidationFailed(ApiError):
    status, code, title = 422, "validation_error", "Request is not valid"


class CurrencyMismatch(ApiError):
    status, code, title = 422, "currency_mismatch", "Order currency differs from the program's"


class OccurredAtOutOfRange(ApiError):
    status, code, title = 422, "occurred_at_out_of_range", "occurred_at is outside the window"


class AmountOutOfRange(ApiError):
    status, code, title = 422, "amount_out_of_range", "Amount would exceed the ledger's range"


class ServiceUnavailable(ApiError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


def problem_response(error: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    body = error.problem().model_dump(exclude_none=True)
    if isinstance(error, ServiceUnavailable):
        headers = {"Retry-After": "1", **(headers or {})}
    return Response(
        orjson.dumps(body), status_code=error.status, media_type=PROBLEM_JSON, headers=headers
    )


def error_responses(*errors: type[ApiError], body: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for an authenticated endpoint: each status with the codes it may
    carry. `body=True` adds the problems of reading a JSON body."""
    by_status: dict[int, list[str]] = {}
    documented: tuple[type[ApiError], ...] = (
        *errors,
        ValidationFailed,
        Unauthorized,
        Forbidden,
        ServiceUnavailable,
    )
    if body:
        documented += (MalformedJson, PayloadTooLarge)
    for error in documented:
        by_status.setdefault(error.status, []).append(error.code)
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            "description": "Problem details; code is one of: " + ", ".join(sorted(set(codes))),
        }
        for status, codes in sorted(by_status.items())
    }


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    cleaned = []
    for err in exc.errors():
        cleaned.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return cleaned


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error_handler(_: Request, exc: ApiError) -> Response:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_handler(_: Request, exc: RequestValidationError) -> Response:
        errors = _validation_errors(exc)
        if any(err["type"] == "json_invalid" for err in errors):
            return problem_response(MalformedJson(errors[0]["msg"]))
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(part for part in first["loc"] if part != "body") or "body"
        return problem_response(ValidationFailed(f"{where}: {first['msg']}", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error_handler(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return problem_response(NotFound("No such endpoint"))
        if exc.status_code == 405:
            return problem_response(MethodNotAllowed(), headers=exc.headers)
        body = {
            "type": PROBLEM_TYPE_BASE + "bad_request",
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

    @app.exception_handler(OSError)
    async def unreachable_handler(request: Request, exc: OSError) -> Response:
        # Connecting to the database failed (refused, reset, no route): retry later.
        log.warning("database_unreachable", path=request.url.path, error=str(exc))
        return problem_response(ServiceUnavailable("the database is unavailable; retry shortly"))

    @app.exception_handler(Exception)
    async def unexpected_handler(request: Request, exc: Exception) -> Response:
        log.exception("unhandled_error", path=request.url.path)
        return problem_response(ApiError("An unexpected error occurred; it has been logged."))


class NothingToEarn(ApiError):
    status, code, title = 422, "nothing_to_earn", "The order earns no points"


class InvalidCursor(ApiError):
    status, code, title = 400, "invalid_cursor", "The pagination cursor is not valid"


class HoldNotFound(NotFound):
    code, title = "hold_not_found", "Hold not found"


class OrderNotFound(NotFound):
    code, title = "order_not_found", "Order not found"


class HoldAlreadyCaptured(Conflict):
    code, title = "hold_already_captured", "The hold has already been captured"


class HoldAlreadyReleased(Conflict):
    code, title = "hold_already_released", "The hold has already been released"


class HoldExpired(Conflict):
    code, title = "hold_expired", "The hold expired and its points were released"


class OrderAlreadyEarned(Conflict):
    code, title = "order_already_earned", "The order has already earned points"


class OrderMemberMismatch(Conflict):
    code, title = "order_member_mismatch", "The order belongs to another member"


class OrderCancelled(Conflict):
    code, title = "order_cancelled", "The order has been cancelled"


class RefundExceedsOrder(Conflict):
    code, title = "refund_exceeds_order", "Refunds would exceed the order amount"


class CaptureExceedsHold(ApiError):
    status, code, title = 422, "capture_exceeds_hold", "Cannot capture more than the hold"


class SameMember(ApiError):
    status, code, title = 422, "same_member", "Cannot transfer points to the same member"


class TransfersDisabled(Forbidden):
    code, title = "transfers_disabled", "Member transfers need the admin scope in this program"


class ReferralCodeUnknown(ApiError):
    status, code, title = 422, "referral_code_unknown", "No member of this program has that code"


class ReferralRefused(ApiError):
    """A referral link the abuse controls refuse (app.rules.referrals.check_link)."""

    status, code, title = 422, "referral_refused", "The referral is not allowed"


class SelfReferral(ReferralRefused):
    code, title = "self_referral", "A member cannot refer itself"


class SelfReferralEmail(ReferralRefused):
    code, title = "self_referral_email", "The referrer has the same e-mail address"


class SelfReferralPhone(ReferralRefused):
    code, title = "self_referral_phone", "The referrer has the same phone number"


class AlreadyReferred(ReferralRefused):
    code, title = "already_referred", "The member already has a referrer"


class AlreadyEnrolled(ReferralRefused):
    code, title = "already_enrolled", "A referral code only counts when the member enrols"


class RuleNotFound(NotFound):
    code, title = "rule_not_found", "No rule with that id in the current rules"


class RulesVersionNotFound(NotFound):
    code, title = "rules_version_not_found", "No such version of the program's rules"


class RuleExists(Conflict):
    code, title = "rule_exists", "A rule with that id already exists"


class VersionConflict(Conflict):
    """Another change of the rules was written first from the same version (retry)."""

    code, title = "version_conflict", "The rules changed concurrently; read them and retry"


class VersionMismatch(ApiError):
    """`If-Match` (or an echoed version) names something other than the current version."""

    status, code, title = 412, "version_mismatch", "The resource changed since that version"


class CurrencyImmutable(ApiError):
    status, code, title = 422, "currency_immutable", "A program's currency cannot change"


class ReadOnlyField(ApiError):
    status, code, title = 422, "read_only_field", "A read-only field was given another value"


class RuleKindImmutable(ApiError):
    status, code, title = 422, "rule_kind_immutable", "A rule's kind and id cannot change"


class TiersNotConfigured(Conflict):
    """A tier endpoint in a program without tiers (`tier_program` unset): 409, the request is
    fine but the program's configuration does not allow it."""

    code, title = "tiers_not_configured", "This program has no tiers"


class UnknownTier(ApiError):
    status, code, title = 422, "unknown_tier", "The program has no tier with that code"


class MembershipTermInvalid(ApiError):
    status, code, title = 422, "membership_term_invalid", "The membership's term is not valid"
