"""Checkout and POS flows: holds, pending points, orders with refunds and cancellations,
transfers, member debt (return policy), POS store/terminal on transactions, money values.

Locking rules (so that no two writers can deadlock):
  * operations that post more than one thing for a member (maintenance with work to do, holds,
    refunds, cancellations, transfers, the worker) first take a transaction-scoped advisory lock
    per member, in ascending member id order;
  * an order row is locked before any member account row;
  * member account rows are locked in ascending account id order (ledger_post does this).

Revision ID: 0003_checkout_flows
Revises: 0001_ledger_core
Create Date: 2026-11-23
"""

from sqlscript import function_definition, revision_module, run_script

revision = "0003_checkout_flows"
down_revision = "0001_ledger_core"
branch_labels = None
depends_on = None

# New SQLSTATEs (see app/ledger/errors.py):
#   PL106 hold_not_found           PL107 hold_already_captured   PL108 hold_already_released
#   PL109 hold_expired             PL110 capture_exceeds_hold    PL111 order_not_found
#   PL112 order_already_earned     PL113 order_member_mismatch   PL114 order_cancelled
#   PL115 refund_exceeds_order     PL116 currency_mismatch       PL117 same_member

SCHEMA = """
ALTER TABLE programs
    ADD COLUMN pending_days integer NOT NULL DEFAULT 0
        CHECK (pending_days BETWEEN 0 AND 365),
    ADD COLUMN hold_ttl_seconds integer NOT NULL DEFAULT 900
        CHECK (hold_ttl_seconds BETWEEN 10 AND 604800),
    ADD COLUMN return_policy text NOT NULL DEFAULT 'cap_at_zero'
        CHECK (return_policy IN ('cap_at_zero', 'allow_negative')),
    ADD COLUMN member_transfers boolean NOT NULL DEFAULT false;

-- A member's `debt` account holds points the member owes (balance <= 0) after a refund took
-- back points already spent under the allow_negative return policy. Credits repay it first.
ALTER TABLE accounts
    DROP CONSTRAINT accounts_kind_check,
    ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
        'available', 'pending', 'held', 'debt',
        'issuance', 'redemption', 'breakage', 'referral', 'campaign')),
    DROP CONSTRAINT member_accounts_have_balance,
    ADD CONSTRAINT member_accounts_have_balance CHECK (
        (member_id IS NOT NULL) = (kind IN ('available', 'pending', 'held', 'debt'))
        AND (member_id IS NOT NULL) = (balance IS NOT NULL)),
    DROP CONSTRAINT no_overdraft,
    ADD CONSTRAINT no_overdraft CHECK (kind = 'debt' OR balance >= 0),
    ADD CONSTRAINT debt_is_owed CHECK (kind <> 'debt' OR balance <= 0);

INSERT INTO accounts (program_id, member_id, asset, kind, balance)
SELECT m.program_id, m.id, 'points', 'debt', 0 FROM members m;

ALTER TABLE transactions
    ADD COLUMN store_id text CHECK (length(store_id) BETWEEN 1 AND 64),
    ADD COLUMN terminal_id text CHECK (length(terminal_id) BETWEEN 1 AND 64),
    ADD COLUMN hold_id bigint,
    DROP CONSTRAINT transactions_kind_check,
    ADD CONSTRAINT transactions_kind_check CHECK (kind IN (
        'earn', 'redeem', 'expire', 'referral', 'adjust', 'reverse', 'hold', 'capture',
        'release', 'transfer', 'stamp', 'refund', 'cancel', 'settle'));

-- An order as the ledger knows it: what it earned, what was redeemed on it, what was refunded.
CREATE TABLE orders (
    program_id          bigint NOT NULL,
    order_id            text NOT NULL,
    member_id           bigint NOT NULL,
    currency            text,
    amount              bigint CHECK (amount >= 0),
    earned_points       bigint NOT NULL DEFAULT 0 CHECK (earned_points >= 0),
    earn_transaction_id bigint,
    refunded_amount     bigint NOT NULL DEFAULT 0,
    points_taken_back   bigint NOT NULL DEFAULT 0 CHECK (points_taken_back >= 0),
    points_written_off  bigint NOT NULL DEFAULT 0 CHECK (points_written_off >= 0),
    redeemed_points     bigint NOT NULL DEFAULT 0 CHECK (redeemed_points >= 0),
    redeemed_returned   bigint NOT NULL DEFAULT 0 CHECK (redeemed_returned >= 0),
    cancelled_at        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, order_id),
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id),
    CONSTRAINT refunds_within_order CHECK (refunded_amount BETWEEN 0 AND coalesce(amount, 0)),
    CONSTRAINT take_back_within_earned
        CHECK (points_taken_back + points_written_off <= earned_points),
    CONSTRAINT returned_within_redeemed CHECK (redeemed_returned <= redeemed_points)
);

-- Points earned inside the return window: pending until release_at, then available.
CREATE TABLE pending_lots (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id          bigint NOT NULL,
    member_id           bigint NOT NULL,
    order_id            text,
    earn_transaction_id bigint NOT NULL,
    points              bigint NOT NULL CHECK (points > 0),
    remaining           bigint NOT NULL CHECK (remaining BETWEEN 0 AND points),
    release_at          timestamptz NOT NULL,
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id)
);
CREATE INDEX pending_lots_open_by_member ON pending_lots (member_id, release_at)
    WHERE remaining > 0;
CREATE INDEX pending_lots_due ON pending_lots (release_at) WHERE remaining > 0;
CREATE INDEX pending_lots_by_order ON pending_lots (program_id, order_id)
    WHERE order_id IS NOT NULL;

-- Points reserved at checkout: captured (fully or partly), released, or expired.
CREATE TABLE holds (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id      bigint NOT NULL,
    member_id       bigint NOT NULL,
    points          bigint NOT NULL CHECK (points > 0),
    captured_points bigint NOT NULL DEFAULT 0 CHECK (captured_points BETWEEN 0 AND points),
    status          text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'captured', 'released', 'expired')),
    order_id        text CHECK (length(order_id) BETWEEN 1 AND 128),
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id)
);
CREATE INDEX holds_open_by_member ON holds (member_id, expires_at) WHERE status = 'open';
CREATE INDEX holds_open_due ON holds (expires_at) WHERE status = 'open';
"""

