"""Changing a program's earning rules: every change writes a new version of the whole set.

History is never rewritten: version N stays what it was when earns were computed with it,
and a change inserts version N + 1 (see `app.programs.rule_sets`). Writers take the program's
row lock, so concurrent changes apply one after the other; a change sent with `If-Match:
"N"` applies only while N is still the current version (otherwise 412 `version_mismatch`),
so of several clients editing version N exactly one wins.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app import errors
from app.db import Transaction
from app.domain.earning import Rule, RuleSet
from app.ledger import idempotency
from app.ledger.idempotency import fingerprint
from app.programs import repository as programs
from app.programs import rule_sets as repository
from app.programs.rule_sets import check_if_match, etag, next_version, validation_failed
from app.rules.schemas import RuleView

RULE: TypeAdapter[Rule] = TypeAdapter(Rule)


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
    session: Transaction,
    *,
    program_id: int,
    key: str,
    operation: str,
    request: Any,
    if_match: str | None,
    change: Change,
) -> idempotency.Answer:
    """Apply `change` to the current rules as one new version (none if nothing changed),
    under the idempotency `key`; the response body is a `RuleView`."""
    print_ = fingerprint(operation, {"request": request, "if_match": if_match})
    replay = await idempotency.claim(session, program_id, key, print_)
    if replay is not None:
        return replay
    await programs.lock_program(session, program_id)
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
