"""Ledger core: programs, API keys, members, accounts, transactions, entries, idempotency keys,
and the PL/pgSQL that posts to them.

The invariants of the design (append-only, balanced, no overdraft, idempotent) are enforced here,
in PostgreSQL, so that no code path, script or psql session can break them.

Revision ID: 0001_ledger_core
Revises:
Create Date: 2026-11-23
"""

from sqlscript import run_script

revision = "0001_ledger_core"
down_revision = None
branch_labels = None
depends_on = None

# Custom SQLSTATEs raised by the functions below; app/ledger/errors.py maps them to API errors.
#   PL001 append-only violation      PL002 entry/account mismatch   PL003 unbalanced transaction
#   PL100 insufficient_points        PL101 idempotency_conflict     PL102 member_not_found
#   PL103 transaction_not_found      PL104 already_reversed         PL105 not_reversible

TABLES = """
CREATE TABLE programs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    currency_exponent smallint NOT NULL CHECK (currency_exponent BETWEEN 0 AND 4),
    -- points per whole currency unit of an order (exact decimal, result rounded down)
    base_rate         numeric(12, 4) NOT NULL DEFAULT 1 CHECK (base_rate >= 0),
    -- money value of one point, in minor units of `currency` (exact decimal)
    point_value       numeric(18, 6) NOT NULL DEFAULT 1 CHECK (point_value >= 0),
    max_backdate_days integer NOT NULL DEFAULT 30 CHECK (max_backdate_days BETWEEN 0 AND 3650),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id  bigint NOT NULL REFERENCES programs (id),
    prefix      text NOT NULL UNIQUE,
    secret_hash bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    scopes      text[] NOT NULL CHECK (
                    cardinality(scopes) > 0
                    AND scopes <@ ARRAY['earn', 'redeem', 'read', 'admin']::text[]),
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE members (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id  bigint NOT NULL,
    external_id text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 128),
    birthday    date,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (program_id, external_id),
    UNIQUE (id, program_id)
);

-- One row per ledger account. Member accounts (available / pending / held) carry `balance`,
-- the running-balance projection, with a floor of zero. Program accounts (issuance,
-- redemption, breakage, ...) carry no running balance: every posting touches them, and
-- a locked counter would serialise the whole program. Their balance is the sum of entries.
CREATE TABLE accounts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id bigint NOT NULL REFERENCES programs (id),
    member_id  bigint,
    asset      text NOT NULL CHECK (asset IN ('points', 'stamps', 'qualifying')),
    kind       text NOT NULL CHECK (kind IN (
                   'available', 'pending', 'held',
                   'issuance', 'redemption', 'breakage', 'referral', 'campaign')),
    balance    bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id),
    CONSTRAINT member_accounts_have_balance CHECK (
        (member_id IS NOT NULL) = (kind IN ('available', 'pending', 'held'))
        AND (member_id IS NOT NULL) = (balance IS NOT NULL)),
    CONSTRAINT no_overdraft CHECK (balance >= 0),
    CONSTRAINT one_account_per_kind UNIQUE NULLS NOT DISTINCT (program_id, member_id, asset, kind)
);

-- No foreign key to programs or members on the hot insert path: a foreign key takes a
-- KEY SHARE lock on the referenced row, and every posting would share one hot program row.
-- Tenancy is still enforced: (member_id, program_id) must match a member, and the entries
-- trigger checks every leg against its account.
CREATE TABLE transactions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program_id      bigint NOT NULL,
    kind            text NOT NULL CHECK (kind IN (
                        'earn', 'redeem', 'expire', 'referral', 'adjust', 'reverse', 'hold',
                        'capture', 'release', 'transfer', 'stamp', 'refund')),
    member_id       bigint,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    order_id        text CHECK (length(order_id) BETWEEN 1 AND 128),
    reason          text CHECK (length(reason) <= 500),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    reverses_id     bigint UNIQUE REFERENCES transactions (id),
    idempotency_key text,
    UNIQUE (id, program_id),
    FOREIGN KEY (member_id, program_id) REFERENCES members (id, program_id)
);
CREATE INDEX transactions_by_order ON transactions (program_id, order_id)
    WHERE order_id IS NOT NULL;

-- One leg of a transaction. `member_id` and `asset` repeat the account's (checked by trigger)
-- so that a member's history is one index range scan.
CREATE TABLE entries (
    transaction_id bigint NOT NULL,
    leg            smallint NOT NULL CHECK (leg > 0),
    program_id     bigint NOT NULL,
    account_id     bigint NOT NULL,
    member_id      bigint,
    asset          text NOT NULL,
    amount         bigint NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (transaction_id, leg),
    FOREIGN KEY (transaction_id, program_id) REFERENCES transactions (id, program_id)
);
CREATE INDEX entries_member_history ON entries (member_id, transaction_id DESC)
    WHERE member_id IS NOT NULL;
CREATE INDEX entries_by_account ON entries (account_id);

-- Every write's idempotency key. Claimed at the start of the write's database transaction,
-- completed with the response at its end: a concurrent request with the same key waits on the
-- primary key until the first commits, then replays its response.
CREATE TABLE idempotency_keys (
    program_id     bigint NOT NULL,
    key            text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint    bytea NOT NULL,
    status_code    smallint,
    response       jsonb,
    transaction_id bigint,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, key)
);
"""

