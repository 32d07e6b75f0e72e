-- The posting engine: post N events (earn, redeem, adjust, hold) of one program in a fixed
-- number of statements, whatever N is. One request is N = 1; a group-committed flush, a POS
-- batch or an import is N = up to a few thousand.
--
-- Python decided the policy of every event (how many points, pending until when, when the new
-- lot lapses, the qualifying credit, the local day, the rules' awards and the member's tier)
-- and passes it in parallel arrays, one element per event, in the order the events happened.
-- This function enforces the invariants and posts:
--
--   1. the program's settings version: events computed under other settings are stale;
--   2. the stored answers of the events' idempotency keys (one read): a key already answered
--      replays its answer, or is an idempotency_conflict when the request differs;
--   3. the members, enrolling the new ones an earn names (one INSERT for all);
--   4. lock and load the members (ledger_lock_members: rows locked in ascending id order,
--      due maintenance first) and the orders the events name (locked, in order id order);
--   5. decide each event in order, in memory, with no statement per event: member known,
--      compare-and-set on the member's version (member-dependent earns), order rules (an
--      order earns once, belongs to one member, is not cancelled), no overdraft, balances
--      within +-(2^53 - 1), debt repaid first, pending points inside the return window;
--   6. write everything at once (ledger_write: transactions, entries, balances, lots, member
--      state; then pending lots, holds, orders, rule awards, tiers and the answers).
--
-- A refused event is refused alone; the others post. Its refusal is an answer like any other
-- and is kept under its key (insufficient_points stays insufficient_points forever). Nothing
-- is kept for `conflict` (idempotency_conflict) and `stale` (re-evaluate and post again).
-- A race this cannot settle in memory -- a concurrent request claiming the same key or
-- earning the same new order between our read and our write -- fails the whole call on a
-- primary key (unique_violation, 23505): the caller retries it, and then sees the winner.
-- `p_versioned`: the program's earns depend on the member (tiers, once-only bonuses, caps),
-- so every posting bumps the member's version for their compare-and-set.
--
-- Returns one row per event, in order: outcome (posted, replayed, refused, conflict, stale),
-- the stored status (NULL for a refusal) and body, the member's id and its version after it.
CREATE FUNCTION public.ledger_post_events(
    p_program_id bigint, p_program_version bigint, p_versioned boolean,
    p_key text[], p_fingerprint bytea[], p_kind text[], p_member text[], p_enroll boolean[],
    p_expected_version bigint[], p_points bigint[], p_occurred_at timestamptz[],
    p_order_id text[], p_order_amount bigint[], p_order_currency text[],
    p_pending_until timestamptz[], p_lot_expires_at timestamptz[], p_inactive_at timestamptz[],
    p_qualifying bigint[], p_day date[], p_reason text[], p_metadata jsonb[],
    p_store_id text[], p_terminal_id text[], p_hold_expires_at timestamptz[],
    p_awards jsonb[], p_tier jsonb[], p_answer jsonb[])
RETURNS TABLE (o_outcome text, o_status smallint, o_body jsonb, o_member_id bigint,
               o_version bigint)
