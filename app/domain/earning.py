"""Earning rules and campaigns: how many points an order earns, and why.

A program's earning rules are one `RuleSet`: a version, a time zone, a `multiplier_mode` and a
list of rules, each of one `kind`. Every rule may carry conditions -- a validity `window`
(dates, weekdays, hours, read in the program's time zone), a `channels` filter (web, pos, app)
and a `stores` filter -- and a rule whose conditions the order does not meet does nothing.

`evaluate_earn` runs the rules that apply in five fixed steps:

1. **Exclusions.** Items matched by an `exclusion` rule leave the *earning base* (gift cards
   earn nothing). The earning base is the sum of the remaining items; every "minimum order
   amount" is compared with it. An order whose earning base is zero (empty, or only excluded
   items) earns nothing at all, bonuses included.
2. **Base rate.** The *first* `base_rate` rule in list order whose conditions and minimum are
   met gives points per whole currency unit; none means no base points (bonuses still apply).
   Put specific rates first: "orders of EUR 100 or more earn 2/EUR", then "1/EUR".
3. **Multipliers**, item by item: the item multipliers matching the item (by SKU or category),
   the campaign multipliers, and the member's tier multiplier (when it is not 1). In ``stack``
   mode they all multiply; in ``best`` mode only the highest applies (the first one in list
   order on a tie; the tier multiplier comes last). The result is rounded *once*, for the
   whole order, with the base rule's rounding (``floor`` or ``nearest``, half up) -- never per
   item or per step, so two items earn what one item of the same total earns.
4. **Bonuses** add fixed points after the multipliers (they are never multiplied): campaign
   bonuses, the first-purchase bonus, the birthday bonus, frequency-challenge bonuses.
5. **Caps** come last: the smallest `order_cap` that applies, then the smallest room left
   under a `daily_cap` (its maximum minus what the member already earned that local day).

Every step that changes the total leaves a line in the breakdown, so the lines sum exactly to
the total: the base line, one line per multiplier (what it added), one per bonus, and a
negative line per cap that cut something. A multiplier below 1 has a negative line too.

Rounding residue: the exact (decimal) base and multiplier lines are rounded down each, then the
points still missing to reach the rounded total are given one each to the lines with the
largest fractional parts, earlier lines first on a tie (the largest-remainder method).

In ``stack`` mode a multiplier's line is what it adds to the running product, in order: base,
then multipliers in list order, then the tier. So 10 points x2 x3 are lines 10, +10, +40.

Worked example (``stack``, 1 point per EUR rounded down, coffee x2, gift cards excluded,
a x2 weekend campaign, a Gold member at x1.5, first-purchase bonus 100, order cap 500):
a Saturday order of 2 coffees at EUR 4.50, a EUR 20 book and a EUR 50 gift card.
The gift card leaves the base: EUR 29.00, so 29 base points. Coffee: 9 -> x2 (+9) -> x2 (+18)
-> x1.5 (+18) = 54. Book: 20 -> x2 (+20) -> x1.5 (+20) = 60. The multiplied total is 114
(lines: base 29, coffee +9, weekend +38, tier +38), the bonus adds 100: 214 points, under the cap.
In ``best`` mode the coffee keeps only its best multiplier (x2, the coffee rule, first among
equals) and the book its own (the weekend x2): 18 + 40 = 58, plus 100 = 158.

Everything is exact decimal arithmetic; a guard traps any inexact operation. Nothing here
reads a clock or a database: the caller passes the order, the member's state and the rules.
"""

from __future__ import annotations

from calendar import isleap
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, Inexact, localcontext
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from app.domain.dates import local_datetime
from app.domain.types import (
    MAX_AMOUNT,
    Count,
    IsoDate,
    IsoDateTime,
    Label,
    MinorUnits,
    Multiplier,
    Points,
    Rate,
    RuleId,
    RuleModel,
    Text,
    TimeOfDay,
    Timezone,
)

