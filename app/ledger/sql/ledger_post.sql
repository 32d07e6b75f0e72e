-- Post one balanced transaction, for the postings that are not the engine's: holds closed,
-- refunds, transfers, reversals, referral bonuses, lazy maintenance. Legs are (account id,
-- signed amount) pairs of the caller's program; the caller holds the locks of the members
-- they move (ledger_lock_members) and has checked their balances. It goes through
-- ledger_write like everything else: the accounts' CHECKs are the backstop, and the lots
-- follow the legs on the members' available points:
--   a credit gives back to the lots that p_give_back_from took (a hold's rest, a reversed
--     debit), or else is a new lot earned at p_lot_earned_at (default: occurred_at) that
--     lapses at p_lot_expires_at (decided by the caller: the program's expiry policy);
--   a debit takes from the lots, preferring those of p_take_order / p_take_own_txn
--     (a refund's order, a reversal's transaction), then FIFO; p_spending debits (redeem,
--     hold, transfer, adjust) never take a lot already due.
-- Qualifying legs count on the local day p_day (member_days). Every member moved gets one
-- more posting in its version (the compare-and-set of member-dependent earns); p_due_at and
-- p_inactive_at are candidates for p_member_id's state. Returns the new transaction's id.
CREATE FUNCTION public.ledger_post(
    p_program_id bigint, p_kind text, p_member_id bigint, p_occurred_at timestamptz,
    p_account_ids bigint[], p_amounts bigint[],
    p_order_id text DEFAULT NULL, p_reason text DEFAULT NULL, p_metadata jsonb DEFAULT NULL,
    p_key text DEFAULT NULL, p_reverses_id bigint DEFAULT NULL, p_hold_id bigint DEFAULT NULL,
    p_day date DEFAULT NULL, p_lot_expires_at timestamptz DEFAULT NULL,
    p_lot_earned_at timestamptz DEFAULT NULL, p_lot_order text DEFAULT NULL,
    p_give_back_from bigint DEFAULT NULL, p_take_order text DEFAULT NULL,
    p_take_own_txn bigint DEFAULT NULL, p_spending boolean DEFAULT false,
    p_due_at timestamptz DEFAULT NULL, p_inactive_at timestamptz DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_txn bigint := nextval(pg_get_serial_sequence('public.transactions', 'id'));
    legs record;
    moved record;
    lot_member bigint[] := '{}';
    lot_points bigint[] := '{}';
    back_member bigint[] := '{}';
    back_points bigint[] := '{}';
    take_member bigint[] := '{}';
    take_points bigint[] := '{}';
    state_member bigint[];
BEGIN
    -- each leg's account owner and asset, in leg order
    SELECT array_agg(a.member_id ORDER BY g.i) AS member, array_agg(a.asset ORDER BY g.i) AS asset
      INTO legs
      FROM unnest(p_account_ids) WITH ORDINALITY AS g (account, i)
      JOIN public.accounts a ON a.program_id = p_program_id AND a.id = g.account
     WHERE a.id = ANY (p_account_ids);
    FOR moved IN
        SELECT a.member_id, sum(g.amount)::bigint AS amount
          FROM unnest(p_account_ids, p_amounts) AS g (account, amount)
          JOIN public.accounts a ON a.program_id = p_program_id AND a.id = g.account
         WHERE a.id = ANY (p_account_ids) AND a.asset = 'points' AND a.kind = 'available'
         GROUP BY a.member_id
         ORDER BY a.member_id
    LOOP
        IF moved.amount > 0 AND p_give_back_from IS NOT NULL THEN
            back_member := back_member || moved.member_id;
            back_points := back_points || moved.amount;
        ELSIF moved.amount > 0 THEN
            lot_member := lot_member || moved.member_id;
            lot_points := lot_points || moved.amount;
        ELSIF moved.amount < 0 THEN
            take_member := take_member || moved.member_id;
            take_points := take_points || -moved.amount;
        END IF;
    END LOOP;

    -- every member it moves gets one more posting in its version; the caller's member also
    -- its due_at / inactive_at candidates
    state_member := ARRAY(SELECT x.member FROM unnest(legs.member) AS x (member)
                           WHERE x.member IS NOT NULL
                          UNION
                          SELECT p_member_id WHERE p_member_id IS NOT NULL);
    PERFORM public.ledger_write(
        p_program_id,
        ARRAY[v_txn], ARRAY[p_kind], ARRAY[p_member_id], ARRAY[p_occurred_at],
        ARRAY[p_order_id], ARRAY[p_reason], ARRAY[p_metadata], ARRAY[p_key],
        ARRAY[p_reverses_id], ARRAY[p_hold_id], ARRAY[NULL::text], ARRAY[NULL::text],
        array_fill(v_txn, ARRAY[cardinality(p_account_ids)]), p_account_ids, legs.member,
        legs.asset, p_amounts,
        array_fill(v_txn, ARRAY[cardinality(lot_member)]), lot_member,
        array_fill(p_lot_order, ARRAY[cardinality(lot_member)]),
        array_fill(coalesce(p_lot_earned_at, p_occurred_at), ARRAY[cardinality(lot_member)]),
        array_fill(p_lot_expires_at, ARRAY[cardinality(lot_member)]), lot_points,
        array_fill(v_txn, ARRAY[cardinality(back_member)]), back_member, back_points,
        array_fill(p_give_back_from, ARRAY[cardinality(back_member)]),
        array_fill(v_txn, ARRAY[cardinality(take_member)]), take_member, take_points,
        array_fill(p_spending, ARRAY[cardinality(take_member)]),
        array_fill(p_take_order, ARRAY[cardinality(take_member)]),
        array_fill(p_take_own_txn, ARRAY[cardinality(take_member)]),
        -- the qualifying credit this posting moves, on the caller's local day
        ARRAY(SELECT x.member FROM unnest(legs.member, legs.asset, p_amounts)
                                   AS x (member, asset, amount)
               WHERE x.member IS NOT NULL AND x.asset = 'qualifying' AND p_day IS NOT NULL),
        ARRAY(SELECT p_day FROM unnest(legs.member, legs.asset, p_amounts)
                                AS x (member, asset, amount)
               WHERE x.member IS NOT NULL AND x.asset = 'qualifying' AND p_day IS NOT NULL),
        ARRAY(SELECT 0::bigint FROM unnest(legs.member, legs.asset, p_amounts)
                                    AS x (member, asset, amount)
               WHERE x.member IS NOT NULL AND x.asset = 'qualifying' AND p_day IS NOT NULL),
        ARRAY(SELECT x.amount FROM unnest(legs.member, legs.asset, p_amounts)
                                   AS x (member, asset, amount)
               WHERE x.member IS NOT NULL AND x.asset = 'qualifying' AND p_day IS NOT NULL),
        state_member, array_fill(1, ARRAY[cardinality(state_member)]),
        ARRAY(SELECT CASE WHEN x.member = p_member_id THEN p_due_at END
                FROM unnest(state_member) WITH ORDINALITY AS x (member, i) ORDER BY x.i),
        ARRAY(SELECT CASE WHEN x.member = p_member_id THEN p_inactive_at END
                FROM unnest(state_member) WITH ORDINALITY AS x (member, i) ORDER BY x.i));
    RETURN v_txn;
END $$;