TRIGGERS = """
-- Invariant 1: the ledger is append-only. Corrections are new transactions.
CREATE FUNCTION forbid_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'PL001',
        MESSAGE = format('%s is append-only: %s is not allowed', TG_TABLE_NAME, TG_OP),
        HINT = 'Post a correcting transaction (reverse or adjust) instead.';
END $$;

CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION forbid_mutation();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_mutation();
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION forbid_mutation();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_mutation();
-- Accounts, members and programs are referenced by the ledger: they are never removed.
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION forbid_mutation();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION forbid_mutation();
CREATE TRIGGER members_no_delete BEFORE DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION forbid_mutation();
CREATE TRIGGER programs_no_delete BEFORE DELETE ON programs
    FOR EACH ROW EXECUTE FUNCTION forbid_mutation();

-- Invariant 2: every transaction balances per asset, and every leg names an account of the
-- transaction's program whose asset and owner it repeats. Checked once per INSERT statement
-- over all the transactions it touched (all legs of a transaction go in one statement).
CREATE FUNCTION check_new_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.transaction_id, n.leg, n.account_id INTO bad
      FROM new_entries n
      LEFT JOIN accounts a ON a.id = n.account_id
     WHERE a.id IS NULL
        OR a.program_id <> n.program_id
        OR a.asset <> n.asset
        OR a.member_id IS DISTINCT FROM n.member_id
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL002',
            MESSAGE = format('entry %s/%s does not match account %s (program, asset or owner)',
                             bad.transaction_id, bad.leg, bad.account_id);
    END IF;

    SELECT e.transaction_id, e.asset, sum(e.amount) AS total INTO bad
      FROM entries e
     WHERE e.transaction_id IN (SELECT DISTINCT transaction_id FROM new_entries)
     GROUP BY e.transaction_id, e.asset
    HAVING sum(e.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL003',
            MESSAGE = format('transaction %s is unbalanced: %s entries sum to %s',
                             bad.transaction_id, bad.asset, bad.total);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER entries_balanced AFTER INSERT ON entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION check_new_entries();
"""