FUNCTIONS = """
-- Serialise multi-step operations per member: advisory locks in ascending member id order.
CREATE FUNCTION lock_members(p_member_ids bigint[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(m) FROM (SELECT DISTINCT unnest(p_member_ids) AS m) s ORDER BY m;
END $$;

-- Lock every points account of the given members, in ascending account id order.
CREATE FUNCTION lock_member_accounts(p_program_id bigint, p_member_ids bigint[])
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM accounts
      WHERE program_id = p_program_id AND member_id = ANY (p_member_ids) AND asset = 'points'
      ORDER BY id FOR NO KEY UPDATE;
END $$;

CREATE FUNCTION member_account_ids(
    p_program_id bigint, p_member_id bigint,
    OUT o_available bigint, OUT o_pending bigint, OUT o_held bigint, OUT o_debt bigint)
LANGUAGE sql STABLE AS $$
    SELECT max(id) FILTER (WHERE kind = 'available'), max(id) FILTER (WHERE kind = 'pending'),
           max(id) FILTER (WHERE kind = 'held'), max(id) FILTER (WHERE kind = 'debt')
      FROM accounts
     WHERE program_id = p_program_id AND member_id = p_member_id AND asset = 'points';
$$;

CREATE FUNCTION program_account_id(p_program_id bigint, p_kind text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT id FROM accounts
     WHERE program_id = p_program_id AND member_id IS NULL AND asset = 'points' AND kind = p_kind;
$$;

CREATE FUNCTION member_enroll(
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
    SELECT p_program_id, o_member_id, 'points', kind, 0
      FROM unnest(ARRAY['available', 'pending', 'held', 'debt']) AS kind;
    o_created := true;
END $$;

-- ledger_post, now with the POS store/terminal and the hold a posting belongs to. Member
-- accounts keep their floor of zero, except `debt`, whose ceiling is zero (CHECK debt_is_owed).
CREATE FUNCTION ledger_post(
    p_program_id bigint, p_kind text, p_member_id bigint, p_occurred_at timestamptz,
    p_account_ids bigint[], p_amounts bigint[],
    p_order_id text DEFAULT NULL, p_reason text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}'::jsonb, p_reverses_id bigint DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL, p_store_id text DEFAULT NULL,
    p_terminal_id text DEFAULT NULL, p_hold_id bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_leg record;
    v_txn_id bigint;
BEGIN
    FOR v_leg IN
        SELECT d.account_id, sum(d.amount)::bigint AS amount, a.kind
          FROM unnest(p_account_ids, p_amounts) AS d (account_id, amount)
          JOIN accounts a ON a.id = d.account_id AND a.balance IS NOT NULL
         GROUP BY d.account_id, a.kind
         ORDER BY d.account_id
    LOOP
        CONTINUE WHEN v_leg.amount = 0;
        UPDATE accounts SET balance = balance + v_leg.amount
         WHERE id = v_leg.account_id AND (kind = 'debt' OR balance + v_leg.amount >= 0);
        IF NOT FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'PL100',
                MESSAGE = 'insufficient_points',
                DETAIL = format('%s points needed, %s there', -v_leg.amount,
                                (SELECT balance FROM accounts WHERE id = v_leg.account_id));
        END IF;
    END LOOP;

    INSERT INTO transactions (program_id, kind, member_id, occurred_at, order_id, reason,
                              metadata, reverses_id, idempotency_key, store_id, terminal_id,
                              hold_id)
    VALUES (p_program_id, p_kind, p_member_id, p_occurred_at, p_order_id, p_reason,
            coalesce(p_metadata, '{}'::jsonb), p_reverses_id, p_idempotency_key, p_store_id,
            p_terminal_id, p_hold_id)
    RETURNING id INTO v_txn_id;

    INSERT INTO entries (transaction_id, leg, program_id, account_id, member_id, asset, amount)
    SELECT v_txn_id, row_number() OVER (), p_program_id, d.account_id, a.member_id, a.asset,
           d.amount
      FROM unnest(p_account_ids, p_amounts) AS d (account_id, amount)
      LEFT JOIN accounts a ON a.id = d.account_id AND a.program_id = p_program_id
     WHERE d.amount <> 0;
    RETURN v_txn_id;
END $$;

-- A member's points balance as the API shows it, with money values. `available` is net of
-- debt, so under the allow_negative policy it can be below zero.
CREATE OR REPLACE FUNCTION member_points_balance(p_program_id bigint, p_member_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'available', b.available, 'pending', b.pending, 'held', b.held,
        'available_value', jsonb_build_object(
            'amount', floor(b.available * p.point_value)::bigint, 'currency', p.currency),
        'pending_value', jsonb_build_object(
            'amount', floor(b.pending * p.point_value)::bigint, 'currency', p.currency),
        'held_value', jsonb_build_object(
            'amount', floor(b.held * p.point_value)::bigint, 'currency', p.currency))
      FROM (SELECT coalesce(sum(balance) FILTER (WHERE kind IN ('available', 'debt')), 0)
                       AS available,
                   coalesce(sum(balance) FILTER (WHERE kind = 'pending'), 0) AS pending,
                   coalesce(sum(balance) FILTER (WHERE kind = 'held'), 0) AS held
              FROM accounts
             WHERE program_id = p_program_id AND member_id = p_member_id
               AND asset = 'points') AS b
      JOIN programs p ON p.id = p_program_id;
$$;

-- The member-side legs of crediting `p_points` to a member: repay debt first, the rest to
-- available. The caller holds the lock on the member's accounts.
CREATE FUNCTION member_credit_legs(
    p_program_id bigint, p_member_id bigint, p_points bigint,
    OUT o_account_ids bigint[], OUT o_amounts bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    acct record;
    owed bigint;
    repay bigint;
BEGIN
    SELECT * INTO acct FROM member_account_ids(p_program_id, p_member_id);
    SELECT -balance INTO owed FROM accounts WHERE id = acct.o_debt;
    repay := least(greatest(owed, 0), p_points);
    o_account_ids := ARRAY[acct.o_available];
    o_amounts := ARRAY[p_points - repay];
    IF repay > 0 THEN
        o_account_ids := o_account_ids || acct.o_debt;
        o_amounts := o_amounts || repay;
    END IF;
END $$;

-- Close a hold: capture `p_capture` of it (to redemption), the rest back to available.
CREATE FUNCTION hold_close(p_hold_id bigint, p_status text, p_capture bigint, p_key text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    h holds;
    acct record;
    txn_id bigint;
BEGIN
    SELECT * INTO h FROM holds WHERE id = p_hold_id;
    SELECT * INTO acct FROM member_account_ids(h.program_id, h.member_id);
    txn_id := ledger_post(
        h.program_id, CASE WHEN p_capture > 0 THEN 'capture' ELSE 'release' END, h.member_id,
        now(),
        ARRAY[acct.o_held, program_account_id(h.program_id, 'redemption'), acct.o_available],
        ARRAY[-h.points, p_capture, h.points - p_capture],
        h.order_id, CASE WHEN p_status = 'expired' THEN 'hold expired' END, '{}'::jsonb,
        NULL, p_key, NULL, NULL, h.id);
    UPDATE holds SET status = p_status, captured_points = p_capture, closed_at = now()
     WHERE id = p_hold_id;
    RETURN txn_id;
END $$;

-- Lazy maintenance of one member: move due pending lots to available and release expired
-- holds, so that correctness never depends on the worker being up. Cheap when there is
-- nothing to do (two index probes).
CREATE FUNCTION member_maintain(p_program_id bigint, p_member_id bigint)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    lot record;
    hold record;
    legs record;
    acct record;
    done integer := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pending_lots WHERE member_id = p_member_id AND remaining > 0
                      AND release_at <= now())
       AND NOT EXISTS (SELECT 1 FROM holds WHERE member_id = p_member_id AND status = 'open'
                          AND expires_at <= now()) THEN
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
    RETURN done;
END $$;

-- Earn, redeem or adjust in one call. New since the core revision: lazy maintenance first,
-- orders (one earn per order; redemptions counted on their order), pending points for orders
-- inside the return window (p_pending_until), debt repaid first by credits, POS store and
-- terminal kept on the transaction, and money values in the balance.
CREATE FUNCTION api_move_points(
    p_program_id bigint, p_idempotency_key text, p_fingerprint bytea,
    p_kind text, p_external_id text, p_enroll boolean,
    p_member_delta bigint, p_points bigint, p_counter_account_id bigint,
    p_occurred_at timestamptz, p_order_id text, p_reason text, p_metadata jsonb,
    p_order_amount bigint, p_order_currency text, p_pending_until timestamptz,
    p_store_id text, p_terminal_id text,
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
BEGIN
    SELECT * INTO claim FROM idempotency_claim(p_program_id, p_idempotency_key, p_fingerprint);
    IF NOT claim.o_claimed THEN
        o_replayed := true;
        o_status := claim.o_status;
        o_body := claim.o_response;
        RETURN;
    END IF;

    IF p_enroll THEN
        SELECT e.o_member_id INTO v_member_id
          FROM member_enroll(p_program_id, p_external_id, NULL, NULL) AS e;
    ELSE
        SELECT m.id INTO v_member_id FROM members m
         WHERE m.program_id = p_program_id AND m.external_id = p_external_id;
        IF v_member_id IS NULL THEN
            RAISE EXCEPTION USING ERRCODE = 'PL102', MESSAGE = 'member_not_found',
                DETAIL = format('no member %L in this program', p_external_id);
        END IF;
    END IF;
    PERFORM member_maintain(p_program_id, v_member_id);

    -- Orders before accounts (lock order). One earn per order; redeems add up on it.
    IF p_order_id IS NOT NULL AND p_kind = 'earn' THEN
        INSERT INTO orders AS o (program_id, order_id, member_id, currency, amount, earned_points)
        VALUES (p_program_id, p_order_id, v_member_id, p_order_currency, p_order_amount, p_points)
        ON CONFLICT (program_id, order_id) DO UPDATE
           SET currency = excluded.currency, amount = excluded.amount,
               earned_points = excluded.earned_points
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

    SELECT * INTO acct FROM member_account_ids(p_program_id, v_member_id);
    IF p_member_delta > 0 AND p_pending_until IS NOT NULL AND p_pending_until > now() THEN
        leg_ids := ARRAY[acct.o_pending];
        leg_amounts := ARRAY[p_member_delta];
    ELSIF p_member_delta > 0 THEN
        -- Repaying debt needs the debt account locked before it is read; the common case
        -- (no debt) reads it unlocked and posts to available only.
        SELECT -balance INTO owed FROM accounts WHERE id = acct.o_debt;
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

    v_txn_id := ledger_post(
        p_program_id, p_kind, v_member_id, p_occurred_at,
        leg_ids || p_counter_account_id, leg_amounts || (-p_member_delta),
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
    o_status := 201;
    o_replayed := false;
    PERFORM idempotency_complete(p_program_id, p_idempotency_key, o_status, o_body, v_txn_id);
END $$;

CREATE FUNCTION hold_view(p_hold_id bigint) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'hold_id', h.id, 'member', m.external_id, 'points', h.points,
        'captured_points', h.captured_points, 'status', h.status, 'order_id', h.order_id,
        'expires_at', h.expires_at, 'created_at', h.created_at, 'closed_at', h.closed_at,
        'balance', member_points_balance(h.program_id, h.member_id))
      FROM holds h JOIN members m ON m.id = h.member_id
     WHERE h.id = p_hold_id;
$$;

-- Reserve points at checkout: available -> held.
CREATE FUNCTION api_hold_create(
    p_program_id bigint, p_idempotency_key text, p_fingerprint bytea, p_external_id text,
    p_points bigint, p_order_id text, p_expires_at timestamptz,
    OUT o_replayed boolean, OUT o_status smallint, OUT o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    v_member_id bigint;
    acct record;
    v_hold_id bigint;
    v_txn_id bigint;
BEGIN
    SELECT * INTO claim FROM idempotency_claim(p_program_id, p_idempotency_key, p_fingerprint);
    IF NOT claim.o_claimed THEN
        o_replayed := true;
        o_status := claim.o_status;
        o_body := claim.o_response;
        RETURN;
    END IF;
    SELECT id INTO v_member_id FROM members
     WHERE program_id = p_program_id AND external_id = p_external_id;
    IF v_member_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PL102', MESSAGE = 'member_not_found';
    END IF;
    PERFORM member_maintain(p_program_id, v_member_id);
    SELECT * INTO acct FROM member_account_ids(p_program_id, v_member_id);
    INSERT INTO holds (program_id, member_id, points, order_id, expires_at)
    VALUES (p_program_id, v_member_id, p_points, p_order_id, p_expires_at)
    RETURNING id INTO v_hold_id;
    v_txn_id := ledger_post(
        p_program_id, 'hold', v_member_id, now(), ARRAY[acct.o_available, acct.o_held],
        ARRAY[-p_points, p_points], p_order_id, NULL, '{}'::jsonb, NULL, p_idempotency_key,
        NULL, NULL, v_hold_id);
    o_body := hold_view(v_hold_id) || jsonb_build_object('transaction_id', v_txn_id);
    o_status := 201;
    o_replayed := false;
    PERFORM idempotency_complete(p_program_id, p_idempotency_key, o_status, o_body, v_txn_id);
END $$;

-- Capture (p_capture NULL = all, 0 = release) or release an open hold.
CREATE FUNCTION api_hold_close(
    p_program_id bigint, p_idempotency_key text, p_fingerprint bytea, p_hold_id bigint,
    p_capture bigint,
    OUT o_replayed boolean, OUT o_status smallint, OUT o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    h holds;
    v_capture bigint;
    v_txn_id bigint;
BEGIN
    SELECT * INTO claim FROM idempotency_claim(p_program_id, p_idempotency_key, p_fingerprint);
    IF NOT claim.o_claimed THEN
        o_replayed := true;
        o_status := claim.o_status;
        o_body := claim.o_response;
        RETURN;
    END IF;
    SELECT * INTO h FROM holds WHERE id = p_hold_id AND program_id = p_program_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PL106', MESSAGE = 'hold_not_found';
    END IF;
    PERFORM lock_members(ARRAY[h.member_id]);
    IF h.order_id IS NOT NULL AND coalesce(p_capture, 1) > 0 THEN
        -- lock (or create) the order row before any account row
        INSERT INTO orders (program_id, order_id, member_id)
        VALUES (p_program_id, h.order_id, h.member_id) ON CONFLICT DO NOTHING;
        PERFORM 1 FROM orders WHERE program_id = p_program_id AND order_id = h.order_id
           FOR UPDATE;
    END IF;
    PERFORM member_maintain(p_program_id, h.member_id);
    SELECT * INTO h FROM holds WHERE id = p_hold_id FOR UPDATE;
    IF h.status = 'captured' THEN
        RAISE EXCEPTION USING ERRCODE = 'PL107', MESSAGE = 'hold_already_captured';
    ELSIF h.status = 'released' THEN
        RAISE EXCEPTION USING ERRCODE = 'PL108', MESSAGE = 'hold_already_released';
    ELSIF h.status = 'expired' THEN
        RAISE EXCEPTION USING ERRCODE = 'PL109', MESSAGE = 'hold_expired',
            DETAIL = format('the hold expired at %s and its points went back', h.expires_at);
    END IF;
    v_capture := coalesce(p_capture, h.points);
    IF v_capture > h.points THEN
        RAISE EXCEPTION USING ERRCODE = 'PL110', MESSAGE = 'capture_exceeds_hold',
            DETAIL = format('the hold is for %s points', h.points);
    END IF;
    v_txn_id := hold_close(
        p_hold_id, CASE WHEN v_capture > 0 THEN 'captured' ELSE 'released' END, v_capture,
        p_idempotency_key);
    IF h.order_id IS NOT NULL AND v_capture > 0 THEN
        UPDATE orders SET redeemed_points = redeemed_points + v_capture
         WHERE program_id = p_program_id AND order_id = h.order_id AND member_id = h.member_id;
    END IF;
    o_body := hold_view(p_hold_id) || jsonb_build_object('transaction_id', v_txn_id);
    o_status := 200;
    o_replayed := false;
    PERFORM idempotency_complete(p_program_id, p_idempotency_key, o_status, o_body, v_txn_id);
END $$;

-- Refund (part of) an order, or cancel it (p_cancel): take back the points it earned in
-- proportion to the money refunded (pending first, then available, then per return policy),
-- and on cancellation give back the points redeemed on it.
CREATE FUNCTION api_order_refund(
    p_program_id bigint, p_idempotency_key text, p_fingerprint bytea, p_order_id text,
    p_amount bigint, p_currency text, p_reason text, p_cancel boolean,
    OUT o_replayed boolean, OUT o_status smallint, OUT o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    o orders;
    prog programs;
    acct record;
    bal record;
    lot pending_lots;
    refund_amount bigint;
    target bigint;
    take bigint := 0;
    from_pending bigint := 0;
    from_available bigint := 0;
    owed_more bigint := 0;
    written_off bigint := 0;
    give bigint := 0;
    ids bigint[] := '{}';
    amounts bigint[] := '{}';
    v_txn_id bigint;
BEGIN
    SELECT * INTO claim FROM idempotency_claim(p_program_id, p_idempotency_key, p_fingerprint);
    IF NOT claim.o_claimed THEN
        o_replayed := true;
        o_status := claim.o_status;
        o_body := claim.o_response;
        RETURN;
    END IF;
    SELECT * INTO o FROM orders WHERE program_id = p_program_id AND order_id = p_order_id;
    IF NOT FOUND OR (o.amount IS NULL AND NOT p_cancel) THEN
        RAISE EXCEPTION USING ERRCODE = 'PL111', MESSAGE = 'order_not_found',
            DETAIL = format('no order %L earned points in this program', p_order_id);
    END IF;
    PERFORM lock_members(ARRAY[o.member_id]);
    SELECT * INTO o FROM orders WHERE program_id = p_program_id AND order_id = p_order_id
       FOR UPDATE;
    IF o.cancelled_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PL114', MESSAGE = 'order_cancelled';
    END IF;
    IF p_currency IS NOT NULL AND p_currency IS DISTINCT FROM o.currency THEN
        RAISE EXCEPTION USING ERRCODE = 'PL116', MESSAGE = 'currency_mismatch',
            DETAIL = format('the order is in %s', o.currency);
    END IF;
    refund_amount := CASE WHEN p_cancel THEN coalesce(o.amount, 0) - o.refunded_amount
                          ELSE p_amount END;
    IF o.refunded_amount + refund_amount > coalesce(o.amount, 0) THEN
        RAISE EXCEPTION USING ERRCODE = 'PL115', MESSAGE = 'refund_exceeds_order',
            DETAIL = format('%s of %s already refunded', o.refunded_amount, o.amount);
    END IF;
    SELECT * INTO prog FROM programs WHERE id = p_program_id;

    PERFORM member_maintain(p_program_id, o.member_id);
    PERFORM lock_member_accounts(p_program_id, ARRAY[o.member_id]);
    SELECT * INTO acct FROM member_account_ids(p_program_id, o.member_id);
    SELECT max(balance) FILTER (WHERE kind = 'available') AS available,
           max(balance) FILTER (WHERE kind = 'debt') AS debt
      INTO bal FROM accounts WHERE id IN (acct.o_available, acct.o_debt);

    -- Cumulative rounding: after refunding R of amount A, floor(earned x R / A) points have
    -- been taken back in total, so partial refunds add up exactly to a full one.
    IF coalesce(o.amount, 0) > 0 THEN
        target := floor(o.earned_points::numeric * (o.refunded_amount + refund_amount)
                        / o.amount)::bigint;
        take := target - o.points_taken_back - o.points_written_off;
    END IF;
    IF p_cancel THEN
        give := o.redeemed_points - o.redeemed_returned;
    END IF;

    IF take > 0 THEN
        SELECT * INTO lot FROM pending_lots
         WHERE program_id = p_program_id AND order_id = p_order_id AND remaining > 0
         ORDER BY id LIMIT 1 FOR UPDATE;
        IF FOUND THEN
            from_pending := least(lot.remaining, take);
            UPDATE pending_lots SET remaining = remaining - from_pending WHERE id = lot.id;
        END IF;
        from_available := least(take - from_pending, bal.available + give);
        IF prog.return_policy = 'allow_negative' THEN
            owed_more := take - from_pending - from_available;
        ELSE
            written_off := take - from_pending - from_available;
        END IF;
        ids := ARRAY[acct.o_pending, acct.o_available, acct.o_debt,
                     program_account_id(p_program_id, 'issuance')];
        amounts := ARRAY[-from_pending, -from_available, -owed_more,
                         from_pending + from_available + owed_more];
    END IF;
    IF give > 0 THEN
        ids := ids || ARRAY[acct.o_available, program_account_id(p_program_id, 'redemption')];
        amounts := amounts || ARRAY[give, -give];
    END IF;

    IF take - written_off > 0 OR give > 0 THEN
        v_txn_id := ledger_post(
            p_program_id, CASE WHEN p_cancel THEN 'cancel' ELSE 'refund' END, o.member_id, now(),
            ids, amounts, p_order_id, p_reason,
            jsonb_build_object('refund_amount', refund_amount, 'points_taken_back',
                               take - written_off, 'points_written_off', written_off,
                               'redeemed_points_returned', give),
            NULL, p_idempotency_key);
    END IF;
    UPDATE orders
       SET refunded_amount = refunded_amount + refund_amount,
           points_taken_back = points_taken_back + take - written_off,
           points_written_off = points_written_off + written_off,
           redeemed_returned = redeemed_returned + give,
           cancelled_at = CASE WHEN p_cancel THEN now() END
     WHERE program_id = p_program_id AND order_id = p_order_id
    RETURNING * INTO o;

    o_body := jsonb_build_object(
        'order_id', p_order_id,
        'member', (SELECT external_id FROM members WHERE id = o.member_id),
        'transaction_id', v_txn_id,
        'refund_amount', refund_amount,
        'currency', o.currency,
        'points_taken_back', take - written_off,
        'points_written_off', written_off,
        'redeemed_points_returned', give,
        'order', jsonb_build_object(
            'amount', o.amount, 'refunded_amount', o.refunded_amount,
            'earned_points', o.earned_points, 'points_taken_back', o.points_taken_back,
            'points_written_off', o.points_written_off, 'redeemed_points', o.redeemed_points,
            'redeemed_returned', o.redeemed_returned, 'cancelled', o.cancelled_at IS NOT NULL),
        'balance', member_points_balance(p_program_id, o.member_id));
    o_status := 201;
    o_replayed := false;
    PERFORM idempotency_complete(p_program_id, p_idempotency_key, o_status, o_body, v_txn_id);
END $$;

-- Move points between two members of one program: both legs or neither.
CREATE FUNCTION api_transfer(
    p_program_id bigint, p_idempotency_key text, p_fingerprint bytea, p_from text, p_to text,
    p_points bigint, p_reason text,
    OUT o_replayed boolean, OUT o_status smallint, OUT o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    from_id bigint;
    to_id bigint;
    legs record;
    v_txn_id bigint;
BEGIN
    SELECT * INTO claim FROM idempotency_claim(p_program_id, p_idempotency_key, p_fingerprint);
    IF NOT claim.o_claimed THEN
        o_replayed := true;
        o_status := claim.o_status;
        o_body := claim.o_response;
        RETURN;
    END IF;
    SELECT id INTO from_id FROM members WHERE program_id = p_program_id AND external_id = p_from;
    SELECT id INTO to_id FROM members WHERE program_id = p_program_id AND external_id = p_to;
    IF from_id IS NULL OR to_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PL102', MESSAGE = 'member_not_found',
            DETAIL = format('no member %L in this program',
                            CASE WHEN from_id IS NULL THEN p_from ELSE p_to END);
    END IF;
    IF from_id = to_id THEN
        RAISE EXCEPTION USING ERRCODE = 'PL117', MESSAGE = 'same_member';
    END IF;
    PERFORM lock_members(ARRAY[from_id, to_id]);
    PERFORM member_maintain(p_program_id, from_id);
    PERFORM member_maintain(p_program_id, to_id);
    PERFORM lock_member_accounts(p_program_id, ARRAY[from_id, to_id]);
    SELECT * INTO legs FROM member_credit_legs(p_program_id, to_id, p_points);
    v_txn_id := ledger_post(
        p_program_id, 'transfer', from_id, now(),
        (SELECT o_available FROM member_account_ids(p_program_id, from_id)) || legs.o_account_ids,
        (-p_points) || legs.o_amounts, NULL, p_reason,
        jsonb_build_object('to_member', p_to), NULL, p_idempotency_key);
    o_body := jsonb_build_object(
        'transaction_id', v_txn_id, 'from_member', p_from, 'to_member', p_to,
        'points', p_points,
        'from_balance', member_points_balance(p_program_id, from_id),
        'to_balance', member_points_balance(p_program_id, to_id));
    o_status := 201;
    o_replayed := false;
    PERFORM idempotency_complete(p_program_id, p_idempotency_key, o_status, o_body, v_txn_id);
END $$;
"""

