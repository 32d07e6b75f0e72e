"""Program rules: versioned earning rules, expiry lots, the qualifying asset and tiers, referrals.

  * programs gain a time zone, a multiplier mode and JSON policies for expiry, tiers and
    referrals; `rule_sets` keeps every version of a program's earning rules (append-only), and
    a new program gets version 1 (its base rate) from a trigger;
  * `rule_awards`: once-only bonuses and challenge counters, "once" enforced by the primary key;
  * `lots` / `lot_movements`: every credit of a member's available points is a lot with its own
    expiry, and every debit takes from lots (FIFO by expiry) -- kept by a trigger on entries, so
    no posting path can forget it; `member_maintain` posts `expire` transactions for due lots;
  * the `qualifying` asset: earns credit the program's tier metric alongside points, refunds take
    it back in proportion, reversals reverse it; `member_tiers` and `memberships` hold the tier
    projection evaluated in Python;
  * referral codes derived from member ids, and `referrals`.

Revision ID: 0006_program_rules
Revises: 0005_hot_path
Create Date: 2026-11-23
"""

from sqlscript import function_definition, revision_module, run_script

revision = "0006_program_rules"
down_revision = "0005_hot_path"
branch_labels = None
depends_on = None

# New SQLSTATEs: PL004 lots out of step with the available balance.

SCHEMA = """
ALTER TABLE programs
    ADD COLUMN timezone text NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64),
    ADD COLUMN multiplier_mode text NOT NULL DEFAULT 'stack'
        CHECK (multiplier_mode IN ('stack', 'best')),
    ADD COLUMN expiry_policy jsonb NOT NULL DEFAULT '{"kind": "never"}'::jsonb
        CHECK (jsonb_typeof(expiry_policy) = 'object' AND expiry_policy ? 'kind'),
    ADD COLUMN tier_program jsonb CHECK (jsonb_typeof(tier_program) = 'object'),
    ADD COLUMN referral_policy jsonb CHECK (jsonb_typeof(referral_policy) = 'object');

-- Every version of a program's earning rules (app.rules.engine.RuleSet as JSON). A change
-- inserts version = previous + 1; the primary key makes concurrent writers collide.
CREATE TABLE rule_sets (
    program_id bigint NOT NULL REFERENCES programs (id),
    version    integer NOT NULL CHECK (version >= 1),
    definition jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, version)
);
CREATE TRIGGER rule_sets_append_only BEFORE UPDATE OR DELETE ON rule_sets
    FOR EACH ROW EXECUTE FUNCTION forbid_mutation();

-- Once-only bonuses (first purchase: period 'once'; birthday: the local year) and frequency
-- challenges (period: the local month, with the purchases counted so far).
CREATE TABLE rule_awards (
    program_id     bigint NOT NULL,
    member_id      bigint NOT NULL,
    rule_id        text NOT NULL CHECK (length(rule_id) BETWEEN 1 AND 64),
    period         text NOT NULL CHECK (length(period) BETWEEN 1 AND 16),
    purchases      integer NOT NULL DEFAULT 0 CHECK (purchases >= 0),
    awarded_on     date,
    transaction_id bigint,
    PRIMARY KEY (member_id, rule_id, period),
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id)
);

-- A lot: the points of one credit to a member's available account, with their own expiry.
-- The sum of a member's `remaining` is the member's available balance (checked by verify).
CREATE TABLE lots (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id     bigint NOT NULL,
    member_id      bigint NOT NULL,
    transaction_id bigint,  -- the credit that made it; NULL for the opening lot of 0006
    earned_at      timestamptz NOT NULL,
    expires_at     timestamptz,  -- NULL: no date of its own (never, or the inactivity policy)
    points         bigint NOT NULL CHECK (points > 0),
    remaining      bigint NOT NULL CHECK (remaining BETWEEN 0 AND points),
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id)
);
CREATE INDEX lots_open_by_member ON lots (member_id, expires_at, earned_at, id)
    WHERE remaining > 0;
CREATE INDEX lots_due ON lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;
CREATE INDEX lots_by_transaction ON lots (transaction_id);

-- What a transaction took from (negative) or gave back to (positive) a lot. Append-only.
CREATE TABLE lot_movements (
    transaction_id bigint NOT NULL,
    lot_id         bigint NOT NULL REFERENCES lots (id),
    points         bigint NOT NULL CHECK (points <> 0)
);
CREATE INDEX lot_movements_by_transaction ON lot_movements (transaction_id);
CREATE INDEX lot_movements_by_lot ON lot_movements (lot_id);
CREATE TRIGGER lot_movements_append_only BEFORE UPDATE OR DELETE ON lot_movements
    FOR EACH ROW EXECUTE FUNCTION forbid_mutation();

CREATE INDEX transactions_by_hold ON transactions (hold_id) WHERE hold_id IS NOT NULL;
-- a member's qualifying credit (the tier evaluation reads it on every earn of a tier program)
CREATE INDEX entries_qualifying_by_member ON entries (member_id, transaction_id)
    WHERE asset = 'qualifying';
CREATE INDEX transactions_member_activity ON transactions (member_id, occurred_at)
    WHERE kind IN ('earn', 'redeem');
-- A lot expires once: its expire posting carries the key 'expire:<lot id>'.
CREATE UNIQUE INDEX transactions_expire_once ON transactions (program_id, idempotency_key)
    WHERE kind = 'expire';

ALTER TABLE orders
    ADD COLUMN earned_qualifying bigint NOT NULL DEFAULT 0 CHECK (earned_qualifying >= 0),
    ADD COLUMN qualifying_taken_back bigint NOT NULL DEFAULT 0
        CHECK (qualifying_taken_back >= 0),
    ADD CONSTRAINT qualifying_taken_within_earned
        CHECK (qualifying_taken_back <= earned_qualifying);

-- Tier status, a projection evaluated by app.rules.tiers (TierStatus as JSON).
CREATE TABLE member_tiers (
    member_id    bigint PRIMARY KEY,
    program_id   bigint NOT NULL,
    tier         text NOT NULL,
    status       jsonb NOT NULL CHECK (jsonb_typeof(status) = 'object'),
    evaluated_on date NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id)
);

-- Paid memberships: a tier for a fixed term regardless of qualification.
CREATE TABLE memberships (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id  bigint NOT NULL,
    member_id   bigint NOT NULL,
    tier        text NOT NULL CHECK (length(tier) BETWEEN 1 AND 64),
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    payment_ref text CHECK (length(payment_ref) BETWEEN 1 AND 128),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on),
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id)
);
CREATE INDEX memberships_by_member ON memberships (member_id, starts_on);

-- A member's referral code, from its id: (id + k) x a mod 17^8 is a bijection on [0, 17^8)
-- (a is prime to 17), written in base 17 over the unambiguous alphabet of app.rules.referrals.
-- Unique without a retry loop, and nothing to store but the generated column.
CREATE FUNCTION referral_code_for(p_id bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    alphabet constant text := '3479CFGHKMNPRTWXY';
    n numeric := ((p_id::numeric + 1234567) * 4294967291) % 6975757441;
    code text := '';
BEGIN
    FOR i IN 1..8 LOOP
        code := substr(alphabet, (n % 17)::int + 1, 1) || code;
        n := floor(n / 17);
    END LOOP;
    RETURN code;
END $$;

ALTER TABLE members
    ADD COLUMN referral_code text GENERATED ALWAYS AS (referral_code_for(id)) STORED;
CREATE UNIQUE INDEX members_referral_code ON members (referral_code);

CREATE TABLE referrals (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id              bigint NOT NULL,
    referrer_id             bigint NOT NULL,
    referee_id              bigint NOT NULL UNIQUE,  -- one referrer per member
    status                  text NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'rewarded', 'cap_reached',
                                                  'clawed_back')),
    created_at              timestamptz NOT NULL DEFAULT now(),
    order_id                text,
    order_amount            bigint,
    order_occurred_at       timestamptz,
    rewarded_at             timestamptz,
    reward_transaction_id   bigint,
    clawback_transaction_id bigint,
    CHECK (referrer_id <> referee_id),
    FOREIGN KEY (referrer_id, program_id) REFERENCES members (id, program_id),
    FOREIGN KEY (referee_id, program_id) REFERENCES members (id, program_id)
);
CREATE INDEX referrals_rewarded_by_referrer ON referrals (referrer_id, rewarded_at)
    WHERE status IN ('rewarded', 'clawed_back');
CREATE INDEX referrals_by_referrer ON referrals (referrer_id, id);
CREATE INDEX referrals_by_order ON referrals (program_id, order_id) WHERE order_id IS NOT NULL;
"""

