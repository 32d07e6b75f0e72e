"""Changing a program's earning rules: every change writes a new version of the whole set.

History is never rewritten: version N stays what it was when earns were computed with it,
and a change inserts version N + 1 (see `app.rules.repository`). Writers take the program's
row lock, so concurrent changes apply one after the other; a change sent with `If-Match:
"N"` applies only while N is still the current version (otherwise 412 `version_mismatch`),
so of several clients editing version N exactly one wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app import errors
from app.ledger import idempotency
from app.ledger.fingerprint import fingerprint
from app.rules import repository
from app.rules.engine import BaseRateRule, MultiplierMode, Rule, RuleSet
from app.rules.schemas import RuleView

RULE: TypeAdapter[Rule] = TypeAdapter(Rule)
BASE_RULE_ID = "base"


def etag(version: int) -> str:
    """The entity tag of a version of the rules: `"7"`."""
    return f'"{version}"'


def if_match_holds(if_match: str | None, current: str) -> bool:
    """Whether an `If-Match` header value matches the entity tag `current` (RFC 9110: `*`
    or a list of tags, strong comparison, so weak tags never match). An unquoted tag is
    accepted too (`If-Match: 7`)."""
    if if_match is None:
        return True
    for part in if_match.split(","):
        tag = part.strip()
        if tag == "*" or tag == current or f'"{tag}"' == current:
            return True
    return False


def check_if_match(if_match: str | None, current: str) -> None:
    if not if_match_holds(if_match, current):
        raise errors.VersionMismatch(f"If-Match {if_match} does not match the current {current}")


def validation_failed(exc: ValidationError, prefix: Sequence[str] = ("body",)) -> errors.ApiError:
    """A pydantic error met inside a service, as the 422 the request validator would give."""
    details = [
        {
            "loc": [*prefix, *(str(part) for part in err["loc"])],
            "msg": str(err["msg"]),
            "type": str(err["type"]),
        }
        for err in exc.errors()
    ]
    first = details[0] if details else {"loc": list(prefix), "msg": "invalid"}
    where = ".".join(part for part in first["loc"] if part != "body") or "body"
    return errors.ValidationFailed(f"{where}: {first['msg']}", errors=details)


def next_version(
    base: RuleSet,
    *,
    rules: Sequence[Rule] | None = None,
    timezone: str | None = None,
    multiplier_mode: MultiplierMode | None = None,
) -> RuleSet:
    """Version `base.version + 1`: `base` with the given parts replaced (validated as a
    whole: unique ids, at most `MAX_RULES` rules)."""
    try:
        return RuleSet(
            version=base.version + 1,
            multiplier_mode=multiplier_mode or base.multiplier_mode,
            timezone=timezone or base.timezone,
            rules=tuple(base.rules if rules is None else rules),
        )
    except ValidationError as exc:
        raise validation_failed(exc) from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: objects merge key by key, `null` removes, anything else
    replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


@dataclass(frozen=True)
class Outcome:
    """What a change makes of the current rules: the new list, the rule to answer with, and
    the response status."""

    rules: tuple[Rule, ...]
    rule: Rule
    status: int = 200


Change = Callable[[RuleSet], Outcome]


def _find(rules: RuleSet, rule_id: str) -> int:
    for index, rule in enumerate(rules.rules):
        if rule.id == rule_id:
            return index
    raise errors.RuleNotFound(f"no rule {rule_id!r} in version {rules.version} of the rules")


def add_rule(rule: Rule) -> Change:
    def change(current: RuleSet) -> Outcome:
        if any(existing.id == rule.id for existing in current.rules):
            raise errors.RuleExists(f"rule {rule.id!r} exists; PATCH or DELETE it instead")
        return Outcome(rules=(*current.rules, rule), rule=rule, status=201)

    return change


def patch_rule(rule_id: str, patch: dict[str, Any]) -> Change:
    def change(current: RuleSet) -> Outcome:
        index = _find(current, rule_id)
        rule = current.rules[index]
        for name, value in ((n, patch[n]) for n in ("kind", "id") if n in patch):
            if value != getattr(rule, name):
                raise errors.RuleKindImmutable(
                    f"{name} of rule {rule_id!r} cannot change: delete the rule and add another"
                )
        merged = merge_patch(rule.model_dump(mode="json"), patch)
        try:
            # stdlib json: a patch may hold integers beyond 64 bits (refused as too large)
            patched = RULE.validate_json(json.dumps(merged))
        except ValidationError as exc:
            raise validation_failed(exc) from exc
        rules = list(current.rules)
        rules[index] = patched
        return Outcome(rules=tuple(rules), rule=patched)

    return change


def delete_rule(rule_id: str) -> Change:
    def change(current: RuleSet) -> Outcome:
        index = _find(current, rule_id)
        rules = list(current.rules)
        removed = rules.pop(index)
        return Outcome(rules=tuple(rules), rule=removed)

    return change


async def change_rules(
    session: AsyncSession,
    *,
    program_id: int,
    key: str,
    operation: str,
    request: Any,
    if_match: str | None,
    change: Change,
) -> idempotency.StoredResponse:
    """Apply `change` to the current rules as one new version (none if nothing changed),
    under the idempotency `key`; the response body is a `RuleView`."""
    print_ = fingerprint(operation, {"request": request, "if_match": if_match})
    replay = await idempotency.claim(session, program_id, key, print_)
    if replay is not None:
        return replay
    await repository.lock_program(session, program_id)
    stored = await repository.current(session, program_id)
    check_if_match(if_match, etag(stored.version))
    outcome = change(stored.rules)
    version = stored.version
    if outcome.rules != stored.rules.rules:
        new = next_version(stored.rules, rules=outcome.rules)
        await repository.insert(session, program_id, new)
        version = new.version
    body = RuleView(rules_version=version, rule=outcome.rule).model_dump(mode="json")
    return await idempotency.complete(session, program_id, key, outcome.status, body)


def with_base_rate(current: RuleSet, rate: Decimal) -> tuple[Rule, ...]:
    """`current`'s rules with the `base` base-rate rule at `rate` (its other fields kept), or
    with a `base` rule at `rate` appended when there is none (the last base rate: rules
    listed before it keep priority)."""
    rules = list(current.rules)
    for index, rule in enumerate(rules):
        if rule.id == BASE_RULE_ID:
            if not isinstance(rule, BaseRateRule):
                raise ValueError(f"rule {BASE_RULE_ID!r} is a {rule.kind} rule, not a base rate")
            rules[index] = BaseRateRule.model_validate(
                {**rule.model_dump(), "points_per_unit": rate}
            )
            return tuple(rules)
    return (*rules, BaseRateRule(id=BASE_RULE_ID, points_per_unit=rate))


async def set_base_rate(session: AsyncSession, *, program_id: int, rate: Decimal) -> RuleSet:
    """Write a new version of the rules with the `base` rule at `rate` (the CLI's
    `program set --base-rate`). ValueError if the rate is not a valid rule rate."""
    await repository.lock_program(session, program_id)
    stored = await repository.current(session, program_id)
    try:
        rules = with_base_rate(stored.rules, rate)
        if rules == stored.rules.rules:
            return stored.rules
        new = RuleSet(
            version=stored.version + 1,
            multiplier_mode=stored.rules.multiplier_mode,
            timezone=stored.rules.timezone,
            rules=rules,
        )
    except ValidationError as exc:
        raise ValueError(f"invalid base rate: {exc.errors()[0]['msg']}") from exc
    await repository.insert(session, program_id, new)
    return new
