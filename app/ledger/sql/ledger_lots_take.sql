-- Take points from members' lots: the one implementation of the spending order of lots.
--
-- Each debit of a member's available points (in posting order: p_txn ascending) takes from
-- the member's open lots, first those it prefers -- a refund the lots of its own order
-- (p_order), a reversal the lots of the transaction it reverses (p_own_txn) -- then FIFO by
-- expiry: the lot that expires first, then the older earn, then the lower id; lots that never
-- expire last. A lot made by a later posting of the same call (p_call_txn: the call's
-- transactions, whose ids increase in posting order) is not there yet for an earlier debit.
-- Ids compare only within a call: the id sequence is cached per session, so a lot another
-- session committed a moment ago may well have a higher id than this call's debits. Spending (redeem, hold, transfer, adjust: p_spending)
-- never takes a lot already due; lazy maintenance expires those before anything is spent.
--
-- Reads the lots once, decides in memory, writes once: one UPDATE of the lots, one INSERT of
-- the movements, whatever the number of debits. A debit the lots cannot cover means the lots
-- are out of step with the balance (PL004): the caller checked the balance first.
CREATE FUNCTION public.ledger_lots_take(
    p_program_id bigint, p_txn bigint[], p_member bigint[], p_points bigint[],
    p_spending boolean[], p_order text[], p_own_txn bigint[], p_call_txn bigint[])
RETURNS void LANGUAGE plpgsql
-- index scans whatever the table statistics say (a fresh or a huge table alike)
SET enable_seqscan = off AS $$
DECLARE
    n_ops integer := coalesce(cardinality(p_txn), 0);
    -- the open lots of the debited members, grouped by member, each group in FIFO order
    l_id bigint[];
    l_member bigint[];
    l_txn bigint[];
    l_order text[];
    l_expires timestamptz[];
    l_new boolean[];  -- made by this call
    l_left bigint[];
    l_before bigint[];
    n_lots integer;
    -- each debit's group of lots: [op_first, op_last], and where FIFO resumes in the group
    op_first integer[];
    op_last integer[];
    resume integer[];
    -- movements
    mv_txn bigint[] := '{}';
    mv_lot bigint[] := '{}';
    mv_points bigint[] := '{}';
    n_mv integer := 0;
    want bigint;
    take bigint;
    pass integer;
    j integer;
    now_ timestamptz := now();