FUNCTIONS = """
-- The first instant of local day p_day in p_timezone, like app.rules.dates.start_of_day
-- (zoneinfo fold=0). PostgreSQL reads an ambiguous local midnight (clocks going back from
-- 01:00 to 00:00, as in Cuba) as the later of its two instants; the day begins at the earlier
-- one, which has the offset in effect the day before. A missing midnight (clocks jumping
-- from 24:00 to 01:00, as in Chile) is read with the offset before the change by both.
CREATE FUNCTION local_day_start(p_day date, p_timezone text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_local timestamp := p_day::timestamp;
    v_at timestamptz := p_day::timestamp AT TIME ZONE p_timezone;
    v_before timestamptz := v_at - interval '1 day';
    v_earlier timestamptz := (v_local - ((v_before AT TIME ZONE p_timezone)
                                         - (v_before AT TIME ZONE 'UTC'))) AT TIME ZONE 'UTC';
BEGIN
    IF v_earlier < v_at AND v_earlier AT TIME ZONE p_timezone = v_local THEN
        RETURN v_earlier;
    END IF;
    RETURN v_at;
END $$;

-- The instant a lot earned at p_earned_at lapses under p_policy (NULL: no date of its own):
-- the start of the local day after its last valid day. Mirrors app.rules.expiry.lot_expires_at
-- (tests compare the two); dates are local dates in p_timezone.
CREATE FUNCTION lot_expires_at(p_policy jsonb, p_timezone text, p_earned_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    earned_on date := (p_earned_at AT TIME ZONE p_timezone)::date;
    last_day date;
    first_day date;
BEGIN
    CASE p_policy ->> 'kind'
    WHEN 'lifetime' THEN
        last_day := (earned_on + make_interval(months => (p_policy ->> 'months')::int))::date;
        IF p_policy ->> 'round_to' = 'month_end' THEN
            last_day := (date_trunc('month', last_day) + interval '1 month - 1 day')::date;
        ELSIF p_policy ->> 'round_to' = 'quarter_end' THEN
            last_day := (date_trunc('quarter', last_day) + interval '3 months - 1 day')::date;
        END IF;
    WHEN 'fixed_date' THEN
        first_day := make_date(extract(year FROM earned_on)::int, (p_policy ->> 'month')::int,
                               (p_policy ->> 'day')::int);
        IF first_day < earned_on THEN
            first_day := (first_day + interval '1 year')::date;
        END IF;
        last_day := (first_day + make_interval(
            years => coalesce((p_policy ->> 'years_after')::int, 1)))::date;
    ELSE
        RETURN NULL;
    END CASE;
    RETURN local_day_start(last_day + 1, p_timezone);
END $$;

-- Under the inactivity policy, the instant all of a member's points lapse: the start of the
-- local day after (local date of the last earn or redemption + N months). NULL otherwise.
CREATE FUNCTION member_inactivity_deadline(p_program_id bigint, p_member_id bigint)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    prog record;
    last_activity timestamptz;
BEGIN
    SELECT expiry_policy, timezone INTO prog FROM programs WHERE id = p_program_id;
    IF prog.expiry_policy ->> 'kind' IS DISTINCT FROM 'inactivity' THEN
        RETURN NULL;
    END IF;
    SELECT max(occurred_at) INTO last_activity FROM transactions
     WHERE member_id = p_member_id AND kind IN ('earn', 'redeem');
    IF last_activity IS NULL THEN
        SELECT created_at INTO last_activity FROM members WHERE id = p_member_id;
    END IF;
    RETURN local_day_start(((last_activity AT TIME ZONE prog.timezone)::date
            + make_interval(months => (prog.expiry_policy ->> 'months')::int)
            + interval '1 day')::date, prog.timezone);
END $$;

-- Is there expiry work for this member: a due lot, or points past the inactivity deadline?
CREATE FUNCTION member_expiry_due(p_program_id bigint, p_member_id bigint)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM lots WHERE member_id = p_member_id AND remaining > 0
                      AND expires_at <= now())
        OR (EXISTS (SELECT 1 FROM programs WHERE id = p_program_id
                       AND expiry_policy ->> 'kind' = 'inactivity')
            AND EXISTS (SELECT 1 FROM lots WHERE member_id = p_member_id AND remaining > 0)
            AND member_inactivity_deadline(p_program_id, p_member_id) <= now());
END $$;

-- Keep lots in step with every entry on a member's points `available` account.
--   credit: a hold's capture/release or a reversal gives back what the hold or the reversed
--           transaction took (latest-expiring lots first); anything else is a new lot, dated by
--           the program's expiry policy from its earn time (a settle of pending points keeps
--           the order's earn time).
--   debit:  takes from lots FIFO (expiry, then earn time, then id). An expire takes its own
--           lot; a refund, cancellation or reversal takes its order's (or transaction's) lots
--           first; spending (redeem, hold, transfer, adjust) may only take unexpired lots.
CREATE FUNCTION entries_keep_lots() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    txn transactions;
    want bigint;
    moved bigint;
    lot record;
    v_earned_at timestamptz;
    spending boolean;
    own_ids bigint[];
    prog record;
BEGIN
    PERFORM 1 FROM accounts WHERE id = NEW.account_id AND kind = 'available';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT * INTO txn FROM transactions WHERE id = NEW.transaction_id;

    IF NEW.amount > 0 THEN
        want := NEW.amount;
        IF txn.hold_id IS NOT NULL OR txn.reverses_id IS NOT NULL THEN
            FOR lot IN
                SELECT m.lot_id, -sum(m.points) AS taken
                  FROM lot_movements m
                  JOIN lots l ON l.id = m.lot_id
                 WHERE m.transaction_id IN (
                           SELECT t.id FROM transactions t
                            WHERE t.hold_id = txn.hold_id AND t.id <> txn.id
                           UNION ALL
                           SELECT txn.reverses_id WHERE txn.reverses_id IS NOT NULL)
                   AND l.member_id = NEW.member_id
                 GROUP BY m.lot_id, l.expires_at, l.earned_at
                HAVING sum(m.points) < 0
                 ORDER BY l.expires_at DESC NULLS FIRST, l.earned_at DESC, m.lot_id DESC
            LOOP
                EXIT WHEN want = 0;
                moved := least(want, lot.taken);
                UPDATE lots SET remaining = remaining + moved WHERE id = lot.lot_id;
                INSERT INTO lot_movements (transaction_id, lot_id, points)
                VALUES (NEW.transaction_id, lot.lot_id, moved);
                want := want - moved;
            END LOOP;
        END IF;
        IF want > 0 THEN
            v_earned_at := txn.occurred_at;
            IF txn.kind = 'settle' AND txn.order_id IS NOT NULL THEN
                SELECT t.occurred_at INTO v_earned_at
                  FROM orders o JOIN transactions t ON t.id = o.earn_transaction_id
                 WHERE o.program_id = txn.program_id AND o.order_id = txn.order_id;
                v_earned_at := coalesce(v_earned_at, txn.occurred_at);
            END IF;
            SELECT expiry_policy, timezone INTO prog FROM programs WHERE id = NEW.program_id;
            INSERT INTO lots (program_id, member_id, transaction_id, earned_at, expires_at,
                              points, remaining)
            VALUES (NEW.program_id, NEW.member_id, NEW.transaction_id, v_earned_at,
                    lot_expires_at(prog.expiry_policy, prog.timezone, v_earned_at), want, want);
        END IF;
        RETURN NULL;
    END IF;

    want := -NEW.amount;
    spending := txn.kind IN ('redeem', 'hold', 'transfer', 'adjust');
    IF txn.reverses_id IS NOT NULL THEN
        own_ids := ARRAY[txn.reverses_id];
    ELSIF txn.order_id IS NOT NULL AND txn.kind IN ('refund', 'cancel', 'referral') THEN
        SELECT array_agg(t.id) INTO own_ids FROM transactions t
         WHERE t.program_id = txn.program_id AND t.order_id = txn.order_id
           AND t.kind IN ('earn', 'settle') AND t.member_id = NEW.member_id;
    END IF;
    FOR lot IN
        SELECT l.id, l.remaining FROM lots l
         WHERE l.member_id = NEW.member_id AND l.remaining > 0
           AND (NOT spending OR l.expires_at IS NULL OR l.expires_at > now())
           AND (txn.kind <> 'expire' OR NOT txn.metadata ? 'lot_id'
                OR l.id = (txn.metadata ->> 'lot_id')::bigint)
         ORDER BY coalesce(l.transaction_id = ANY (own_ids), false) DESC,
                  l.expires_at NULLS LAST, l.earned_at, l.id
           FOR UPDATE
    LOOP
        EXIT WHEN want = 0;
        moved := least(want, lot.remaining);
        UPDATE lots SET remaining = remaining - moved WHERE id = lot.id;
        INSERT INTO lot_movements (transaction_id, lot_id, points)
        VALUES (NEW.transaction_id, lot.id, -moved);
        want := want - moved;
    END LOOP;
    IF want > 0 AND spending THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL100',
            MESSAGE = 'insufficient_points',
            DETAIL = format('%s of the points needed have expired', want);
    ELSIF want > 0 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL004',
            MESSAGE = format('lots of member %s are %s points short of the available balance',
                             NEW.member_id, want);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER entries_keep_lots AFTER INSERT ON entries
    FOR EACH ROW WHEN (NEW.member_id IS NOT NULL AND NEW.asset = 'points')
    EXECUTE FUNCTION entries_keep_lots();

-- The start of an earn whose rules depend on the member, in one round trip: the member (enrolled
-- if new), its advisory lock for the rest of the transaction, and whether the idempotency key
-- is already used (then the posting function replays it and nothing is evaluated).
CREATE FUNCTION earn_member_begin(
    p_program_id bigint, p_external_id text, p_idempotency_key text,
    OUT o_member_id bigint, OUT o_key_used boolean)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT id INTO o_member_id FROM members
     WHERE program_id = p_program_id AND external_id = p_external_id;
    IF o_member_id IS NULL THEN
        SELECT e.o_member_id INTO o_member_id
          FROM member_enroll(p_program_id, p_external_id, NULL, NULL) AS e;
    END IF;
    PERFORM lock_members(ARRAY[o_member_id]);
    o_key_used := EXISTS (SELECT 1 FROM idempotency_keys
                           WHERE program_id = p_program_id AND key = p_idempotency_key);
END $$;

-- A new program starts with rule set version 1 (its base rate) and a qualifying issuance
-- account, whichever code path creates it.
CREATE FUNCTION programs_initialize() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rule_sets (program_id, version, definition)
    VALUES (NEW.id, 1, jsonb_build_object(
        'version', 1, 'multiplier_mode', NEW.multiplier_mode, 'timezone', NEW.timezone,
        'rules', jsonb_build_array(jsonb_build_object(
            'id', 'base', 'kind', 'base_rate', 'points_per_unit', NEW.base_rate::text))));
    INSERT INTO accounts (program_id, asset, kind) VALUES (NEW.id, 'qualifying', 'issuance');
    RETURN NULL;
END $$;
CREATE TRIGGER programs_initialize AFTER INSERT ON programs
    FOR EACH ROW EXECUTE FUNCTION programs_initialize();

CREATE OR REPLACE FUNCTION member_enroll(
    p_program_id bigint, p_external_id text, p_birthday date, p_attributes jsonb,
    OUT o_member_id bigint, OUT o_created boolean)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT id INTO o_member_id FROM members
     WHERE program_id = p_program_id AND external_id = p_external_id;
    IF FOUND THEN
        o_created := false;
        RETURN;
    END IF;
    INSERT INTO members (program_id, external_id, birthday, attributes)
    VALUES (p_program_id, p_external_id, p_birthday, coalesce(p_attributes, '{}'::jsonb))
    ON CONFLICT (program_id, external_id) DO NOTHING
    RETURNING id INTO o_member_id;
    IF o_member_id IS NULL THEN
        SELECT id INTO o_member_id FROM members
         WHERE program_id = p_program_id AND external_id = p_external_id;
        o_created := false;
        RETURN;
    END IF;
    INSERT INTO accounts (program_id, member_id, asset, kind, balance)
    SELECT p_program_id, o_member_id, a.asset, a.kind, 0
      FROM (VALUES ('points', 'available'), ('points', 'pending'), ('points', 'held'),
                   ('points', 'debt'), ('qualifying', 'available')) AS a (asset, kind);
    o_created := true;
END $$;

-- Lazy maintenance of one member: settle due pending lots, release expired holds, then expire
-- due lots (one `expire` posting per lot, member available -> breakage) and, under the
-- inactivity policy, everything once the deadline has passed.
CREATE OR REPLACE FUNCTION member_maintain(p_program_id bigint, p_member_id bigint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    lot record;
    hold record;
    legs record;
    acct record;
    deadline timestamptz;
    left_over bigint;
    done integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pending_lots WHERE member_id = p_member_id AND remaining > 0
                      AND release_at <= now())
       AND NOT EXISTS (SELECT 1 FROM holds WHERE member_id = p_member_id AND status = 'open'
                          AND expires_at <= now())
       AND NOT member_expiry_due(p_program_id, p_member_id) THEN
        RETURN 0;
    END IF;
    PERFORM lock_members(ARRAY[p_member_id]);
    PERFORM lock_member_accounts(p_program_id, ARRAY[p_member_id]);
    SELECT * INTO acct FROM member_account_ids(p_program_id, p_member_id);
    FOR lot IN
        SELECT * FROM pending_lots
         WHERE member_id = p_member_id AND remaining > 0 AND release_at <= now()
         ORDER BY release_at, id FOR UPDATE
    LOOP
        SELECT * INTO legs FROM member_credit_legs(p_program_id, p_member_id, lot.remaining);
        PERFORM ledger_post(
            p_program_id, 'settle', p_member_id, lot.release_at,
            acct.o_pending || legs.o_account_ids, (-lot.remaining) || legs.o_amounts,
            lot.order_id, 'return window passed');
        UPDATE pending_lots SET remaining = 0 WHERE id = lot.id;
        done := done + 1;
    END LOOP;
    FOR hold IN
        SELECT id FROM holds
         WHERE member_id = p_member_id AND status = 'open' AND expires_at <= now()
         ORDER BY id FOR UPDATE
    LOOP
        PERFORM hold_close(hold.id, 'expired', 0, NULL);
        done := done + 1;
    END LOOP;
    FOR lot IN
        SELECT * FROM lots
         WHERE member_id = p_member_id AND remaining > 0 AND expires_at <= now()
         ORDER BY expires_at, earned_at, id FOR UPDATE
    LOOP
        PERFORM ledger_post(
            p_program_id, 'expire', p_member_id, lot.expires_at,
            ARRAY[acct.o_available, program_account_id(p_program_id, 'breakage')],
            ARRAY[-lot.remaining, lot.remaining], NULL, 'points expired',
            jsonb_build_object('lot_id', lot.id, 'earned_at', lot.earned_at,
                               'expires_at', lot.expires_at),
            NULL, 'expire:' || lot.id || ':'
                  || (SELECT count(*) FROM lot_movements WHERE lot_id = lot.id));
        done := done + 1;
    END LOOP;
    deadline := member_inactivity_deadline(p_program_id, p_member_id);
    IF deadline <= now() THEN
        SELECT balance INTO left_over FROM accounts WHERE id = acct.o_available;
        IF left_over > 0 THEN
            PERFORM ledger_post(
                p_program_id, 'expire', p_member_id, deadline,
                ARRAY[acct.o_available, program_account_id(p_program_id, 'breakage')],
                ARRAY[-left_over, left_over], NULL, 'points expired after inactivity',
                jsonb_build_object('inactive', true, 'deadline', deadline),
                NULL, 'expire:inactive:' || p_member_id || ':'
                      || extract(epoch FROM deadline)::bigint || ':'
                      || (SELECT max(id) FROM transactions WHERE member_id = p_member_id));
            done := done + 1;
        END IF;
    END IF;
    RETURN done;
END $$;

-- GET /v1/members/{id}: now with the referral code, and expiry in the lazy maintenance.
CREATE OR REPLACE FUNCTION api_member_view(p_program_id bigint, p_external_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_member_id bigint;
    result jsonb;
BEGIN
    SELECT id INTO v_member_id FROM members
     WHERE program_id = p_program_id AND external_id = p_external_id;
    IF v_member_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM pending_lots WHERE member_id = v_member_id AND remaining > 0
                  AND release_at <= now())
       OR EXISTS (SELECT 1 FROM holds WHERE member_id = v_member_id AND status = 'open'
                     AND expires_at <= now())
       OR member_expiry_due(p_program_id, v_member_id) THEN
        PERFORM member_maintain(p_program_id, v_member_id);
    END IF;
    SELECT jsonb_build_object(
        'external_id', m.external_id, 'birthday', m.birthday, 'attributes', m.attributes,
        'created_at', m.created_at, 'referral_code', m.referral_code,
        'balance', member_points_balance(p_program_id, m.id),
        'pending_lots', coalesce(
            (SELECT jsonb_agg(jsonb_build_object('points', l.remaining,
                                                 'available_at', l.release_at,
                                                 'order_id', l.order_id)
                              ORDER BY l.release_at, l.id)
               FROM pending_lots l WHERE l.member_id = m.id AND l.remaining > 0),
            '[]'::jsonb))
      INTO result
      FROM members m WHERE m.id = v_member_id;
    RETURN result;
END $$;

DROP FUNCTION api_move_points(bigint, text, bytea, text, text, boolean, bigint, bigint, bigint,
    timestamptz, text, text, jsonb, bigint, text, timestamptz, text, text);

-- Earn, redeem or adjust in one call; now with qualifying credit (p_qualifying, earns only:
-- member qualifying <- program qualifying issuance) and expiry in the lazy maintenance.
CREATE FUNCTION api_move_points(
    p_program_id bigint, p_idempotency_key text, p_fingerprint bytea,
    p_kind text, p_external_id text, p_enroll boolean,
    p_member_delta bigint, p_points bigint, p_counter_account_id bigint,
    p_occurred_at timestamptz, p_order_id text, p_reason text, p_metadata jsonb,
    p_order_amount bigint, p_order_currency text, p_pending_until timestamptz,
    p_store_id text, p_terminal_id text, p_qualifying bigint,
    OUT o_replayed boolean, OUT o_status smallint, OUT o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    v_member_id bigint;
    acct record;
    leg_ids bigint[];
    leg_amounts bigint[];
    v_txn_id bigint;
    v_order orders;
    owed bigint;
    qualifying bigint := CASE WHEN p_kind = 'earn' THEN coalesce(p_qualifying, 0) ELSE 0 END;
BEGIN
    -- idempotency_claim, inlined (this is the hottest function of the service)
    INSERT INTO idempotency_keys (program_id, key, fingerprint)
    VALUES (p_program_id, p_idempotency_key, p_fingerprint)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO claim FROM idempotency_claim(p_program_id, p_idempotency_key, p_fingerprint);
        o_replayed := true;
        o_status := claim.o_status;
        o_body := claim.o_response;
        RETURN;
    END IF;

    -- the member, then its account ids and debt in one range scan of one_account_per_kind
    -- (two statements, so that the plan never depends on table statistics)
    SELECT m.id INTO v_member_id FROM members m
     WHERE m.program_id = p_program_id AND m.external_id = p_external_id;
    IF v_member_id IS NOT NULL THEN
        SELECT v_member_id AS id,
               max(a.id) FILTER (WHERE a.kind = 'available') AS o_available,
               max(a.id) FILTER (WHERE a.kind = 'pending') AS o_pending,
               max(a.id) FILTER (WHERE a.kind = 'debt') AS o_debt,
               max(a.balance) FILTER (WHERE a.kind = 'debt') AS debt_balance
          INTO acct
          FROM accounts a
         WHERE a.program_id = p_program_id AND a.member_id = v_member_id AND a.asset = 'points';
    END IF;
    IF v_member_id IS NULL THEN
        IF NOT p_enroll THEN
            RAISE EXCEPTION USING ERRCODE = 'PL102', MESSAGE = 'member_not_found',
                DETAIL = format('no member %L in this program', p_external_id);
        END IF;
        SELECT e.o_member_id INTO v_member_id
          FROM member_enroll(p_program_id, p_external_id, NULL, NULL) AS e;
        SELECT v_member_id AS id, a.o_available, a.o_pending, a.o_debt, 0::bigint AS debt_balance
          INTO acct FROM member_account_ids(p_program_id, v_member_id) AS a;
    ELSIF EXISTS (SELECT 1 FROM pending_lots WHERE member_id = v_member_id AND remaining > 0
                     AND release_at <= now())
          OR EXISTS (SELECT 1 FROM holds WHERE member_id = v_member_id AND status = 'open'
                        AND expires_at <= now())
          OR member_expiry_due(p_program_id, v_member_id) THEN
        PERFORM member_maintain(p_program_id, v_member_id);
        SELECT v_member_id AS id, a.o_available, a.o_pending, a.o_debt,
               (SELECT balance FROM accounts WHERE id = a.o_debt) AS debt_balance
          INTO acct FROM member_account_ids(p_program_id, v_member_id) AS a;
    END IF;

    -- Orders before accounts (lock order). One earn per order; redeems add up on it.
    IF p_order_id IS NOT NULL AND p_kind = 'earn' THEN
        INSERT INTO orders AS o (program_id, order_id, member_id, currency, amount, earned_points,
                                 earned_qualifying)
        VALUES (p_program_id, p_order_id, v_member_id, p_order_currency, p_order_amount, p_points,
                qualifying)
        ON CONFLICT (program_id, order_id) DO UPDATE
           SET currency = excluded.currency, amount = excluded.amount,
               earned_points = excluded.earned_points,
               earned_qualifying = excluded.earned_qualifying
         WHERE o.amount IS NULL AND o.member_id = excluded.member_id AND o.cancelled_at IS NULL
        RETURNING * INTO v_order;
        IF v_order.order_id IS NULL THEN
            SELECT * INTO v_order FROM orders
             WHERE program_id = p_program_id AND order_id = p_order_id;
            IF v_order.member_id <> v_member_id THEN
                RAISE EXCEPTION USING ERRCODE = 'PL113', MESSAGE = 'order_member_mismatch';
            ELSIF v_order.cancelled_at IS NOT NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'PL114', MESSAGE = 'order_cancelled';
            END IF;
            RAISE EXCEPTION USING ERRCODE = 'PL112', MESSAGE = 'order_already_earned',
                DETAIL = format('order %L has already earned points', p_order_id);
        END IF;
    ELSIF p_order_id IS NOT NULL AND p_kind = 'redeem' THEN
        INSERT INTO orders AS o (program_id, order_id, member_id, redeemed_points)
        VALUES (p_program_id, p_order_id, v_member_id, -p_member_delta)
        ON CONFLICT (program_id, order_id) DO UPDATE
           SET redeemed_points = o.redeemed_points - p_member_delta
         WHERE o.member_id = excluded.member_id AND o.cancelled_at IS NULL
        RETURNING * INTO v_order;
        IF v_order.order_id IS NULL THEN
            SELECT * INTO v_order FROM orders
             WHERE program_id = p_program_id AND order_id = p_order_id;
            IF v_order.member_id <> v_member_id THEN
                RAISE EXCEPTION USING ERRCODE = 'PL113', MESSAGE = 'order_member_mismatch';
            END IF;
            RAISE EXCEPTION USING ERRCODE = 'PL114', MESSAGE = 'order_cancelled';
        END IF;
    END IF;

    IF p_member_delta > 0 AND p_pending_until IS NOT NULL AND p_pending_until > now() THEN
        leg_ids := ARRAY[acct.o_pending];
        leg_amounts := ARRAY[p_member_delta];
    ELSIF p_member_delta > 0 THEN
        -- Repaying debt needs the debt account locked before it is read; the common case
        -- (no debt) reads it unlocked and posts to available only.
        owed := -acct.debt_balance;
        IF owed > 0 THEN
            PERFORM lock_member_accounts(p_program_id, ARRAY[v_member_id]);
            SELECT c.o_account_ids, c.o_amounts INTO leg_ids, leg_amounts
              FROM member_credit_legs(p_program_id, v_member_id, p_member_delta) AS c;
        ELSE
            leg_ids := ARRAY[acct.o_available];
            leg_amounts := ARRAY[p_member_delta];
        END IF;
    ELSE
        leg_ids := ARRAY[acct.o_available];
        leg_amounts := ARRAY[p_member_delta];
    END IF;
    leg_ids := leg_ids || p_counter_account_id;
    leg_amounts := leg_amounts || (-p_member_delta);
    IF qualifying > 0 THEN
        leg_ids := leg_ids || ARRAY[
            (SELECT id FROM accounts WHERE program_id = p_program_id AND member_id = v_member_id
                AND asset = 'qualifying' AND kind = 'available'),
            (SELECT id FROM accounts WHERE program_id = p_program_id AND member_id IS NULL
                AND asset = 'qualifying' AND kind = 'issuance')];
        leg_amounts := leg_amounts || ARRAY[qualifying, -qualifying];
    END IF;

    v_txn_id := ledger_post(
        p_program_id, p_kind, v_member_id, p_occurred_at, leg_ids, leg_amounts,
        p_order_id, p_reason, p_metadata, NULL, p_idempotency_key, p_store_id, p_terminal_id);

    IF p_member_delta > 0 AND p_pending_until IS NOT NULL AND p_pending_until > now() THEN
        INSERT INTO pending_lots (program_id, member_id, order_id, earn_transaction_id, points,
                                  remaining, release_at)
        VALUES (p_program_id, v_member_id, p_order_id, v_txn_id, p_member_delta, p_member_delta,
                p_pending_until);
    END IF;
    IF p_order_id IS NOT NULL AND p_kind = 'earn' THEN
        UPDATE orders SET earn_transaction_id = v_txn_id
         WHERE program_id = p_program_id AND order_id = p_order_id;
    END IF;

    o_body := jsonb_build_object(
        'transaction_id', v_txn_id,
        'member', p_external_id,
        'points', p_points,
        'balance', member_points_balance(p_program_id, v_member_id));
    IF p_metadata ? 'breakdown' THEN
        o_body := o_body || jsonb_build_object(
            'rules_version', p_metadata -> 'rules_version',
            'breakdown', p_metadata -> 'breakdown');
    END IF;
    IF qualifying > 0 THEN
        o_body := o_body || jsonb_build_object('qualifying', qualifying);
    END IF;
    o_status := 201;
    o_replayed := false;
    UPDATE idempotency_keys
       SET status_code = o_status, response = o_body, transaction_id = v_txn_id
     WHERE program_id = p_program_id AND key = p_idempotency_key;
END $$;
"""


