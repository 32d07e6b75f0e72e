-- Lock members for a posting and return their ledger state: two statements in the common case.
--
-- The member row is the member's lock: every posting locks the rows of the members it moves
-- (FOR NO KEY UPDATE: enrolments and reads are not blocked), in ascending id order, so two
-- postings over the same members queue instead of deadlocking. Members are named by id
-- (p_member_ids) and/or by external id (p_external_ids); unknown ones are simply absent.
-- Members whose maintenance is due (a pending release, a hold or lot expiry, the inactivity
-- deadline) are brought up to date first, under the lock, and read again: nothing expired can
-- be spent. Rows come back in ascending member id order.
--
-- The state is read by a statement of its own, after the lock is held: in READ COMMITTED a
-- statement that waits for a row lock re-reads the locked row, but everything else it reads
-- is as of its own start -- balances read alongside the lock would miss what the lock's
-- previous holder committed.
CREATE FUNCTION public.ledger_lock_members(
    p_program_id bigint, p_member_ids bigint[], p_external_ids text[] DEFAULT NULL)
RETURNS TABLE (
    o_member_id bigint, o_external_id text, o_version bigint, o_due_at timestamptz,
    o_inactive_at timestamptz,
    o_available_id bigint, o_available bigint, o_pending_id bigint, o_pending bigint,
    o_held_id bigint, o_held bigint, o_debt_id bigint, o_debt bigint,
    o_qualifying_id bigint, o_qualifying bigint)
LANGUAGE plpgsql
-- index scans whatever the table statistics say (a fresh or a huge table alike)
SET enable_seqscan = off AS $$
DECLARE
    ids bigint[];
    due timestamptz[];
BEGIN
    -- Every lookup below is a LATERAL probe of one key per row: a nested loop of index
    -- scans whatever the statistics say (on stale statistics, `= ANY (array)` was planned as
    -- a scan of the program's whole index range, filtered). A probe of a unique key says
    -- LIMIT 1 so that the planner cannot flatten it back into a join (row locks and
    -- aggregates prevent that by themselves).
    SELECT array_agg(m.id ORDER BY m.id), array_agg(m.due_at ORDER BY m.id) INTO ids, due
      FROM (SELECT k.id
              FROM (SELECT u.id FROM unnest(p_member_ids) AS u (id)
                    UNION
                    SELECT e.id FROM unnest(p_external_ids) AS x (external_id)
                      JOIN LATERAL (SELECT y.id FROM public.members y
                                     WHERE y.program_id = p_program_id
                                       AND y.external_id = x.external_id
                                     LIMIT 1) e ON true) k
             ORDER BY k.id) k
      -- locked in ascending id order: the nested loop follows its sorted outer side
      JOIN LATERAL (SELECT z.id, z.due_at FROM public.members z
                     WHERE z.program_id = p_program_id AND z.id = k.id
                       FOR NO KEY UPDATE) m ON true;
    IF EXISTS (SELECT 1 FROM unnest(due) AS d WHERE d <= now()) THEN
        PERFORM public.ledger_maintain(p_program_id, ids);
    END IF;
    RETURN QUERY
    SELECT m.id, m.external_id, m.version, m.due_at, m.inactive_at,
           b.available_id, b.available, b.pending_id, b.pending, b.held_id, b.held,
           b.debt_id, b.debt, b.qualifying_id, b.qualifying
      FROM unnest(ids) WITH ORDINALITY AS k (id, i)
      JOIN LATERAL (SELECT z.id, z.external_id, z.version, z.due_at, z.inactive_at
                      FROM public.members z
                     WHERE z.program_id = p_program_id AND z.id = k.id
                     LIMIT 1) m ON true
      JOIN LATERAL (
            SELECT max(y.id) FILTER (WHERE y.asset = 'points' AND y.kind = 'available')
                       AS available_id,
                   max(y.balance) FILTER (WHERE y.asset = 'points' AND y.kind = 'available')
                       AS available,
                   max(y.id) FILTER (WHERE y.asset = 'points' AND y.kind = 'pending')
                       AS pending_id,
                   max(y.balance) FILTER (WHERE y.asset = 'points' AND y.kind = 'pending')
                       AS pending,
                   max(y.id) FILTER (WHERE y.asset = 'points' AND y.kind = 'held') AS held_id,
                   max(y.balance) FILTER (WHERE y.asset = 'points' AND y.kind = 'held') AS held,
                   max(y.id) FILTER (WHERE y.asset = 'points' AND y.kind = 'debt') AS debt_id,
                   max(y.balance) FILTER (WHERE y.asset = 'points' AND y.kind = 'debt') AS debt,
                   max(y.id) FILTER (WHERE y.asset = 'qualifying' AND y.kind = 'available')
                       AS qualifying_id,
                   max(y.balance) FILTER (WHERE y.asset = 'qualifying' AND y.kind = 'available')
                       AS qualifying
              FROM public.accounts y
             WHERE y.program_id = p_program_id AND y.member_id = k.id) b ON true
     ORDER BY k.i;
END $$;
