-- Write postings: the one writer of transactions, entries, balances, lots and the members'
-- ledger state. The engine (ledger_post_events) calls it once for a whole batch; every other
-- posting (ledger_post) once for its one transaction. A fixed number of statements, whatever
-- the number of postings, and no lookups: the caller holds the lock of every member involved
-- (ledger_lock_members) and has decided everything:
--
--   * transactions (p_txn_*): ids already drawn, in posting order;
--   * legs (p_leg_*): entries, numbered per transaction in the order given, with the account's
--     member and asset; member accounts move by the sum of their legs, and the accounts'
--     CHECKs (no_overdraft, debt_is_owed, balance_in_json_range) are the backstop of the
--     caller's own checks; the statement trigger entries_checked checks every leg against
--     its account and transaction, and that each transaction balances per asset;
--   * new lots (p_lot_*), lots given back to (p_back_*) and lots taken (p_take_*), which add up
--     to the legs on the members' available points (verify checks it);
--   * what orders earned and the qualifying credit per member and local day (p_day_*), added to
--     `member_days`, the projection that daily caps and tiers read;
--   * the members' state (p_state_*): postings to add to `version` (the compare-and-set of
--     member-dependent earns), and `due_at` / `inactive_at` candidates; the earliest due_at
--     and the latest inactive_at win.
CREATE FUNCTION public.ledger_write(
    p_program_id bigint,
    p_txn_id bigint[], p_txn_kind text[], p_txn_member bigint[], p_txn_occurred_at timestamptz[],
    p_txn_order text[], p_txn_reason text[], p_txn_metadata jsonb[], p_txn_key text[],
    p_txn_reverses bigint[], p_txn_hold bigint[], p_txn_store text[], p_txn_terminal text[],
    p_leg_txn bigint[], p_leg_account bigint[], p_leg_member bigint[], p_leg_asset text[],
    p_leg_amount bigint[],
    p_lot_txn bigint[], p_lot_member bigint[], p_lot_order text[], p_lot_earned_at timestamptz[],
    p_lot_expires_at timestamptz[], p_lot_points bigint[],
    p_back_txn bigint[], p_back_member bigint[], p_back_points bigint[], p_back_from bigint[],
    p_take_txn bigint[], p_take_member bigint[], p_take_points bigint[],
    p_take_spending boolean[], p_take_order text[], p_take_own_txn bigint[],
    p_day_member bigint[], p_day date[], p_day_earned bigint[], p_day_qualifying bigint[],
    p_state_member bigint[], p_state_postings integer[], p_state_due_at timestamptz[],
    p_state_inactive_at timestamptz[])