LANGUAGE plpgsql
-- index scans whatever the table statistics say (a fresh or a huge table alike)
SET enable_seqscan = off AS $$
DECLARE
    max_amount constant bigint := 9007199254740991;  -- 2^53 - 1
    n integer := coalesce(cardinality(p_key), 0);
    now_ timestamptz := now();
    prog record;
    -- per event
    e_outcome text[];
    e_status smallint[];
    e_body jsonb[];
    e_member bigint[];
    e_version bigint[];
    e_slot integer[];
    e_order integer[];
    e_first integer[];
    k_found boolean[];
    k_print bytea[];
    k_status smallint[];
    k_body jsonb[];
    -- per member (slot), ascending id
    m_id bigint[];
    m_ext text[];
    m_version bigint[];
    m_avail_id bigint[];
    m_avail bigint[];
    m_pend_id bigint[];
    m_pend bigint[];
    m_held_id bigint[];
    m_held bigint[];
    m_debt_id bigint[];
    m_debt bigint[];
    m_qual_id bigint[];
    m_qual bigint[];
    m_postings integer[];
    m_open boolean[];  -- known before this call, or enrolled by one of its earns so far
    new_ext text[];
    m_due timestamptz[];
    m_inactive timestamptz[];
    m_tier jsonb[];
    n_members integer;
    -- per order (slot), ascending order id
    o_id text[];
    o_exists boolean[];
    o_member bigint[];
    o_currency text[];
    o_amount bigint[];
    o_earned bigint[];
    o_earned_q bigint[];
    o_earn_txn bigint[];
    o_redeemed bigint[];
    o_cancelled boolean[];
    o_changed boolean[];
    -- what to write
    txn_ids bigint[];
    hold_ids bigint[];
    n_txn integer := 0;
    n_holds integer := 0;
    t_id bigint[] := '{}';
    t_kind text[] := '{}';
    t_member bigint[] := '{}';
    t_event integer[] := '{}';
    t_hold bigint[] := '{}';
    g_txn bigint[] := '{}';
    g_account bigint[] := '{}';
    g_member bigint[] := '{}';
    g_asset text[] := '{}';
    g_amount bigint[] := '{}';
    n_legs integer := 0;
    l_txn bigint[] := '{}';
    l_member bigint[] := '{}';
    l_order text[] := '{}';
    l_earned_at timestamptz[] := '{}';
    l_expires_at timestamptz[] := '{}';
    l_points bigint[] := '{}';
    n_lots integer := 0;
    d_txn bigint[] := '{}';
    d_member bigint[] := '{}';
    d_points bigint[] := '{}';
    n_takes integer := 0;
    pl_txn bigint[] := '{}';
    pl_member bigint[] := '{}';
    pl_order text[] := '{}';
    pl_points bigint[] := '{}';
    pl_release timestamptz[] := '{}';
    pl_earned_at timestamptz[] := '{}';
    pl_expires timestamptz[] := '{}';
    n_pending integer := 0;
    y_member bigint[] := '{}';
    y_day date[] := '{}';
    y_earned bigint[] := '{}';
    y_qualifying bigint[] := '{}';
    n_days integer := 0;
    h_id bigint[] := '{}';
    h_member bigint[] := '{}';
    h_points bigint[] := '{}';
    h_order text[] := '{}';
    h_expires timestamptz[] := '{}';
    -- loop
    i integer;
    s integer;
    os integer;
    pts bigint;
    q bigint;
    repay bigint;
    txn bigint;
    hold bigint;
    counter bigint;
    refusal text;
    detail text;
    pass integer;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    e_outcome := array_fill(NULL::text, ARRAY[n]);
    e_status := array_fill(NULL::smallint, ARRAY[n]);
    e_body := array_fill(NULL::jsonb, ARRAY[n]);
    e_version := array_fill(NULL::bigint, ARRAY[n]);

    -- 1. the program: its settings version and its accounts
    SELECT p.version,
           (SELECT a.id FROM public.accounts a WHERE a.program_id = p.id AND a.member_id IS NULL
               AND a.asset = 'points' AND a.kind = 'issuance') AS issuance,
           (SELECT a.id FROM public.accounts a WHERE a.program_id = p.id AND a.member_id IS NULL
               AND a.asset = 'points' AND a.kind = 'redemption') AS redemption,
           (SELECT a.id FROM public.accounts a WHERE a.program_id = p.id AND a.member_id IS NULL
               AND a.asset = 'qualifying' AND a.kind = 'issuance') AS qualifying_issuance
      INTO prog
      FROM public.programs p WHERE p.id = p_program_id;
    IF prog.version IS DISTINCT FROM p_program_version THEN
        RETURN QUERY SELECT 'stale'::text, NULL::smallint, NULL::jsonb, NULL::bigint,
                            NULL::bigint
                       FROM generate_series(1, n);
        RETURN;
    END IF;

    -- 2. the keys' stored answers (an index probe per key), and each event's first event
    -- with its key
    SELECT array_agg(s.key IS NOT NULL ORDER BY u.i), array_agg(s.fingerprint ORDER BY u.i),
           array_agg(s.status_code ORDER BY u.i), array_agg(s.response ORDER BY u.i),
           array_agg(u.first ORDER BY u.i)
      INTO k_found, k_print, k_status, k_body, e_first
      FROM (SELECT x.key, x.i, min(x.i) OVER (PARTITION BY x.key)::integer AS first
              FROM unnest(p_key) WITH ORDINALITY AS x (key, i)) u
      LEFT JOIN LATERAL (SELECT y.key, y.fingerprint, y.status_code, y.response
                           FROM public.idempotency_keys y
                          WHERE y.program_id = p_program_id AND y.key = u.key
                          LIMIT 1) s ON true;  -- LIMIT: a probe, never flattened into a join

    -- 3. and 4. lock and load the members the events name (by external id, in ascending
    -- id order, due maintenance first); an earn enrols a member it names for the first time
    -- (then locked too), with its accounts (trigger members_open_accounts)
    FOR pass IN 1 .. 2 LOOP
        SELECT array_agg(s.o_member_id ORDER BY s.o_member_id),
               array_agg(s.o_external_id ORDER BY s.o_member_id),
               array_agg(s.o_version ORDER BY s.o_member_id),
               array_agg(s.o_available_id ORDER BY s.o_member_id),
               array_agg(s.o_available ORDER BY s.o_member_id),
               array_agg(s.o_pending_id ORDER BY s.o_member_id),
               array_agg(s.o_pending ORDER BY s.o_member_id),
               array_agg(s.o_held_id ORDER BY s.o_member_id),
               array_agg(s.o_held ORDER BY s.o_member_id),
               array_agg(s.o_debt_id ORDER BY s.o_member_id),
               array_agg(s.o_debt ORDER BY s.o_member_id),
               array_agg(s.o_qualifying_id ORDER BY s.o_member_id),
               array_agg(s.o_qualifying ORDER BY s.o_member_id)
          INTO m_id, m_ext, m_version, m_avail_id, m_avail, m_pend_id, m_pend, m_held_id,
               m_held, m_debt_id, m_debt, m_qual_id, m_qual
          FROM public.ledger_lock_members(
                   p_program_id, NULL,
                   ARRAY(SELECT DISTINCT u.external_id
                           FROM unnest(p_member, k_found) AS u (external_id, found)
                          WHERE NOT u.found)) s;
        SELECT array_agg(s.slot::integer ORDER BY u.i), array_agg(m_id[s.slot] ORDER BY u.i)
          INTO e_slot, e_member
          FROM unnest(p_member) WITH ORDINALITY AS u (external_id, i)
          LEFT JOIN unnest(m_ext) WITH ORDINALITY AS s (external_id, slot)
                 ON s.external_id = u.external_id;
        EXIT WHEN pass = 2 OR NOT EXISTS (
            SELECT 1 FROM unnest(e_slot, p_enroll, k_found) AS u (slot, enroll, found)
             WHERE u.slot IS NULL AND u.enroll AND NOT u.found);
        -- in external id order: concurrent enrolments of the same members queue, never
        -- deadlock; a member enrolled meanwhile by another request is found by the next pass
        new_ext := ARRAY(SELECT DISTINCT u.external_id
                           FROM unnest(p_member, e_slot, p_enroll, k_found)
                                AS u (external_id, slot, enroll, found)
                          WHERE u.slot IS NULL AND u.enroll AND NOT u.found
                          ORDER BY u.external_id);
        INSERT INTO public.members (program_id, external_id)
        SELECT p_program_id, x FROM unnest(new_ext) AS x
            ON CONFLICT (program_id, external_id) DO NOTHING;
    END LOOP;
    n_members := coalesce(cardinality(m_id), 0);
    -- a member this call enrols exists, for the events before its first earn, not yet: a
    -- redeem a till sent before the sale that enrolled the member is member_not_found
    m_open := ARRAY(SELECT NOT coalesce(x = ANY (new_ext), false)
                      FROM unnest(m_ext) WITH ORDINALITY AS u (x, slot) ORDER BY u.slot);
    m_postings := array_fill(0, ARRAY[n_members]);
    m_due := array_fill(NULL::timestamptz, ARRAY[n_members]);
    m_inactive := array_fill(NULL::timestamptz, ARRAY[n_members]);
    m_tier := array_fill(NULL::jsonb, ARRAY[n_members]);

    SELECT array_agg(d.order_id ORDER BY d.order_id),
           array_agg(o.order_id IS NOT NULL ORDER BY d.order_id),
           array_agg(o.member_id ORDER BY d.order_id),
           array_agg(o.currency ORDER BY d.order_id),
           array_agg(o.amount ORDER BY d.order_id),
           array_agg(o.earned_points ORDER BY d.order_id),
           array_agg(o.earned_qualifying ORDER BY d.order_id),
           array_agg(o.earn_transaction_id ORDER BY d.order_id),
           array_agg(coalesce(o.redeemed_points, 0) ORDER BY d.order_id),
           array_agg(o.cancelled_at IS NOT NULL ORDER BY d.order_id),
           array_agg(false ORDER BY d.order_id)
      INTO o_id, o_exists, o_member, o_currency, o_amount, o_earned, o_earned_q, o_earn_txn,
           o_redeemed, o_cancelled, o_changed
      FROM (SELECT DISTINCT u.order_id
              FROM unnest(p_order_id, p_kind, k_found) AS u (order_id, kind, found)
             WHERE u.order_id IS NOT NULL AND u.kind IN ('earn', 'redeem') AND NOT u.found
             ORDER BY u.order_id) d
      -- locked one by one in order id order (the nested loop follows its sorted outer side)
      LEFT JOIN LATERAL (SELECT x.* FROM public.orders x
                          WHERE x.program_id = p_program_id AND x.order_id = d.order_id
                            FOR UPDATE) o ON true;
    SELECT array_agg(s.slot::integer ORDER BY u.i) INTO e_order
      FROM unnest(p_order_id, p_kind) WITH ORDINALITY AS u (order_id, kind, i)
      LEFT JOIN unnest(o_id) WITH ORDINALITY AS s (order_id, slot)
             ON s.order_id = u.order_id AND u.kind IN ('earn', 'redeem');

    -- ids in posting order, drawn before anything is written
    SELECT array_agg(nextval(pg_get_serial_sequence('public.transactions', 'id')))
      INTO txn_ids FROM generate_series(1, n);
    IF 'hold' = ANY (p_kind) THEN
        SELECT array_agg(nextval(pg_get_serial_sequence('public.holds', 'id')))
          INTO hold_ids FROM unnest(p_kind) AS k WHERE k = 'hold';
    END IF;

    -- 5. decide, in order, in memory
    FOR i IN 1 .. n LOOP
        IF k_found[i] THEN
            IF k_print[i] = p_fingerprint[i] THEN
                e_outcome[i] := 'replayed';
                e_status[i] := k_status[i];
                e_body[i] := k_body[i];
            ELSE
                e_outcome[i] := 'conflict';
            END IF;
            CONTINUE;
        END IF;
        CONTINUE WHEN e_first[i] <> i;  -- the same key earlier in this call: see below
        s := e_slot[i];
        IF s IS NOT NULL AND NOT m_open[s] THEN
            IF p_enroll[i] THEN
                m_open[s] := true;
            ELSE
                s := NULL;
            END IF;
        END IF;
        os := e_order[i];
        pts := p_points[i];
        q := coalesce(p_qualifying[i], 0);
        refusal := NULL;
        IF s IS NULL THEN
            refusal := 'member_not_found';
            detail := format('no member %L in this program', p_member[i]);
        ELSIF p_expected_version[i] IS NOT NULL AND p_expected_version[i] <> m_version[s] THEN
            e_outcome[i] := 'stale';
            CONTINUE;
        ELSIF os IS NOT NULL AND o_member[os] IS NOT NULL AND o_member[os] <> m_id[s] THEN
            refusal := 'order_member_mismatch';
            detail := format('order %L belongs to another member', p_order_id[i]);
        ELSIF os IS NOT NULL AND o_cancelled[os] THEN
            refusal := 'order_cancelled';
            detail := format('order %L was cancelled', p_order_id[i]);
        ELSIF os IS NOT NULL AND p_kind[i] = 'earn' AND o_amount[os] IS NOT NULL THEN
            refusal := 'order_already_earned';
            detail := format('order %L has already earned points', p_order_id[i]);
        ELSIF pts < 0 AND m_avail[s] + pts < 0 THEN
            refusal := 'insufficient_points';
            detail := format('%s points needed, %s there', -pts, m_avail[s]);
        ELSIF pts > 0 AND (m_avail[s] > max_amount - pts OR m_pend[s] > max_amount - pts
                           OR m_qual[s] > max_amount - q) THEN
            refusal := 'amount_out_of_range';
            detail := format('the balance would exceed %s', max_amount);
        END IF;
        IF refusal IS NOT NULL THEN
            e_outcome[i] := 'refused';
            e_body[i] := jsonb_build_object('code', refusal, 'detail', detail);
            CONTINUE;
        END IF;

        n_txn := n_txn + 1;
        txn := txn_ids[n_txn];
        t_id[n_txn] := txn;
        t_kind[n_txn] := p_kind[i];
        t_member[n_txn] := m_id[s];
        t_event[n_txn] := i;
        hold := NULL;
        IF p_kind[i] = 'hold' THEN
            n_holds := n_holds + 1;
            hold := hold_ids[n_holds];
            h_id[n_holds] := hold;
            h_member[n_holds] := m_id[s];
            h_points[n_holds] := -pts;
            h_order[n_holds] := p_order_id[i];
            h_expires[n_holds] := p_hold_expires_at[i];
            m_due[s] := least(m_due[s], p_hold_expires_at[i]);
        END IF;
        t_hold[n_txn] := hold;

        -- the member's side
        IF pts > 0 AND p_kind[i] = 'earn' AND p_pending_until[i] > now_ THEN
            -- inside the return window: pending, released by maintenance at pending_until
            n_legs := n_legs + 1;
            g_txn[n_legs] := txn;
            g_account[n_legs] := m_pend_id[s];
            g_member[n_legs] := m_id[s];
            g_asset[n_legs] := 'points';
            g_amount[n_legs] := pts;
            m_pend[s] := m_pend[s] + pts;
            n_pending := n_pending + 1;
            pl_txn[n_pending] := txn;
            pl_member[n_pending] := m_id[s];
            pl_order[n_pending] := p_order_id[i];
            pl_points[n_pending] := pts;
            pl_release[n_pending] := p_pending_until[i];
            pl_earned_at[n_pending] := p_occurred_at[i];
            pl_expires[n_pending] := p_lot_expires_at[i];
            m_due[s] := least(m_due[s], p_pending_until[i]);
        ELSIF pts > 0 THEN
            -- a credit repays the member's debt first; the rest is a new lot
            repay := least(greatest(-m_debt[s], 0), pts);
            IF pts - repay > 0 THEN
                n_legs := n_legs + 1;
                g_txn[n_legs] := txn;
                g_account[n_legs] := m_avail_id[s];
                g_member[n_legs] := m_id[s];
                g_asset[n_legs] := 'points';
                g_amount[n_legs] := pts - repay;
                m_avail[s] := m_avail[s] + pts - repay;
                n_lots := n_lots + 1;
                l_txn[n_lots] := txn;
                l_member[n_lots] := m_id[s];
                l_order[n_lots] := CASE WHEN p_kind[i] = 'earn' THEN p_order_id[i] END;
                l_earned_at[n_lots] := p_occurred_at[i];
                l_expires_at[n_lots] := p_lot_expires_at[i];
                l_points[n_lots] := pts - repay;
            END IF;
            IF repay > 0 THEN
                n_legs := n_legs + 1;
                g_txn[n_legs] := txn;
                g_account[n_legs] := m_debt_id[s];
                g_member[n_legs] := m_id[s];
                g_asset[n_legs] := 'points';
                g_amount[n_legs] := repay;
                m_debt[s] := m_debt[s] + repay;
            END IF;
        ELSIF pts < 0 THEN
            n_legs := n_legs + 1;
            g_txn[n_legs] := txn;
            g_account[n_legs] := m_avail_id[s];
            g_member[n_legs] := m_id[s];
            g_asset[n_legs] := 'points';
            g_amount[n_legs] := pts;
            m_avail[s] := m_avail[s] + pts;
            n_takes := n_takes + 1;
            d_txn[n_takes] := txn;
            d_member[n_takes] := m_id[s];
            d_points[n_takes] := -pts;
        END IF;
        -- the other side: a program account, or the member's held points for a hold
        n_legs := n_legs + 1;
        g_txn[n_legs] := txn;
        g_asset[n_legs] := 'points';
        g_amount[n_legs] := -pts;
        IF p_kind[i] = 'hold' THEN
            g_account[n_legs] := m_held_id[s];
            g_member[n_legs] := m_id[s];
            m_held[s] := m_held[s] - pts;
        ELSE
            g_account[n_legs] := CASE WHEN p_kind[i] = 'redeem' THEN prog.redemption
                                      ELSE prog.issuance END;
            g_member[n_legs] := NULL;
        END IF;
        -- the qualifying credit of the tier metric
        IF q <> 0 AND p_kind[i] = 'earn' THEN
            n_legs := n_legs + 1;
            g_txn[n_legs] := txn;
            g_account[n_legs] := m_qual_id[s];
            g_member[n_legs] := m_id[s];
            g_asset[n_legs] := 'qualifying';
            g_amount[n_legs] := q;
            n_legs := n_legs + 1;
            g_txn[n_legs] := txn;
            g_account[n_legs] := prog.qualifying_issuance;
            g_member[n_legs] := NULL;
            g_asset[n_legs] := 'qualifying';
            g_amount[n_legs] := -q;
            m_qual[s] := m_qual[s] + q;
        END IF;
        -- what the day's orders earned (daily caps) and its qualifying credit (tiers)
        IF p_day[i] IS NOT NULL THEN
            n_days := n_days + 1;
            y_member[n_days] := m_id[s];
            y_day[n_days] := p_day[i];
            -- daily caps count what the day's orders earned (an earn without an order, such as
            -- goodwill points, does not use up the member's cap)
            y_earned[n_days] := CASE WHEN p_kind[i] = 'earn' AND p_order_id[i] IS NOT NULL
                                     THEN pts ELSE 0 END;
            y_qualifying[n_days] := CASE WHEN p_kind[i] = 'earn' THEN q ELSE 0 END;
        END IF;

        IF os IS NOT NULL AND p_kind[i] = 'earn' THEN
            o_member[os] := m_id[s];
            o_currency[os] := p_order_currency[i];
            o_amount[os] := p_order_amount[i];
            o_earned[os] := pts;
            o_earned_q[os] := q;
            o_earn_txn[os] := txn;
            o_changed[os] := true;
        ELSIF os IS NOT NULL AND p_kind[i] = 'redeem' THEN
            o_member[os] := m_id[s];
            o_redeemed[os] := o_redeemed[os] - pts;
            o_changed[os] := true;
        END IF;

        IF p_versioned THEN
            m_version[s] := m_version[s] + 1;
            m_postings[s] := m_postings[s] + 1;
        END IF;
        m_inactive[s] := greatest(m_inactive[s], p_inactive_at[i]);
        IF p_tier[i] IS NOT NULL THEN
            m_tier[s] := p_tier[i];
        END IF;
        e_version[i] := m_version[s];
        e_outcome[i] := 'posted';
        e_status[i] := 201;
        IF p_kind[i] = 'hold' THEN
            e_body[i] := jsonb_build_object(
                'hold_id', hold, 'member', p_member[i], 'points', -pts, 'captured_points', 0,
                'status', 'open', 'order_id', p_order_id[i],
                'expires_at', p_hold_expires_at[i], 'created_at', now_, 'closed_at', NULL,
                'transaction_id', txn);
        ELSE
            e_body[i] := jsonb_build_object(
                'transaction_id', txn, 'member', p_member[i],
                'points', CASE WHEN p_kind[i] = 'redeem' THEN -pts ELSE pts END);
        END IF;
        e_body[i] := e_body[i]
            || jsonb_build_object('balance', jsonb_build_object(
                   'available', m_avail[s] + m_debt[s], 'pending', m_pend[s],
                   'held', m_held[s]))
            || coalesce(p_answer[i], '{}'::jsonb);
    END LOOP;

    -- an event repeating an earlier event's key in this call gets that event's answer
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN k_found[i] OR e_first[i] = i;
        IF p_fingerprint[i] <> p_fingerprint[e_first[i]] THEN
            e_outcome[i] := 'conflict';
        ELSE
            e_outcome[i] := CASE WHEN e_outcome[e_first[i]] IN ('posted', 'refused')
                                 THEN 'replayed' ELSE e_outcome[e_first[i]] END;
            e_status[i] := e_status[e_first[i]];
            e_body[i] := e_body[e_first[i]];
        END IF;
        e_member[i] := e_member[e_first[i]];
        e_version[i] := e_version[e_first[i]];
    END LOOP;

    -- 6. write
    IF n_txn > 0 THEN
        PERFORM public.ledger_write(
            p_program_id,
            t_id, t_kind, t_member,
            ARRAY(SELECT p_occurred_at[x.e] FROM unnest(t_event) WITH ORDINALITY AS x (e, o)
                   ORDER BY x.o),
            ARRAY(SELECT p_order_id[x.e] FROM unnest(t_event) WITH ORDINALITY AS x (e, o)
                   ORDER BY x.o),
            ARRAY(SELECT p_reason[x.e] FROM unnest(t_event) WITH ORDINALITY AS x (e, o)
                   ORDER BY x.o),
            ARRAY(SELECT p_metadata[x.e] FROM unnest(t_event) WITH ORDINALITY AS x (e, o)
                   ORDER BY x.o),
            ARRAY(SELECT p_key[x.e] FROM unnest(t_event) WITH ORDINALITY AS x (e, o)
                   ORDER BY x.o),
            array_fill(NULL::bigint, ARRAY[n_txn]),
            t_hold,
            ARRAY(SELECT p_store_id[x.e] FROM unnest(t_event) WITH ORDINALITY AS x (e, o)
                   ORDER BY x.o),
            ARRAY(SELECT p_terminal_id[x.e] FROM unnest(t_event) WITH ORDINALITY AS x (e, o)
                   ORDER BY x.o),
            g_txn, g_account, g_member, g_asset, g_amount,
            l_txn, l_member, l_order, l_earned_at, l_expires_at, l_points,
            '{}'::bigint[], '{}'::bigint[], '{}'::bigint[], '{}'::bigint[],
            d_txn, d_member, d_points, array_fill(true, ARRAY[n_takes]),
            array_fill(NULL::text, ARRAY[n_takes]), array_fill(NULL::bigint, ARRAY[n_takes]),
            y_member, y_day, y_earned, y_qualifying,
            m_id, m_postings, m_due, m_inactive);

        INSERT INTO public.pending_lots (program_id, member_id, order_id, earn_transaction_id,
                                         points, remaining, release_at, earned_at,
                                         lot_expires_at)
        SELECT p_program_id, x.member, x.order_id, x.txn, x.points, x.points, x.release_at,
               x.earned_at, x.expires_at
          FROM unnest(pl_txn, pl_member, pl_order, pl_points, pl_release, pl_earned_at,
                      pl_expires) AS x (txn, member, order_id, points, release_at, earned_at,
                                        expires_at);

        INSERT INTO public.holds (program_id, id, member_id, points, order_id, expires_at,
                                  created_at)
        SELECT p_program_id, x.id, x.member, x.points, x.order_id, x.expires_at, now_
          FROM unnest(h_id, h_member, h_points, h_order, h_expires)
               AS x (id, member, points, order_id, expires_at);

        -- A new order's id is claimed now: a concurrent earn of the same new order fails this
        -- call on the primary key (unique_violation), and the caller retries it (and then
        -- sees order_already_earned). Existing orders were locked above.
        INSERT INTO public.orders (program_id, order_id, member_id, currency, amount,
                                   earned_points, earned_qualifying, earn_transaction_id,
                                   redeemed_points)
        SELECT p_program_id, x.order_id, x.member, x.currency, x.amount,
               coalesce(x.earned, 0), coalesce(x.earned_q, 0), x.earn_txn, x.redeemed
          FROM unnest(o_id, o_exists, o_changed, o_member, o_currency, o_amount, o_earned,
                      o_earned_q, o_earn_txn, o_redeemed)
               AS x (order_id, found, changed, member, currency, amount, earned, earned_q,
                     earn_txn, redeemed)
         WHERE x.changed AND NOT x.found
         ORDER BY x.order_id;
        UPDATE public.orders o
           SET currency = x.currency, amount = x.amount, earned_points = coalesce(x.earned, 0),
               earned_qualifying = coalesce(x.earned_q, 0), earn_transaction_id = x.earn_txn,
               redeemed_points = x.redeemed
          FROM unnest(o_id, o_exists, o_changed, o_currency, o_amount, o_earned, o_earned_q,
                      o_earn_txn, o_redeemed)
               AS x (order_id, found, changed, currency, amount, earned, earned_q, earn_txn,
                     redeemed)
         WHERE x.changed AND x.found AND o.program_id = p_program_id
           AND o.order_id = x.order_id AND o.order_id = ANY (o_id);

        -- once-only awards and challenge purchases the rules counted (app/points/rules.py)
        IF EXISTS (SELECT 1 FROM unnest(p_awards) AS w WHERE w IS NOT NULL) THEN
            INSERT INTO public.rule_awards AS r (program_id, member_id, rule_id, period,
                                                 purchases, awarded_on, transaction_id)
            SELECT p_program_id, a.member, a.rule_id, a.period, sum(a.purchases)::integer,
                   min(a.awarded_on), min(a.txn) FILTER (WHERE a.awarded_on IS NOT NULL)
              FROM (SELECT t.member, t.id AS txn, w ->> 'rule_id' AS rule_id,
                           w ->> 'period' AS period,
                           coalesce((w ->> 'purchases')::integer, 0) AS purchases,
                           (w ->> 'awarded_on')::date AS awarded_on
                      FROM unnest(t_id, t_member, t_event) AS t (id, member, event)
                     CROSS JOIN LATERAL jsonb_array_elements(
                                    coalesce(p_awards[t.event], '[]'::jsonb)) AS w) a
             GROUP BY a.member, a.rule_id, a.period
                ON CONFLICT (program_id, member_id, rule_id, period) DO UPDATE
               SET purchases = r.purchases + excluded.purchases,
                   awarded_on = coalesce(r.awarded_on, excluded.awarded_on),
                   transaction_id = coalesce(r.transaction_id, excluded.transaction_id);
        END IF;

        -- the tier status the rules evaluated after the member's last posting here
        IF EXISTS (SELECT 1 FROM unnest(m_tier) AS t WHERE t IS NOT NULL) THEN
            INSERT INTO public.member_tiers AS t (program_id, member_id, tier, status,
                                                  evaluated_on)
            SELECT p_program_id, x.member, x.tier ->> 'tier', x.tier -> 'status',
                   (x.tier ->> 'evaluated_on')::date
              FROM unnest(m_id, m_tier) AS x (member, tier)
             WHERE x.tier IS NOT NULL
                ON CONFLICT (program_id, member_id) DO UPDATE
               SET tier = excluded.tier, status = excluded.status,
                   evaluated_on = excluded.evaluated_on, updated_at = now();
        END IF;
    END IF;

    -- The answers, posted and refused, each key once, in key order. A key claimed meanwhile
    -- by a concurrent request fails this call on the primary key (unique_violation): the
    -- caller retries it, and then replays the winner's answer.
    INSERT INTO public.idempotency_keys (program_id, key, fingerprint, status_code, response,
                                         transaction_id)
    SELECT p_program_id, x.key, x.fingerprint, x.status, x.body,
           (x.body ->> 'transaction_id')::bigint
      FROM unnest(p_key, p_fingerprint, e_status, e_body, e_outcome, e_first)
           WITH ORDINALITY AS x (key, fingerprint, status, body, outcome, first, i)
     WHERE x.outcome IN ('posted', 'refused') AND x.first = x.i
     ORDER BY x.key;

    RETURN QUERY
    SELECT * FROM unnest(e_outcome, e_status, e_body, e_member, e_version);
END $$;