def _batch_with_qualifying() -> str:
    """api_event_batch, passing each event's qualifying credit on to api_move_points."""
    batch = revision_module("0004_event_batches.py").FUNCTIONS
    old = "ev ->> 'store_id', ev ->> 'terminal_id');"
    assert old in batch
    return (
        function_definition(batch, "api_event_batch")
        .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
        .replace(
            old,
            "ev ->> 'store_id', ev ->> 'terminal_id',\n"
            "                (ev ->> 'qualifying')::bigint);",
        )
    )


def _refund_with_qualifying() -> str:
    """api_order_refund, also taking back qualifying credit in proportion to the money refunded
    (cumulative floor, like the points), so a refunded order can cost a tier."""
    refund = function_definition(
        revision_module("0003_checkout_flows.py").FUNCTIONS, "api_order_refund"
    ).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    edits = [
        (
            "    give bigint := 0;\n",
            "    give bigint := 0;\n    q_take bigint := 0;\n    q_ids bigint[];\n",
        ),
        (
            "    IF p_cancel THEN\n        give :=",
            "    IF coalesce(o.amount, 0) > 0 THEN\n"
            "        q_take := floor(o.earned_qualifying::numeric\n"
            "                        * (o.refunded_amount + refund_amount) / o.amount)::bigint\n"
            "                  - o.qualifying_taken_back;\n"
            "    END IF;\n"
            "    IF p_cancel THEN\n        give :=",
        ),
        (
            "    IF take - written_off > 0 OR give > 0 THEN\n",
            "    IF q_take > 0 THEN\n"
            "        SELECT ARRAY[(SELECT id FROM accounts WHERE program_id = p_program_id\n"
            "                        AND member_id = o.member_id AND asset = 'qualifying'\n"
            "                        AND kind = 'available'),\n"
            "                     (SELECT id FROM accounts WHERE program_id = p_program_id\n"
            "                        AND member_id IS NULL AND asset = 'qualifying'\n"
            "                        AND kind = 'issuance')] INTO q_ids;\n"
            "        ids := ids || q_ids;\n"
            "        amounts := amounts || ARRAY[-q_take, q_take];\n"
            "    END IF;\n"
            "    IF take - written_off > 0 OR give > 0 OR q_take > 0 THEN\n",
        ),
        (
            "                               'redeemed_points_returned', give),",
            "                               'redeemed_points_returned', give,\n"
            "                               'qualifying_taken_back', q_take),",
        ),
        (
            "           redeemed_returned = redeemed_returned + give,\n",
            "           redeemed_returned = redeemed_returned + give,\n"
            "           qualifying_taken_back = qualifying_taken_back + q_take,\n",
        ),
    ]
    for old, new in edits:
        assert refund.count(old) == 1, old
        refund = refund.replace(old, new)
    return refund