FUNCTIONS = """
-- Claim an idempotency key for this database transaction. Returns o_claimed = true when the
-- caller should go on and perform the write; otherwise the stored response of the first
-- request with this key. A different request under the same key is an error (PL101).
CREATE FUNCTION idempotency_claim(
    p_program_id bigint, p_key text, p_fingerprint bytea,
    OUT o_claimed boolean, OUT o_status smallint, OUT o_response jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    stored record;
BEGIN
    INSERT INTO idempotency_keys (program_id, key, fingerprint)
    VALUES (p_program_id, p_key, p_fingerprint)
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        o_claimed := true;
        RETURN;
    END IF;
    -- The first request has committed (ON CONFLICT waited for it): replay or refuse.
    SELECT k.fingerprint, k.status_code, k.response INTO stored
      FROM idempotency_keys k WHERE k.program_id = p_program_id AND k.key = p_key;
    IF stored.fingerprint <> p_fingerprint OR stored.response IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL101',
            MESSAGE = 'idempotency_conflict',
            DETAIL = format('key %L was first used with a different request', p_key);
    END IF;
    o_claimed := false;
    o_status := stored.status_code;
    o_response := stored.response;
END $$;

-- Store the response of a claimed key; returns it as stored, which is what replays return.
CREATE FUNCTION idempotency_complete(
    p_program_id bigint, p_key text, p_status smallint, p_response jsonb, p_transaction_id bigint)
RETURNS jsonb LANGUAGE sql AS $$
    UPDATE idempotency_keys
       SET status_code = p_status, response = p_response, transaction_id = p_transaction_id
     WHERE program_id = p_program_id AND key = p_key
    RETURNING response;
$$;

-- Find a member by external id, enrolling it (with its points accounts) if it is new.
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
        -- Enrolled concurrently by another request, which has committed.
        SELECT id INTO o_member_id FROM members
         WHERE program_id = p_program_id AND external_id = p_external_id;
        o_created := false;
        RETURN;
    END IF;
    INSERT INTO accounts (program_id, member_id, asset, kind, balance)
    SELECT p_program_id, o_member_id, 'points', kind, 0
      FROM unnest(ARRAY['available', 'pending', 'held']) AS kind;
    o_created := true;
END $$;

-- Post one balanced ledger transaction: legs are (account id, signed amount) pairs.
-- Member accounts move first, one conditional UPDATE each in ascending account id order
-- (two postings over the same accounts lock them in the same order: no deadlock), and a
-- debit that would take a balance below zero raises PL100 instead of updating anything.
-- Program accounts take no lock at all. Returns the new transaction id.
CREATE FUNCTION ledger_post(
    p_program_id bigint, p_kind text, p_member_id bigint, p_occurred_at timestamptz,
    p_account_ids bigint[], p_amounts bigint[],
    p_order_id text DEFAULT NULL, p_reason text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}'::jsonb, p_reverses_id bigint DEFAULT NULL,
    p_idempotency_key text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_leg record;
    v_txn_id bigint;
BEGIN
    FOR v_leg IN
        SELECT d.account_id, sum(d.amount)::bigint AS amount
          FROM unnest(p_account_ids, p_amounts) AS d (account_id, amount)
          JOIN accounts a ON a.id = d.account_id AND a.balance IS NOT NULL
         GROUP BY d.account_id
         ORDER BY d.account_id
    LOOP
        CONTINUE WHEN v_leg.amount = 0;
        UPDATE accounts SET balance = balance + v_leg.amount
         WHERE id = v_leg.account_id AND balance + v_leg.amount >= 0;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'PL100',
                MESSAGE = 'insufficient_points',
                DETAIL = format('%s points needed, %s there', -v_leg.amount,
                                (SELECT balance FROM accounts WHERE id = v_leg.account_id));
        END IF;
    END LOOP;

    INSERT INTO transactions (program_id, kind, member_id, occurred_at, order_id, reason,
                              metadata, reverses_id, idempotency_key)
    VALUES (p_program_id, p_kind, p_member_id, p_occurred_at, p_order_id, p_reason,
            coalesce(p_metadata, '{}'::jsonb), p_reverses_id, p_idempotency_key)
    RETURNING id INTO v_txn_id;

    INSERT INTO entries (transaction_id, leg, program_id, account_id, member_id, asset, amount)
    SELECT v_txn_id, d.leg, p_program_id, d.account_id, a.member_id, a.asset, d.amount
      FROM unnest(p_account_ids, p_amounts) WITH ORDINALITY AS d (account_id, amount, leg)
      LEFT JOIN accounts a ON a.id = d.account_id AND a.program_id = p_program_id;
    RETURN v_txn_id;
END $$;

-- A member's points balance as the API shows it.
CREATE FUNCTION member_points_balance(p_program_id bigint, p_member_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'available', coalesce(sum(balance) FILTER (WHERE kind = 'available'), 0),
        'pending', coalesce(sum(balance) FILTER (WHERE kind = 'pending'), 0),
        'held', coalesce(sum(balance) FILTER (WHERE kind = 'held'), 0))
      FROM accounts
     WHERE program_id = p_program_id AND member_id = p_member_id AND asset = 'points';
$$;

-- The whole of an earn, redeem or adjustment in one call (one round trip, one commit):
-- claim the idempotency key, find (or enrol) the member, move `p_member_delta` points between
-- the member's available account and the program account `p_counter_account_id`, and store
-- the response for replays. `p_points` is the figure echoed back in the response.
CREATE FUNCTION api_move_points(
    p_program_id bigint, p_idempotency_key text, p_fingerprint bytea,
    p_kind text, p_external_id text, p_enroll boolean,
    p_member_delta bigint, p_points bigint, p_counter_account_id bigint,
    p_occurred_at timestamptz, p_order_id text, p_reason text, p_metadata jsonb,
    OUT o_replayed boolean, OUT o_status smallint, OUT o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    v_member_id bigint;
    v_available_id bigint;
    v_txn_id bigint;
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

    SELECT a.id INTO v_available_id FROM accounts a
     WHERE a.program_id = p_program_id AND a.member_id = v_member_id
       AND a.asset = 'points' AND a.kind = 'available';

    v_txn_id := ledger_post(
        p_program_id, p_kind, v_member_id, p_occurred_at,
        ARRAY[v_available_id, p_counter_account_id], ARRAY[p_member_delta, -p_member_delta],
        p_order_id, p_reason, p_metadata, NULL, p_idempotency_key);

    o_body := jsonb_build_object(
        'transaction_id', v_txn_id,
        'member', p_external_id,
        'points', p_points,
        'balance', member_points_balance(p_program_id, v_member_id));
    o_status := 201;
    o_replayed := false;
    PERFORM idempotency_complete(p_program_id, p_idempotency_key, o_status, o_body, v_txn_id);
END $$;

-- Post the exact opposite of a transaction, once. A reversal cannot itself be reversed.
-- The unique reverses_id is the backstop for "once".
CREATE FUNCTION ledger_reverse(
    p_program_id bigint, p_transaction_id bigint, p_reason text, p_idempotency_key text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    original transactions;
    account_ids bigint[];
    amounts bigint[];
BEGIN
    -- The row lock makes concurrent reversals of one transaction queue here, so the second
    -- sees the first and answers already_reversed (not a misleading insufficient_points).
    SELECT * INTO original FROM transactions
     WHERE id = p_transaction_id AND program_id = p_program_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PL103', MESSAGE = 'transaction_not_found';
    END IF;
    IF original.kind = 'reverse' THEN
        RAISE EXCEPTION USING ERRCODE = 'PL105', MESSAGE = 'not_reversible',
            DETAIL = 'a reversal cannot be reversed; post an adjustment instead';
    END IF;
    IF EXISTS (SELECT 1 FROM transactions WHERE reverses_id = p_transaction_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PL104', MESSAGE = 'already_reversed';
    END IF;
    SELECT array_agg(e.account_id ORDER BY e.leg), array_agg(-e.amount ORDER BY e.leg)
      INTO account_ids, amounts
      FROM entries e WHERE e.transaction_id = p_transaction_id;
    RETURN ledger_post(
        p_program_id, 'reverse', original.member_id, now(), account_ids, amounts,
        original.order_id, p_reason, '{}'::jsonb, p_transaction_id, p_idempotency_key);
END $$;
"""

DROP = """
DROP FUNCTION IF EXISTS ledger_reverse(bigint, bigint, text, text);
DROP FUNCTION IF EXISTS api_move_points(bigint, text, bytea, text, text, boolean, bigint, bigint,
    bigint, timestamptz, text, text, jsonb);
DROP FUNCTION IF EXISTS member_points_balance(bigint, bigint);
DROP FUNCTION IF EXISTS ledger_post(bigint, text, bigint, timestamptz, bigint[], bigint[], text,
    text, jsonb, bigint, text);
DROP FUNCTION IF EXISTS member_enroll(bigint, text, date, jsonb);
DROP FUNCTION IF EXISTS idempotency_complete(bigint, text, smallint, jsonb, bigint);
DROP FUNCTION IF EXISTS idempotency_claim(bigint, text, bytea);
DROP TABLE IF EXISTS idempotency_keys, entries, transactions, accounts, members, api_keys,
    programs;
DROP FUNCTION IF EXISTS check_new_entries();
DROP FUNCTION IF EXISTS forbid_mutation();
"""


def upgrade() -> None:
    run_script(TABLES)
    run_script(TRIGGERS)
    run_script(FUNCTIONS)


def downgrade() -> None:
    run_script(DROP)