# Functions whose core-revision versions this revision replaces (restored on downgrade).
REPLACED = ("member_enroll", "ledger_post", "member_points_balance", "api_move_points")

DROP_OLD = """
DROP FUNCTION member_enroll(bigint, text, date, jsonb);
DROP FUNCTION ledger_post(bigint, text, bigint, timestamptz, bigint[], bigint[], text, text,
    jsonb, bigint, text);
DROP FUNCTION api_move_points(bigint, text, bytea, text, text, boolean, bigint, bigint, bigint,
    timestamptz, text, text, jsonb);
"""

DROP_NEW = """
DROP FUNCTION api_transfer(bigint, text, bytea, text, text, bigint, text);
DROP FUNCTION api_order_refund(bigint, text, bytea, text, bigint, text, text, boolean);
DROP FUNCTION api_hold_close(bigint, text, bytea, bigint, bigint);
DROP FUNCTION api_hold_create(bigint, text, bytea, text, bigint, text, timestamptz);
DROP FUNCTION hold_view(bigint);
DROP FUNCTION api_move_points(bigint, text, bytea, text, text, boolean, bigint, bigint, bigint,
    timestamptz, text, text, jsonb, bigint, text, timestamptz, text, text);
DROP FUNCTION member_maintain(bigint, bigint);
DROP FUNCTION hold_close(bigint, text, bigint, text);
DROP FUNCTION member_credit_legs(bigint, bigint, bigint);
DROP FUNCTION member_points_balance(bigint, bigint);
DROP FUNCTION ledger_post(bigint, text, bigint, timestamptz, bigint[], bigint[], text, text,
    jsonb, bigint, text, text, text, bigint);
DROP FUNCTION member_enroll(bigint, text, date, jsonb);
DROP FUNCTION program_account_id(bigint, text);
DROP FUNCTION member_account_ids(bigint, bigint);
DROP FUNCTION lock_member_accounts(bigint, bigint[]);
DROP FUNCTION lock_members(bigint[]);
"""