RETURNS void LANGUAGE plpgsql
-- index scans whatever the table statistics say (a fresh or a huge table alike)
SET enable_seqscan = off AS $$
BEGIN
    INSERT INTO public.transactions (
        program_id, id, kind, member_id, occurred_at, order_id, reason, metadata,
        idempotency_key, reverses_id, hold_id, store_id, terminal_id)
    SELECT p_program_id, t.id, t.kind, t.member, t.occurred_at, t.order_id, t.reason,
           coalesce(t.metadata, '{}'::jsonb), t.key, t.reverses, t.hold, t.store, t.terminal
      FROM unnest(p_txn_id, p_txn_kind, p_txn_member, p_txn_occurred_at, p_txn_order,
                  p_txn_reason, p_txn_metadata, p_txn_key, p_txn_reverses, p_txn_hold,
                  p_txn_store, p_txn_terminal)
           AS t (id, kind, member, occurred_at, order_id, reason, metadata, key, reverses, hold,
                 store, terminal);

    INSERT INTO public.entries (program_id, transaction_id, leg, account_id, member_id, asset,
                                amount)
    SELECT p_program_id, g.txn, row_number() OVER (PARTITION BY g.txn ORDER BY g.i),
           g.account, g.member, g.asset, g.amount
      FROM unnest(p_leg_txn, p_leg_account, p_leg_member, p_leg_asset, p_leg_amount)
           WITH ORDINALITY AS g (txn, account, member, asset, amount, i)
     WHERE g.amount <> 0;

    UPDATE public.accounts a SET balance = a.balance + d.amount
      FROM (SELECT g.account, sum(g.amount) AS amount
              FROM unnest(p_leg_account, p_leg_member, p_leg_amount)
                   AS g (account, member, amount)
             WHERE g.member IS NOT NULL
             GROUP BY g.account
            HAVING sum(g.amount) <> 0) d
     WHERE a.program_id = p_program_id AND a.id = d.account
       AND a.id = ANY (ARRAY(SELECT g.account FROM unnest(p_leg_account, p_leg_member)
                                                    AS g (account, member)
                              WHERE g.member IS NOT NULL));

    INSERT INTO public.lots (program_id, member_id, transaction_id, order_id, earned_at,
                             expires_at, points, remaining)
    SELECT p_program_id, l.member, l.txn, l.order_id, l.earned_at, l.expires_at, l.points,
           l.points
      FROM unnest(p_lot_txn, p_lot_member, p_lot_order, p_lot_earned_at, p_lot_expires_at,
                  p_lot_points) AS l (txn, member, order_id, earned_at, expires_at, points)
     WHERE l.points > 0;

    IF cardinality(p_back_txn) > 0 THEN
        -- the caller gives back at most what the source transactions took
        IF EXISTS (SELECT 1 FROM unnest(public.ledger_lots_give_back(
                       p_program_id, p_back_txn, p_back_member, p_back_points, p_back_from))
                          AS left_over WHERE left_over > 0) THEN
            RAISE EXCEPTION USING ERRCODE = 'PL004',
                MESSAGE = 'more points given back than the source transactions took from lots';
        END IF;
    END IF;
    IF cardinality(p_take_txn) > 0 THEN
        PERFORM public.ledger_lots_take(p_program_id, p_take_txn, p_take_member, p_take_points,
                                        p_take_spending, p_take_order, p_take_own_txn,
                                        p_txn_id);
    END IF;

    IF cardinality(p_day_member) > 0 THEN
        INSERT INTO public.member_days AS d (program_id, member_id, day, earned, qualifying,
                                             qualifying_changed_at, qualifying_taken_back_at)
        SELECT p_program_id, x.member, x.day, sum(x.earned), sum(x.qualifying),
               CASE WHEN bool_or(x.qualifying <> 0) THEN now() END,
               CASE WHEN bool_or(x.qualifying < 0) THEN now() END
          FROM unnest(p_day_member, p_day, p_day_earned, p_day_qualifying)
               AS x (member, day, earned, qualifying)
         WHERE x.day IS NOT NULL
         GROUP BY x.member, x.day
        HAVING sum(x.earned) <> 0 OR bool_or(x.qualifying <> 0)
            ON CONFLICT (program_id, member_id, day) DO UPDATE
           SET earned = d.earned + excluded.earned,
               qualifying = d.qualifying + excluded.qualifying,
               qualifying_changed_at = coalesce(excluded.qualifying_changed_at,
                                                d.qualifying_changed_at),
               qualifying_taken_back_at = coalesce(excluded.qualifying_taken_back_at,
                                                   d.qualifying_taken_back_at);
    END IF;

    -- The members' state, for those whose state changes. Maintenance is due at the earliest
    -- of: what was due, what the caller says (a pending release, a hold's expiry), the expiry
    -- of a new lot or of a lot given points back, and the inactivity deadline (now, when it
    -- has passed already) once points arrive or activity moves it. A deadline moved later
    -- leaves the earlier due_at behind: that maintenance finds nothing to do and reschedules.
    -- (least/greatest ignore NULLs.)
    UPDATE public.members m
       SET version = m.version + s.postings,
           due_at = least(m.due_at, s.due_at, s.lot_expires_at, back.expires_at,
                          CASE WHEN (s.credited OR s.inactive_at IS NOT NULL)
                                    AND coalesce(s.inactive_at, m.inactive_at) IS NOT NULL
                               THEN greatest(m.inactive_at, s.inactive_at, now()) END),
           inactive_at = greatest(m.inactive_at, s.inactive_at)
      FROM (SELECT x.member, sum(x.postings)::integer AS postings, min(x.due_at) AS due_at,
                   max(x.inactive_at) AS inactive_at, min(x.lot_expires_at) AS lot_expires_at,
                   bool_or(x.credited) AS credited
              FROM (SELECT u.member, u.postings, u.due_at, u.inactive_at,
                           NULL::timestamptz AS lot_expires_at, false AS credited
                      FROM unnest(p_state_member, p_state_postings, p_state_due_at,
                                  p_state_inactive_at) AS u (member, postings, due_at,
                                                             inactive_at)
                     WHERE u.postings <> 0 OR u.due_at IS NOT NULL OR u.inactive_at IS NOT NULL
                    UNION ALL
                    SELECT l.member, 0, NULL, NULL, l.expires_at, true
                      FROM unnest(p_lot_member, p_lot_points, p_lot_expires_at)
                           AS l (member, points, expires_at)
                     WHERE l.points > 0
                    UNION ALL
                    SELECT b.member, 0, NULL, NULL, NULL, false
                      FROM unnest(p_back_member) AS b (member)) x
             GROUP BY x.member) s
      LEFT JOIN LATERAL (
             SELECT min(l.expires_at) AS expires_at FROM public.lots l
              WHERE s.member = ANY (p_back_member)
                AND l.program_id = p_program_id AND l.member_id = s.member
                AND l.remaining > 0 AND l.expires_at IS NOT NULL) back ON true
     WHERE m.program_id = p_program_id AND m.id = s.member
       AND m.id = ANY (ARRAY(SELECT u.member FROM unnest(p_state_member) AS u (member)
                             UNION ALL
                             SELECT l.member FROM unnest(p_lot_member) AS l (member)
                             UNION ALL
                             SELECT b.member FROM unnest(p_back_member) AS b (member)))
       AND (s.postings <> 0 OR s.due_at IS NOT NULL OR s.inactive_at IS NOT NULL
            OR s.lot_expires_at IS NOT NULL OR back.expires_at IS NOT NULL
            OR (s.credited AND m.inactive_at IS NOT NULL));
END $$;