Channel = Literal["web", "pos", "app"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MultiplierMode = Literal["stack", "best"]
Rounding = Literal["floor", "nearest"]

MAX_RULES = 500
MAX_ITEMS = 1000
_ROUNDING = {"floor": ROUND_FLOOR, "nearest": ROUND_HALF_UP}

Description = Annotated[Text, StringConstraints(max_length=500)]


def _unique(values: Iterable[object] | None, what: str) -> None:
    if values is None:
        return
    listed = list(values)
    if not listed:
        raise ValueError(f"{what}: give at least one, or leave it out to mean all")
    if len(set(listed)) != len(listed):
        raise ValueError(f"{what}: repeated values")


class Window(RuleModel):
    """When a rule is valid, read in the program's time zone. Every part is optional; all
    given parts must hold.

    - ``starts_on`` / ``ends_on``: local dates, both inclusive.
    - ``weekdays``: local days of the week (``mon`` .. ``sun``).
    - ``from_time`` / ``until_time``: local wall-clock time, from inclusive, until exclusive;
      either may be left out (from midnight / to the end of the day). A window across
      midnight is two rules (22:00-  and  -02:00). On the night clocks go back, a wall-clock
      hour happens twice and both count; on the night they go forward, the missing hour
      simply has no purchases.

    Worked example: ``{"weekdays": ["sat", "sun"], "starts_on": "2026-06-06",
    "ends_on": "2026-06-07"}`` in Europe/Paris holds from Saturday 6 June 00:00 (22:00Z on
    Friday) to Sunday 7 June 24:00 (22:00Z on Sunday).
    """

    starts_on: IsoDate | None = None
    ends_on: IsoDate | None = None
    weekdays: tuple[Weekday, ...] | None = None
    from_time: TimeOfDay | None = None
    until_time: TimeOfDay | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.starts_on and self.ends_on and self.starts_on > self.ends_on:
            raise ValueError("window: starts_on is after ends_on")
        if self.from_time and self.until_time and self.from_time >= self.until_time:
            raise ValueError("window: from_time must be before until_time")
        _unique(self.weekdays, "window.weekdays")
        return self

    def contains(self, local: datetime) -> bool:
        """Whether the local wall-clock time `local` is inside the window."""
        day = local.date()
        clock = local.time().replace(tzinfo=None, fold=0)
        return (
            (self.starts_on is None or day >= self.starts_on)
            and (self.ends_on is None or day <= self.ends_on)
            and (self.weekdays is None or WEEKDAYS[day.weekday()] in self.weekdays)
            and (self.from_time is None or clock >= self.from_time)
            and (self.until_time is None or clock < self.until_time)
        )


class OrderItem(RuleModel):
    """One order line: `unit_price` is what the customer paid per unit, after discounts, in
    minor units. Shipping and tax earn only if the caller sends them as items."""

    sku: Label
    category: Label | None = None
    quantity: int = Field(strict=True, ge=1, le=1_000_000)
    unit_price: MinorUnits

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.amount > MAX_AMOUNT:
            raise ValueError(f"quantity x unit_price exceeds {MAX_AMOUNT}")
        return self


class Order(RuleModel):
    """The purchase being rewarded. `occurred_at` is business time (when the sale happened),
    which decides windows, the birthday, the challenge month and the cap's day."""

    occurred_at: IsoDateTime
    channel: Channel
    store_id: Label | None = None
    currency_exponent: int = Field(strict=True, ge=0, le=4, description="EUR 2, JPY 0, BHD 3")
    items: tuple[OrderItem, ...] = Field(default=(), max_length=MAX_ITEMS)

    @property
    def amount(self) -> int:
        return sum(item.amount for item in self.items)

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.amount > MAX_AMOUNT:
            raise ValueError(f"the order total exceeds {MAX_AMOUNT}")
        return self


class _Rule(RuleModel):
    id: RuleId
    description: Description | None = None
    window: Window | None = None
    channels: tuple[Channel, ...] | None = None
    stores: tuple[Label, ...] | None = None

    @model_validator(mode="after")
    def _filters(self) -> Self:
        _unique(self.channels, "channels")
        _unique(self.stores, "stores")
        return self

    def applies(self, order: Order, local: datetime) -> bool:
        """Whether the order meets the rule's window, channel and store conditions."""
        return (
            (self.window is None or self.window.contains(local))
            and (self.channels is None or order.channel in self.channels)
            and (self.stores is None or order.store_id in self.stores)
        )


class _ItemRule(_Rule):
    categories: tuple[Label, ...] = ()
    skus: tuple[Label, ...] = ()

    @model_validator(mode="after")
    def _targets(self) -> Self:
        if not self.categories and not self.skus:
            raise ValueError("name at least one category or SKU")
        return self

    def matches(self, item: OrderItem) -> bool:
        return item.sku in self.skus or (
            item.category is not None and item.category in self.categories
        )


class _CampaignRule(_Rule):
    window: Window

    @model_validator(mode="after")
    def _dated(self) -> Self:
        if self.window.starts_on is None or self.window.ends_on is None:
            raise ValueError("a campaign needs window.starts_on and window.ends_on")
        return self


class BaseRateRule(_Rule):
    """Points per whole currency unit of the earning base, if it is at least
    `min_order_amount`. 1299 cents at 2.5/EUR: 32.475 -> 32 (floor) or 32 (nearest);
    at 2.6/EUR: 33.774 -> 33 (floor) or 34 (nearest)."""

    kind: Literal["base_rate"] = "base_rate"
    points_per_unit: Rate
    rounding: Rounding = "floor"
    min_order_amount: MinorUnits = 0


class ItemMultiplierRule(_ItemRule):
    """Multiplies the points of the items of the given categories or SKUs."""

    kind: Literal["item_multiplier"] = "item_multiplier"
    multiplier: Multiplier


class ExclusionRule(_ItemRule):
    """Items of the given categories or SKUs earn nothing and leave the earning base."""

    kind: Literal["exclusion"] = "exclusion"


class CampaignMultiplierRule(_CampaignRule):
    """Multiplies the points of every eligible item during a dated window."""

    kind: Literal["campaign_multiplier"] = "campaign_multiplier"
    multiplier: Multiplier


class CampaignBonusRule(_CampaignRule):
    """Fixed bonus points on each order of at least `min_order_amount` in a dated window."""

    kind: Literal["campaign_bonus"] = "campaign_bonus"
    points: Points
    min_order_amount: MinorUnits = 0


class FirstPurchaseBonusRule(_Rule):
    """Bonus on the member's first purchase (the caller says whether it is the first)."""

    kind: Literal["first_purchase_bonus"] = "first_purchase_bonus"
    points: Points
    min_order_amount: MinorUnits = 0


class BirthdayBonusRule(_Rule):
    """Bonus once per local calendar year, on an order in the member's birthday month
    (``on="month"``) or on the birthday itself (``on="day"``). A 29 February birthday is
    celebrated on 28 February in years without one."""

    kind: Literal["birthday_bonus"] = "birthday_bonus"
    points: Points
    on: Literal["month", "day"] = "month"
    min_order_amount: MinorUnits = 0


class FrequencyChallengeRule(_Rule):
    """Bonus once per local calendar month when the member makes `purchases` qualifying
    purchases (orders meeting the rule's conditions and minimum) in that month."""

    kind: Literal["frequency_challenge"] = "frequency_challenge"
    purchases: int = Field(strict=True, ge=1, le=10_000)
    points: Points
    min_order_amount: MinorUnits = 0


class OrderCapRule(_Rule):
    """At most `max_points` per order, bonuses included."""

    kind: Literal["order_cap"] = "order_cap"
    max_points: Points


class DailyCapRule(_Rule):
    """At most `max_points` per member per local day, across all of that day's orders."""

    kind: Literal["daily_cap"] = "daily_cap"
    max_points: Points


Rule = Annotated[
    BaseRateRule
    | ItemMultiplierRule
    | ExclusionRule
    | CampaignMultiplierRule
    | CampaignBonusRule
    | FirstPurchaseBonusRule
    | BirthdayBonusRule
    | FrequencyChallengeRule
    | OrderCapRule
    | DailyCapRule,
    Field(discriminator="kind"),
]
RuleKind = Literal[
    "base_rate",
    "item_multiplier",
    "exclusion",
    "campaign_multiplier",
    "campaign_bonus",
    "first_purchase_bonus",
    "birthday_bonus",
    "frequency_challenge",
    "order_cap",
    "daily_cap",
]
LineKind = RuleKind | Literal["tier_multiplier"]


class RuleSet(RuleModel):
    """A program's earning rules, versioned: each change is a new version, and every result
    names the version that produced it."""

    version: int = Field(strict=True, ge=1, le=MAX_AMOUNT)
    multiplier_mode: MultiplierMode = "stack"
    timezone: Timezone
    rules: tuple[Rule, ...] = Field(default=(), max_length=MAX_RULES)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self


class ChallengeState(RuleModel):
    """A member's progress in one frequency challenge for the order's local month."""

    purchases: Count = Field(0, description="qualifying purchases already counted this month")
    awarded: bool = False


class MemberContext(RuleModel):
    """What the rules need to know about the member; the caller reads it from its projections.

    - `tier_multiplier`: the current tier's earn multiplier (1 when none).
    - `is_first_purchase`: no earlier purchase of this member has earned.
    - `birthday` (the year is ignored) and `last_birthday_bonus_on`: the local date of the
      birthday bonus given in the order's local calendar year, if any. The bonus is due unless
      this date is in that year (for a backdated order, pass that year's bonus, not the latest).
    - `challenges`: per frequency-challenge rule id, the state for the order's local month
      (absent means no purchase yet and not awarded).
    - `points_earned_today`: points already earned on the order's local day (for daily caps).
    """

    tier_multiplier: Multiplier = Decimal(1)
    is_first_purchase: bool = False
    birthday: IsoDate | None = None
    last_birthday_bonus_on: IsoDate | None = None
    challenges: dict[RuleId, ChallengeState] = Field(default_factory=dict)
    points_earned_today: Points = 0


class BreakdownLine(RuleModel):
    """One step of the calculation: which rule (None for the tier multiplier), and what it
    added (negative for a cap or a multiplier below 1)."""

    rule_id: RuleId | None
    kind: LineKind
    points: int


class EarnResult(RuleModel):
    """Points earned by an order.

    - `total` equals the sum of the `breakdown` lines, always.
    - `earning_base`: the order amount that earned (minor units, exclusions removed).
    - `awarded_once`: ids of the first-purchase, birthday and challenge rules that fired; the
      caller records them so they do not fire again (they count as given even if a cap ate
      their points).
    - `challenge_purchases`: ids of the frequency challenges this order counts towards; the
      caller adds one to the member's count for the order's local month.
    """

    total: Points
    breakdown: tuple[BreakdownLine, ...]
    ruleset_version: int
    earning_base: MinorUnits
    awarded_once: tuple[RuleId, ...] = ()
    challenge_purchases: tuple[RuleId, ...] = ()


class EarnOverflow(ValueError):
    """The rules would award more points than an amount may hold (2^53 - 1)."""


@dataclass
class _Line:
    position: int  # rule-list index; the tier multiplier comes after every rule
    rule_id: str | None
    kind: LineKind
    exact: Decimal = Decimal(0)


def apportion(exact: list[Decimal], total: int) -> list[int]:
    """Whole numbers, one per exact value, that sum to `total` (largest-remainder method).

    Each value is rounded down; the points still missing go one each to the values with the
    largest fractional parts, the earlier value first on a tie. `total` must lie between the
    sum of the rounded-down values and that sum plus the number of values with a fraction.

    Worked example: 29.40, 9.45 and 0.90 (exactly 39.75), rounded half up to 40. The floors
    are 29, 9 and 0 (38), so two points are missing; the two largest fractions are .90 and
    .45, so the result is 29, 10 and 1.
    """
    floors = [int(value.to_integral_value(rounding=ROUND_FLOOR)) for value in exact]
    missing = total - sum(floors)
    with_fraction = [index for index, value in enumerate(exact) if value != floors[index]]
    if not 0 <= missing <= len(with_fraction):
        raise ValueError("the total cannot be apportioned over these values")
    by_fraction = sorted(with_fraction, key=lambda index: (floors[index] - exact[index], index))
    for index in by_fraction[:missing]:
        floors[index] += 1
    return floors


def _is_birthday(birthday: date, today: date, on: Literal["month", "day"]) -> bool:
    if on == "month":
        return birthday.month == today.month
    month, day = birthday.month, birthday.day
    if (month, day) == (2, 29) and not isleap(today.year):
        day = 28
    return (today.month, today.day) == (month, day)


def evaluate_earn(ruleset: RuleSet, order: Order, member: MemberContext) -> EarnResult:
    """The points `order` earns under `ruleset` for a member in the state `member`.

    Pure: the same inputs always give the same result. See the module docstring for the five
    steps (exclusions, base rate, multipliers, bonuses, caps) and how the breakdown is built.
    Raises `EarnOverflow` if a line or the total would exceed 2^53 - 1 points.
    """
    local = local_datetime(order.occurred_at, ruleset.timezone)
    today = local.date()
    live = [
        (position, rule)
        for position, rule in enumerate(ruleset.rules)
        if rule.applies(order, local)
    ]
    exclusions = [rule for _, rule in live if isinstance(rule, ExclusionRule)]
    eligible = [item for item in order.items if not any(r.matches(item) for r in exclusions)]
    base_amount = sum(item.amount for item in eligible)

    def result(breakdown: list[BreakdownLine], once: list[str], counted: list[str]) -> EarnResult:
        total = sum(line.points for line in breakdown)
        if total > MAX_AMOUNT or any(abs(line.points) > MAX_AMOUNT for line in breakdown):
            raise EarnOverflow(f"the order would earn more than {MAX_AMOUNT} points")
        return EarnResult(
            total=total,
            breakdown=tuple(breakdown),
            ruleset_version=ruleset.version,
            earning_base=base_amount,
            awarded_once=tuple(once),
            challenge_purchases=tuple(counted),
        )

    if base_amount == 0:
        return result([], [], [])

    breakdown = _multiplied_lines(ruleset, order, member, live, eligible, base_amount)
    once: list[str] = []
    counted: list[str] = []
    for _, rule in live:
        points: int | None = None
        if isinstance(rule, CampaignBonusRule):
            if base_amount >= rule.min_order_amount:
                points = rule.points
        elif isinstance(rule, FirstPurchaseBonusRule):
            if member.is_first_purchase and base_amount >= rule.min_order_amount:
                points = rule.points
                once.append(rule.id)
        elif isinstance(rule, BirthdayBonusRule):
            given = member.last_birthday_bonus_on
            if (
                member.birthday is not None
                and _is_birthday(member.birthday, today, rule.on)
                and (given is None or given.year != today.year)
                and base_amount >= rule.min_order_amount
            ):
                points = rule.points
                once.append(rule.id)
        elif isinstance(rule, FrequencyChallengeRule) and base_amount >= rule.min_order_amount:
            state = member.challenges.get(rule.id, ChallengeState())
            counted.append(rule.id)
            if not state.awarded and state.purchases + 1 >= rule.purchases:
                points = rule.points
                once.append(rule.id)
        if points is not None:
            breakdown.append(BreakdownLine(rule_id=rule.id, kind=rule.kind, points=points))

    running = sum(line.points for line in breakdown)
    order_caps = [rule for _, rule in live if isinstance(rule, OrderCapRule)]
    if order_caps:
        cap = min(order_caps, key=lambda rule: rule.max_points)
        if running > cap.max_points:
            cut = running - cap.max_points
            breakdown.append(BreakdownLine(rule_id=cap.id, kind=cap.kind, points=-cut))
            running -= cut
    daily_caps = [rule for _, rule in live if isinstance(rule, DailyCapRule)]
    if daily_caps:
        daily = min(daily_caps, key=lambda rule: rule.max_points)
        room = max(0, daily.max_points - member.points_earned_today)
        if running > room:
            cut = running - room
            breakdown.append(BreakdownLine(rule_id=daily.id, kind=daily.kind, points=-cut))
    return result(breakdown, once, counted)


def _multiplied_lines(
    ruleset: RuleSet,
    order: Order,
    member: MemberContext,
    live: list[tuple[int, Rule]],
    eligible: list[OrderItem],
    base_amount: int,
) -> list[BreakdownLine]:
    """Steps 2 and 3: the base line and one line per multiplier that changed something,
    rounded once for the whole order and apportioned so that the lines sum to that total."""
    base = next(
        (
            rule
            for _, rule in live
            if isinstance(rule, BaseRateRule) and base_amount >= rule.min_order_amount
        ),
        None,
    )
    if base is None:
        return []
    lines: dict[int, _Line] = {-1: _Line(-1, base.id, "base_rate")}
    tier_position = len(ruleset.rules)
    with localcontext() as context:
        # Exact arithmetic: sums and products of finite decimals need no rounding if the
        # precision is large enough, and the trap proves that none happened.
        context.prec = 100_000
        context.traps[Inexact] = True
        for item in eligible:
            if item.amount == 0:
                continue
            points = Decimal(item.amount).scaleb(-order.currency_exponent) * base.points_per_unit
            factors: list[tuple[int, str | None, LineKind, Decimal]] = []
            for position, rule in live:
                if isinstance(rule, CampaignMultiplierRule) or (
                    isinstance(rule, ItemMultiplierRule) and rule.matches(item)
                ):
                    factors.append((position, rule.id, rule.kind, rule.multiplier))
            if member.tier_multiplier != 1:
                factors.append((tier_position, None, "tier_multiplier", member.tier_multiplier))
            if ruleset.multiplier_mode == "best" and factors:
                factors = [max(factors, key=lambda factor: factor[3])]
            lines[-1].exact += points
            for position, rule_id, kind, multiplier in factors:
                line = lines.setdefault(position, _Line(position, rule_id, kind))
                line.exact += points * (multiplier - 1)
                points *= multiplier
        ordered = [lines[position] for position in sorted(lines)]
        exact_total = sum((line.exact for line in ordered), Decimal(0))
        rounded = int(exact_total.to_integral_value(rounding=_ROUNDING[base.rounding]))
        shares = apportion([line.exact for line in ordered], rounded)
    return [
        BreakdownLine(rule_id=line.rule_id, kind=line.kind, points=share)
        for line, share in zip(ordered, shares, strict=True)
    ]