BACKFILL = """
INSERT INTO rule_sets (program_id, version, definition)
SELECT p.id, 1, jsonb_build_object(
           'version', 1, 'multiplier_mode', 'stack', 'timezone', p.timezone,
           'rules', jsonb_build_array(jsonb_build_object(
               'id', 'base', 'kind', 'base_rate', 'points_per_unit', p.base_rate::text)))
  FROM programs p;
-- (ON CONFLICT: a downgrade leaves qualifying accounts behind, accounts being undeletable)
INSERT INTO accounts (program_id, asset, kind)
SELECT p.id, 'qualifying', 'issuance' FROM programs p
    ON CONFLICT ON CONSTRAINT one_account_per_kind DO NOTHING;
INSERT INTO accounts (program_id, member_id, asset, kind, balance)
SELECT m.program_id, m.id, 'qualifying', 'available', 0 FROM members m
    ON CONFLICT ON CONSTRAINT one_account_per_kind DO NOTHING;
-- Points available before lots existed: one opening lot per member, which never expires.
INSERT INTO lots (program_id, member_id, transaction_id, earned_at, expires_at, points, remaining)
SELECT a.program_id, a.member_id, NULL, now(), NULL, a.balance, a.balance
  FROM accounts a WHERE a.kind = 'available' AND a.asset = 'points' AND a.balance > 0;
"""