SCHEMA_DOWN = """
DROP TABLE holds, pending_lots, orders;
ALTER TABLE transactions
    DROP CONSTRAINT transactions_kind_check,
    ADD CONSTRAINT transactions_kind_check CHECK (kind IN (
        'earn', 'redeem', 'expire', 'referral', 'adjust', 'reverse', 'hold', 'capture',
        'release', 'transfer', 'stamp', 'refund')),
    DROP COLUMN hold_id, DROP COLUMN terminal_id, DROP COLUMN store_id;
ALTER TABLE accounts DISABLE TRIGGER accounts_no_delete;
DELETE FROM accounts WHERE kind = 'debt';
ALTER TABLE accounts ENABLE TRIGGER accounts_no_delete;
ALTER TABLE accounts
    DROP CONSTRAINT debt_is_owed,
    DROP CONSTRAINT no_overdraft,
    ADD CONSTRAINT no_overdraft CHECK (balance >= 0),
    DROP CONSTRAINT member_accounts_have_balance,
    ADD CONSTRAINT member_accounts_have_balance CHECK (
        (member_id IS NOT NULL) = (kind IN ('available', 'pending', 'held'))
        AND (member_id IS NOT NULL) = (balance IS NOT NULL)),
    DROP CONSTRAINT accounts_kind_check,
    ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
        'available', 'pending', 'held',
        'issuance', 'redemption', 'breakage', 'referral', 'campaign'));
ALTER TABLE programs DROP COLUMN member_transfers, DROP COLUMN return_policy,
    DROP COLUMN hold_ttl_seconds, DROP COLUMN pending_days;
"""


def upgrade() -> None:
    run_script(SCHEMA)
    run_script(DROP_OLD)
    run_script(FUNCTIONS)


def downgrade() -> None:
    core = revision_module("0001_ledger_core.py")
    run_script(DROP_NEW)
    run_script(SCHEMA_DOWN)
    run_script("\n".join(function_definition(core.FUNCTIONS, name) for name in REPLACED))
