-- points-ledger baseline schema: the tables, keys, constraints and indexes.
--
-- Functions, triggers and views are not here: each has one live definition in a .sql file
-- beside the feature that owns it (app/**/sql/*.sql), and the revisions create them from those
-- files (alembic_utils entities).
--
-- Every table carries program_id, and every primary, unique and foreign key includes it, so
-- the ledger distributes by program (Citus: docs/scaling.md). `programs` is the tenant itself.
-- Amounts are bigint; balances stay within +-(2^53 - 1), what every JSON client carries.

CREATE TABLE programs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    currency_exponent smallint NOT NULL CHECK (currency_exponent BETWEEN 0 AND 4),
    -- points per whole currency unit of the `base` rule of a new rule set (exact decimal)
    base_rate         numeric(12, 4) NOT NULL DEFAULT 1 CHECK (base_rate >= 0),
    -- money value of one point, in minor units of `currency` (exact decimal)
    point_value       numeric(18, 6) NOT NULL DEFAULT 1 CHECK (point_value >= 0),
    max_backdate_days integer NOT NULL DEFAULT 30 CHECK (max_backdate_days BETWEEN 0 AND 3650),
    pending_days      integer NOT NULL DEFAULT 0 CHECK (pending_days BETWEEN 0 AND 365),
    hold_ttl_seconds  integer NOT NULL DEFAULT 900 CHECK (hold_ttl_seconds BETWEEN 10 AND 604800),
    return_policy     text NOT NULL DEFAULT 'cap_at_zero'
                          CHECK (return_policy IN ('cap_at_zero', 'allow_negative')),
    member_transfers  boolean NOT NULL DEFAULT false,
    timezone          text NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64),
    multiplier_mode   text NOT NULL DEFAULT 'stack' CHECK (multiplier_mode IN ('stack', 'best')),
    expiry_policy     jsonb NOT NULL DEFAULT '{"kind": "never"}'::jsonb
                          CHECK (jsonb_typeof(expiry_policy) = 'object' AND expiry_policy ? 'kind'),
    tier_program      jsonb CHECK (jsonb_typeof(tier_program) = 'object'),
    referral_policy   jsonb CHECK (jsonb_typeof(referral_policy) = 'object'),
    -- bumped by every change of settings or rules: postings computed under another version
    -- are refused as stale (the in-process program cache is checked against it)
    version           bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    program_id  bigint NOT NULL REFERENCES programs (id),
    id          bigint GENERATED ALWAYS AS IDENTITY,
    prefix      text NOT NULL,
    secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
    scopes      text[] NOT NULL CHECK (
                    cardinality(scopes) > 0
                    AND scopes <@ ARRAY['earn', 'redeem', 'read', 'admin']::text[]),
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    PRIMARY KEY (program_id, id),
    UNIQUE (program_id, prefix),
    UNIQUE (program_id, secret_hash)
);
-- Authentication finds a key by its hash before it knows the program (a SHA-256 of 190 random
-- bits: equal hashes are equal keys).
CREATE INDEX api_keys_by_hash ON api_keys (secret_hash);
CREATE INDEX api_keys_by_prefix ON api_keys (prefix);

-- Every version of a program's earning rules (app.domain.earning.RuleSet as JSON).
CREATE TABLE rule_sets (
    program_id bigint NOT NULL REFERENCES programs (id),
    version    integer NOT NULL CHECK (version >= 1),
    definition jsonb NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, version)
);

-- No foreign key to programs on the hot tables: it would take a KEY SHARE lock on the one
-- program row for every enrolment and posting. Programs are never deleted (trigger).
-- Rows updated by every posting (members, accounts, member_days) leave room in their pages
-- (fillfactor 70): the update of an unindexed column (version, balance) then stays on its
-- page as a HOT update, with no new index entries.
CREATE TABLE members (
    program_id  bigint NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    external_id text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 128),
    birthday    date,
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(attributes) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- The member row is the member's lock: every posting locks it (in ascending id order) and
    -- bumps `version`, which member-dependent earns compare-and-set.
    version     bigint NOT NULL DEFAULT 0,
    -- the earliest instant lazy maintenance has work (a lot or hold expiry, a pending release,
    -- the inactivity deadline); NULL or later than now(): nothing to do
    due_at      timestamptz,
    -- under the inactivity expiry policy, when all of the member's points lapse
    inactive_at timestamptz,
    PRIMARY KEY (program_id, id),
    UNIQUE (program_id, external_id)
) WITH (fillfactor = 70);
-- the worker's way to the members whose points lapse for inactivity (set only under that policy)
CREATE INDEX members_inactive ON members (program_id, inactive_at) WHERE inactive_at IS NOT NULL;

-- One row per ledger account. Member accounts (available / pending / held / debt, per asset)
-- carry `balance`, the running-balance projection. Program accounts (issuance, redemption,
-- breakage) carry none: every posting touches them, and a locked counter would serialise the
-- program. Their balance is the sum of their entries.
CREATE TABLE accounts (
    program_id bigint NOT NULL,
    id         bigint GENERATED ALWAYS AS IDENTITY,
    member_id  bigint,
    asset      text NOT NULL CHECK (asset IN ('points', 'qualifying')),
    kind       text NOT NULL CHECK (kind IN (
                   'available', 'pending', 'held', 'debt', 'issuance', 'redemption', 'breakage')),
    balance    bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, id),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id),
    CONSTRAINT member_accounts_have_balance CHECK (
        (member_id IS NOT NULL) = (kind IN ('available', 'pending', 'held', 'debt'))
        AND (member_id IS NOT NULL) = (balance IS NOT NULL)),
    -- Invariant 3, no overdraft: the backstop of the posting functions' own checks.
    CONSTRAINT no_overdraft CHECK (kind = 'debt' OR balance >= 0),
    CONSTRAINT debt_is_owed CHECK (kind <> 'debt' OR balance <= 0),
    CONSTRAINT balance_in_json_range CHECK (balance BETWEEN -9007199254740991 AND 9007199254740991),
    CONSTRAINT one_account_per_kind UNIQUE NULLS NOT DISTINCT (program_id, member_id, asset, kind)
) WITH (fillfactor = 70);

-- One business event posted to the ledger. Within one engine call ids are drawn in posting
-- order; across calls they are not in commit order (each connection caches a range of ids),
-- so nothing may read "smaller id" as "earlier" across calls.
CREATE TABLE transactions (
    program_id      bigint NOT NULL,
    -- the engine draws a batch's ids at once: each connection caches 100 (gaps are fine)
    id              bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 100),
    kind            text NOT NULL CHECK (kind IN (
                        'earn', 'redeem', 'expire', 'referral', 'adjust', 'reverse', 'hold',
                        'capture', 'release', 'transfer', 'stamp', 'refund', 'cancel',
                        'settle')),
    member_id       bigint,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    order_id        text CHECK (length(order_id) BETWEEN 1 AND 128),
    reason          text CHECK (length(reason) <= 500),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
    reverses_id     bigint,
    idempotency_key text,
    store_id        text CHECK (length(store_id) BETWEEN 1 AND 64),
    terminal_id     text CHECK (length(terminal_id) BETWEEN 1 AND 64),
    hold_id         bigint,
    PRIMARY KEY (program_id, id),
    UNIQUE (program_id, reverses_id),
    FOREIGN KEY (program_id, reverses_id) REFERENCES transactions (program_id, id)
);
CREATE INDEX transactions_by_order ON transactions (program_id, order_id)
    WHERE order_id IS NOT NULL;
CREATE INDEX transactions_by_hold ON transactions (program_id, hold_id) WHERE hold_id IS NOT NULL;
-- Postings the service makes on its own (expiry of a lot, a referral bonus) carry a key of
-- their own, unique per program: two workers cannot both expire a lot.
CREATE UNIQUE INDEX transactions_system_key ON transactions (program_id, idempotency_key)
    WHERE kind IN ('expire', 'referral');

-- One leg of a transaction. member_id and asset repeat the account's (checked by trigger), so
-- a member's history is one index range scan. No foreign keys: the statement trigger
-- `entries_checked` checks every leg against its account and transaction, set-based.
CREATE TABLE entries (
    program_id     bigint NOT NULL,
    transaction_id bigint NOT NULL,
    leg            smallint NOT NULL CHECK (leg > 0),
    account_id     bigint NOT NULL,
    member_id      bigint,
    asset          text NOT NULL,
    amount         bigint NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (program_id, transaction_id, leg)
);
CREATE INDEX entries_member_history ON entries (program_id, member_id, transaction_id DESC)
    WHERE member_id IS NOT NULL;

-- The answer to every write that reached the ledger, under its idempotency key: postings and
-- refusals alike (`status_code` NULL and `response` {code, detail} for a refusal).
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

-- An order as the ledger knows it: what it earned, what was redeemed on it, what was refunded.
CREATE TABLE orders (
    program_id            bigint NOT NULL,
    order_id              text NOT NULL,
    member_id             bigint NOT NULL,
    currency              text,
    amount                bigint CHECK (amount >= 0),
    earned_points         bigint NOT NULL DEFAULT 0 CHECK (earned_points >= 0),
    earned_qualifying     bigint NOT NULL DEFAULT 0 CHECK (earned_qualifying >= 0),
    earn_transaction_id   bigint,
    refunded_amount       bigint NOT NULL DEFAULT 0,
    points_taken_back     bigint NOT NULL DEFAULT 0 CHECK (points_taken_back >= 0),
    points_written_off    bigint NOT NULL DEFAULT 0 CHECK (points_written_off >= 0),
    qualifying_taken_back bigint NOT NULL DEFAULT 0 CHECK (qualifying_taken_back >= 0),
    redeemed_points       bigint NOT NULL DEFAULT 0 CHECK (redeemed_points >= 0),
    redeemed_returned     bigint NOT NULL DEFAULT 0 CHECK (redeemed_returned >= 0),
    cancelled_at          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, order_id),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id),
    CONSTRAINT refunds_within_order CHECK (refunded_amount BETWEEN 0 AND coalesce(amount, 0)),
    CONSTRAINT take_back_within_earned
        CHECK (points_taken_back + points_written_off <= earned_points),
    CONSTRAINT qualifying_taken_within_earned CHECK (qualifying_taken_back <= earned_qualifying),
    CONSTRAINT returned_within_redeemed CHECK (redeemed_returned <= redeemed_points)
);
-- "has this member ever earned on an order" (first-purchase bonuses)
CREATE INDEX orders_by_member ON orders (program_id, member_id) WHERE amount IS NOT NULL;

-- Points earned inside the return window: pending until release_at, then a lot of available
-- points earned at `earned_at` (the order's business time) lapsing at `lot_expires_at`
-- (decided by the expiry policy when the order earned).
CREATE TABLE pending_lots (
    program_id          bigint NOT NULL,
    id                  bigint GENERATED ALWAYS AS IDENTITY,
    member_id           bigint NOT NULL,
    order_id            text,
    earn_transaction_id bigint NOT NULL,
    points              bigint NOT NULL CHECK (points > 0),
    remaining           bigint NOT NULL CHECK (remaining BETWEEN 0 AND points),
    release_at          timestamptz NOT NULL,
    earned_at           timestamptz NOT NULL,
    lot_expires_at      timestamptz,
    PRIMARY KEY (program_id, id),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id)
);
CREATE INDEX pending_lots_open_by_member ON pending_lots (program_id, member_id, release_at)
    WHERE remaining > 0;
CREATE INDEX pending_lots_due ON pending_lots (program_id, release_at) WHERE remaining > 0;
CREATE INDEX pending_lots_by_order ON pending_lots (program_id, order_id)
    WHERE order_id IS NOT NULL;

-- Points reserved at checkout: captured (fully or partly), released, or expired.
CREATE TABLE holds (
    program_id      bigint NOT NULL,
    id              bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 100),
    member_id       bigint NOT NULL,
    points          bigint NOT NULL CHECK (points > 0),
    captured_points bigint NOT NULL DEFAULT 0 CHECK (captured_points BETWEEN 0 AND points),
    status          text NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'captured', 'released', 'expired')),
    order_id        text CHECK (length(order_id) BETWEEN 1 AND 128),
    expires_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    PRIMARY KEY (program_id, id),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id)
);
CREATE INDEX holds_open_by_member ON holds (program_id, member_id, expires_at)
    WHERE status = 'open';
CREATE INDEX holds_open_due ON holds (program_id, expires_at) WHERE status = 'open';

-- A lot: the points of one credit to a member's available points, with their own expiry.
-- The sum of a member's `remaining` is the member's available balance (checked by verify).
CREATE TABLE lots (
    program_id     bigint NOT NULL,
    id             bigint GENERATED BY DEFAULT AS IDENTITY (CACHE 100),
    member_id      bigint NOT NULL,
    transaction_id bigint NOT NULL,  -- the credit that made it
    order_id       text,             -- the order whose earn made it (refunds take these first)
    earned_at      timestamptz NOT NULL,
    expires_at     timestamptz,      -- NULL: no date of its own (never, or inactivity)
    points         bigint NOT NULL CHECK (points > 0),
    remaining      bigint NOT NULL CHECK (remaining BETWEEN 0 AND points),
    PRIMARY KEY (program_id, id)
);
-- the spending order of a member's open lots: FIFO by expiry
CREATE INDEX lots_open_by_member ON lots (program_id, member_id, expires_at, earned_at, id)
    WHERE remaining > 0;
CREATE INDEX lots_due ON lots (program_id, expires_at)
    WHERE remaining > 0 AND expires_at IS NOT NULL;

-- What a transaction took from (negative) or gave back to (positive) a lot. Append-only.
CREATE TABLE lot_movements (
    program_id     bigint NOT NULL,
    transaction_id bigint NOT NULL,
    lot_id         bigint NOT NULL,
    points         bigint NOT NULL CHECK (points <> 0),
    PRIMARY KEY (program_id, transaction_id, lot_id)
);

-- A member's ledger activity per local day of the program: what earns gave (daily caps) and
-- the net qualifying credit (tiers), so neither reads grow with the number of earns.
-- `qualifying_changed_at` / `qualifying_taken_back_at`: when that day's qualifying credit
-- last changed / last went down (a tier status stored before a late posting dated that day
-- is evaluated again; see app/tiers).
CREATE TABLE member_days (
    program_id               bigint NOT NULL,
    member_id                bigint NOT NULL,
    day                      date NOT NULL,
    earned                   bigint NOT NULL DEFAULT 0,
    qualifying               bigint NOT NULL DEFAULT 0,
    qualifying_changed_at    timestamptz,
    qualifying_taken_back_at timestamptz,
    PRIMARY KEY (program_id, member_id, day),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id)
) WITH (fillfactor = 70);

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
    PRIMARY KEY (program_id, member_id, rule_id, period),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id)
);

-- Tier status, a projection evaluated by app.domain.tiers (TierStatus as JSON).
CREATE TABLE member_tiers (
    program_id   bigint NOT NULL,
    member_id    bigint NOT NULL,
    tier         text NOT NULL,
    status       jsonb NOT NULL CHECK (jsonb_typeof(status) = 'object'),
    evaluated_on date NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, member_id),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id)
);

-- Paid memberships: a tier for a fixed term regardless of qualification.
CREATE TABLE memberships (
    program_id  bigint NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    member_id   bigint NOT NULL,
    tier        text NOT NULL CHECK (length(tier) BETWEEN 1 AND 64),
    starts_on   date NOT NULL,
    ends_on     date NOT NULL,
    payment_ref text CHECK (length(payment_ref) BETWEEN 1 AND 128),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_on >= starts_on),
    PRIMARY KEY (program_id, id),
    FOREIGN KEY (program_id, member_id) REFERENCES members (program_id, id)
);
CREATE INDEX memberships_by_member ON memberships (program_id, member_id, starts_on);

CREATE TABLE referrals (
    program_id              bigint NOT NULL,
    id                      bigint GENERATED ALWAYS AS IDENTITY,
    referrer_id             bigint NOT NULL,
    referee_id              bigint NOT NULL,
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
    PRIMARY KEY (program_id, id),
    UNIQUE (program_id, referee_id),  -- one referrer per member
    FOREIGN KEY (program_id, referrer_id) REFERENCES members (program_id, id),
    FOREIGN KEY (program_id, referee_id) REFERENCES members (program_id, id)
);
CREATE INDEX referrals_rewarded_by_referrer ON referrals (program_id, referrer_id, order_occurred_at)
    WHERE status IN ('rewarded', 'clawed_back');
CREATE INDEX referrals_by_referrer ON referrals (program_id, referrer_id, id);
CREATE INDEX referrals_by_order ON referrals (program_id, order_id) WHERE order_id IS NOT NULL;
