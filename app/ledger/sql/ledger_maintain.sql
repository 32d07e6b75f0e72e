-- Lazy maintenance of members whose `due_at` has passed, under their locks (the caller's
-- ledger_lock_members): settle pending points past their return window, release holds past
-- their expiry, expire lots past theirs, and, under the inactivity policy, everything once the
-- deadline has passed. Every read and write of a member runs it first (so correctness never
-- depends on the worker being up); `points-ledger worker` runs it for idle members.
--
-- What lapses *when* was decided by Python when the points arrived (the lot's expires_at, the
-- pending lot's release_at and lot_expires_at, the member's inactive_at); this only carries
-- it out. Postings:
--   settle  member pending -> available (a member in debt repays it first); the new lot keeps
--           the order's earn time and the expiry decided at the earn
--   release member held -> available, back into the lots the hold took (reason "hold expired")
--   expire  member available -> breakage, one posting per lot (system key, unique), or all
--           of it at the inactivity deadline
-- Then `due_at` is set to the next instant anything is due. Returns the postings made.
-- `p_force`: maintain the members whatever their due_at says (the worker's safety net).
CREATE FUNCTION public.ledger_maintain(
    p_program_id bigint, p_member_ids bigint[], p_force boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql
-- index scans whatever the table statistics say (a fresh or a huge table alike)
SET enable_seqscan = off AS $$
DECLARE
    mem record;
    lot record;
    hold_id bigint;
    acct record;
    repay bigint;
    breakage bigint;
    done integer := 0;
BEGIN
    SELECT id INTO breakage FROM public.accounts
     WHERE program_id = p_program_id AND member_id IS NULL AND asset = 'points'
       AND kind = 'breakage';
    FOR mem IN
        SELECT m.id, m.inactive_at FROM public.members m
         WHERE m.program_id = p_program_id AND m.id = ANY (p_member_ids)
           AND (m.due_at <= now() OR p_force)
         ORDER BY m.id
    LOOP
        SELECT max(a.id) FILTER (WHERE a.kind = 'available') AS available,
               max(a.id) FILTER (WHERE a.kind = 'pending') AS pending,
               max(a.id) FILTER (WHERE a.kind = 'debt') AS debt,
               max(a.balance) FILTER (WHERE a.kind = 'debt') AS debt_balance
          INTO acct
          FROM public.accounts a
         WHERE a.program_id = p_program_id AND a.member_id = mem.id AND a.asset = 'points';

        FOR lot IN
            SELECT * FROM public.pending_lots
             WHERE program_id = p_program_id AND member_id = mem.id AND remaining > 0
               AND release_at <= now()
             ORDER BY release_at, id
        LOOP
            repay := least(greatest(-acct.debt_balance, 0), lot.remaining);
            PERFORM public.ledger_post(
                p_program_id, 'settle', mem.id, lot.release_at,
                ARRAY[acct.pending, acct.available, acct.debt],
                ARRAY[-lot.remaining, lot.remaining - repay, repay],
                p_order_id => lot.order_id, p_reason => 'return window passed',
                p_lot_expires_at => lot.lot_expires_at, p_lot_earned_at => lot.earned_at,
                p_lot_order => lot.order_id);
            acct.debt_balance := acct.debt_balance + repay;
            UPDATE public.pending_lots SET remaining = 0
             WHERE program_id = p_program_id AND id = lot.id;
            done := done + 1;
        END LOOP;

        FOR hold_id IN
            SELECT h.id FROM public.holds h
             WHERE h.program_id = p_program_id AND h.member_id = mem.id AND h.status = 'open'
               AND h.expires_at <= now()
             ORDER BY h.id
        LOOP
            PERFORM public.holds_close(p_program_id, hold_id, 'expired', 0, NULL);
            done := done + 1;
        END LOOP;

        FOR lot IN
            SELECT l.id, l.transaction_id, l.remaining, l.earned_at, l.expires_at
              FROM public.lots l
             WHERE l.program_id = p_program_id AND l.member_id = mem.id AND l.remaining > 0
               AND l.expires_at <= now()
             ORDER BY l.expires_at, l.earned_at, l.id
        LOOP
            PERFORM public.ledger_post(
                p_program_id, 'expire', mem.id, lot.expires_at,
                ARRAY[acct.available, breakage], ARRAY[-lot.remaining, lot.remaining],
                p_reason => 'points expired',
                p_metadata => jsonb_build_object('lot_id', lot.id, 'earned_at', lot.earned_at,
                                                 'expires_at', lot.expires_at),
                p_key => format('expire:%s:%s', lot.id,
                                (SELECT version FROM public.members
                                  WHERE program_id = p_program_id AND id = mem.id)),
                p_take_own_txn => lot.transaction_id);
            done := done + 1;
        END LOOP;

        IF mem.inactive_at <= now() THEN
            SELECT balance INTO lot FROM public.accounts
             WHERE program_id = p_program_id AND id = acct.available;
            IF lot.balance > 0 THEN
                PERFORM public.ledger_post(
                    p_program_id, 'expire', mem.id, mem.inactive_at,
                    ARRAY[acct.available, breakage], ARRAY[-lot.balance, lot.balance],
                    p_reason => 'points expired after inactivity',
                    p_metadata => jsonb_build_object('inactive', true,
                                                     'deadline', mem.inactive_at),
                    p_key => format('expire:inactive:%s:%s', mem.id,
                                    (SELECT version FROM public.members
                                      WHERE program_id = p_program_id AND id = mem.id)));
                done := done + 1;
            END IF;
        END IF;

        UPDATE public.members m
           SET due_at = least(
                   (SELECT min(release_at) FROM public.pending_lots
                     WHERE program_id = p_program_id AND member_id = mem.id AND remaining > 0),
                   (SELECT min(expires_at) FROM public.holds
                     WHERE program_id = p_program_id AND member_id = mem.id AND status = 'open'),
                   (SELECT min(expires_at) FROM public.lots
                     WHERE program_id = p_program_id AND member_id = mem.id AND remaining > 0),
                   CASE WHEN m.inactive_at > now() THEN m.inactive_at END)
         WHERE m.program_id = p_program_id AND m.id = mem.id;
    END LOOP;
    RETURN done;
END $$;