def upgrade() -> None:
    run_script(SCHEMA)
    run_script(FUNCTIONS)
    run_script(_batch_with_qualifying())
    run_script(_refund_with_qualifying())
    run_script(BACKFILL)


def downgrade() -> None:
    checkout = revision_module("0003_checkout_flows.py").FUNCTIONS
    hot_path = revision_module("0005_hot_path.py").UPGRADE
    batch = revision_module("0004_event_batches.py").FUNCTIONS

    def restore(script: str, name: str) -> str:
        return function_definition(script, name).replace(
            "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
        )

    run_script(
        """
        DROP TRIGGER programs_initialize ON programs;
        DROP FUNCTION programs_initialize();
        DROP TRIGGER entries_keep_lots ON entries;
        DROP FUNCTION entries_keep_lots();
        DROP FUNCTION api_move_points(bigint, text, bytea, text, text, boolean, bigint, bigint,
            bigint, timestamptz, text, text, jsonb, bigint, text, timestamptz, text, text,
            bigint);
        """
        + function_definition(hot_path, "api_move_points")
        + "\n"
        + "\n".join(
            [
                restore(hot_path, "api_member_view"),
                restore(checkout, "member_maintain"),
                restore(checkout, "member_enroll"),
                restore(checkout, "api_order_refund"),
                restore(batch, "api_event_batch"),
            ]
        )
        + """
        DROP FUNCTION earn_member_begin(bigint, text, text);
        DROP FUNCTION member_expiry_due(bigint, bigint);
        DROP FUNCTION member_inactivity_deadline(bigint, bigint);
        DROP FUNCTION lot_expires_at(jsonb, text, timestamptz);
        DROP FUNCTION local_day_start(date, text);
        DROP TABLE referrals, memberships, member_tiers, lot_movements, lots, rule_awards,
            rule_sets;
        DROP INDEX members_referral_code;
        ALTER TABLE members DROP COLUMN referral_code;
        DROP FUNCTION referral_code_for(bigint);
        ALTER TABLE orders DROP COLUMN earned_qualifying, DROP COLUMN qualifying_taken_back;
        DROP INDEX transactions_by_hold, transactions_member_activity, transactions_expire_once,
            entries_qualifying_by_member;
        ALTER TABLE programs DROP COLUMN timezone, DROP COLUMN multiplier_mode,
            DROP COLUMN expiry_policy, DROP COLUMN tier_program, DROP COLUMN referral_policy;
        """
    )
    # Qualifying accounts and their entries stay: accounts and entries are append-only, and
    # the earlier revisions simply never post to them.
