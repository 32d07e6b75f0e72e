"""Request and response bodies of the rules API (the rules themselves are `app.domain.earning`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.domain.earning import MultiplierMode, Rule


class RuleSetView(BaseModel):
    """One version of the program's earning rules."""

    version: int = Field(description="The rule-set version; earns record the one they used.")
    multiplier_mode: MultiplierMode
    timezone: str
    rules: list[Rule]
    created_at: datetime = Field(description="When this version was written.")


class RuleView(BaseModel):
    """One rule of the current rules, and the version of the rules it belongs to.

    After a write, `rules_version` is the new version (for a delete: the first version
    without the rule, and `rule` is the rule that was removed)."""

    rules_version: int
    rule: Rule


PATCH_DESCRIPTION = """A JSON merge patch (RFC 7396) of the rule: the fields given replace
the rule's, `null` removes a field (back to its default), nested objects (`window`) merge.
`kind` and `id` cannot change. The patched rule is validated like a new one."""

PATCH_EXAMPLE = {"window": {"ends_on": "2026-12-31"}, "multiplier": "3"}