BEGIN
    IF n_ops = 0 THEN
        RETURN;
    END IF;
    -- Only as many of a member's lots as the member's debits can reach, in FIFO order (a
    -- member with thousands of small lots is read no further than needed), plus the lots the
    -- debits prefer and the lots made by this same call.
    WITH need AS (
        SELECT d.member, sum(d.points) AS points,
               bool_or(d.own_txn IS NOT NULL OR d.order_id IS NOT NULL) AS prefers
          FROM unnest(p_member, p_points, p_txn, p_own_txn, p_order)
               AS d (member, points, txn, own_txn, order_id)
         GROUP BY d.member),
    open_lots AS (
        SELECT l.id, l.member_id, l.transaction_id, l.order_id, l.expires_at, l.earned_at,
               l.remaining, need.points AS need, need.prefers,
               l.transaction_id = ANY (p_call_txn) AS new,
               sum(l.remaining) FILTER (WHERE l.transaction_id <> ALL (p_call_txn)) OVER (
                   PARTITION BY l.member_id
                   ORDER BY l.expires_at NULLS LAST, l.earned_at, l.id) AS running
          FROM need
          JOIN public.lots l ON l.program_id = p_program_id AND l.member_id = need.member
                            AND l.member_id = ANY (p_member) AND l.remaining > 0)
    SELECT array_agg(o.id ORDER BY o.member_id, o.expires_at NULLS LAST, o.earned_at, o.id),
           array_agg(o.member_id ORDER BY o.member_id, o.expires_at NULLS LAST, o.earned_at, o.id),
           array_agg(o.transaction_id
                     ORDER BY o.member_id, o.expires_at NULLS LAST, o.earned_at, o.id),
           array_agg(o.order_id ORDER BY o.member_id, o.expires_at NULLS LAST, o.earned_at, o.id),
           array_agg(o.expires_at
                     ORDER BY o.member_id, o.expires_at NULLS LAST, o.earned_at, o.id),
           array_agg(o.remaining ORDER BY o.member_id, o.expires_at NULLS LAST, o.earned_at, o.id),
           array_agg(o.new ORDER BY o.member_id, o.expires_at NULLS LAST, o.earned_at, o.id)
      INTO l_id, l_member, l_txn, l_order, l_expires, l_left, l_new
      FROM open_lots o
     WHERE o.prefers
        OR o.new
        OR o.running - o.remaining < o.need;
    n_lots := coalesce(cardinality(l_id), 0);
    l_before := l_left;
    resume := array_fill(NULL::integer, ARRAY[n_lots + 1]);
    SELECT array_agg(g.first_lot ORDER BY d.op), array_agg(g.last_lot ORDER BY d.op)
      INTO op_first, op_last
      FROM unnest(p_member) WITH ORDINALITY AS d (member, op)
      LEFT JOIN (SELECT x.member, min(x.i)::integer AS first_lot, max(x.i)::integer AS last_lot
                   FROM unnest(l_member) WITH ORDINALITY AS x (member, i)
                  GROUP BY x.member) g ON g.member = d.member;

    FOR op IN 1 .. n_ops LOOP
        want := p_points[op];
        CONTINUE WHEN want IS NULL OR want <= 0;
        IF op_first[op] IS NOT NULL THEN
            -- pass 1: the preferred lots; pass 2: any lot, FIFO, from where the last debit
            -- of this member left off (the lots before it are empty)
            FOR pass IN 1 .. 2 LOOP
                CONTINUE WHEN pass = 1 AND p_own_txn[op] IS NULL AND p_order[op] IS NULL;
                FOR j IN CASE WHEN pass = 1 THEN op_first[op]
                              ELSE coalesce(resume[op_first[op]], op_first[op]) END
                         .. op_last[op] LOOP
                    EXIT WHEN want = 0;
                    CONTINUE WHEN l_left[j] = 0 OR (l_new[j] AND l_txn[j] >= p_txn[op]);
                    CONTINUE WHEN p_spending[op] AND l_expires[j] <= now_;
                    CONTINUE WHEN pass = 1 AND l_txn[j] IS DISTINCT FROM p_own_txn[op]
                                  AND l_order[j] IS DISTINCT FROM p_order[op];
                    take := least(want, l_left[j]);
                    l_left[j] := l_left[j] - take;
                    want := want - take;
                    n_mv := n_mv + 1;
                    mv_txn[n_mv] := p_txn[op];
                    mv_lot[n_mv] := l_id[j];
                    mv_points[n_mv] := -take;
                END LOOP;
                IF pass = 2 THEN
                    j := coalesce(resume[op_first[op]], op_first[op]);
                    WHILE j < op_last[op] AND l_left[j] = 0 LOOP
                        j := j + 1;
                    END LOOP;
                    resume[op_first[op]] := j;
                END IF;
            END LOOP;
        END IF;
        IF want > 0 THEN
            RAISE EXCEPTION USING
                ERRCODE = 'PL004',
                MESSAGE = format('the lots of member %s are %s points short of transaction %s',
                                 p_member[op], want, p_txn[op]);
        END IF;
    END LOOP;

    UPDATE public.lots l SET remaining = c.remaining
      FROM unnest(l_id, l_left, l_before) AS c (id, remaining, before)
     WHERE l.program_id = p_program_id AND l.id = c.id AND l.id = ANY (l_id)
       AND c.remaining <> c.before;
    INSERT INTO public.lot_movements (program_id, transaction_id, lot_id, points)
    SELECT p_program_id, m.txn, m.lot, sum(m.points)
      FROM unnest(mv_txn, mv_lot, mv_points) AS m (txn, lot, points)
     GROUP BY m.txn, m.lot;
END $$;
