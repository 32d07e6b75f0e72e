"""Errors as RFC 9457 problem details.

Every error the service returns is an `ApiError` subclass (or is translated into one), carrying
its HTTP status and a stable machine-readable `code`; one handler (app.api.problems) renders
them all as `application/problem+json`. Clients switch on `code`, never on `title` or `detail`.

A refusal kept as the answer of a write (insufficient_points, hold_expired...) is stored by its
`code` and `detail`; `by_code` finds its class again to answer a replay the same way. This
module knows no HTTP framework: the ledger raises these too.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

PROBLEM_TYPE_BASE = "https://points-ledger.dev/problems/"


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

    _by_code: ClassVar[dict[str, type[ApiError]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ApiError._by_code.setdefault(cls.code, cls)

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

    @classmethod
    def named(cls, external_id: str) -> MemberNotFound:
        return cls(f"no member {external_id!r} in this program")


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
    """A referral link the abuse controls refuse (app.domain.referrals.check_link)."""

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


def by_code(code: str) -> type[ApiError]:
    """The error class of a stable `code` (a kept refusal), or the generic 500 for an unknown
    one (a code the service no longer has)."""
    return ApiError._by_code.get(code, ApiError)
