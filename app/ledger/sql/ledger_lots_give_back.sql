-- Give points back to the lots a transaction took them from: a hold released (or captured in
-- part) returns the rest to the lots the hold took, a reversed redemption returns its points
-- to the lots it spent, so points keep the expiry they were earned with. The latest-expiring
-- lots are refilled first (what would be spent last). What cannot go back (the source took
-- less) is returned to the caller, who makes a new lot of it.
--
-- One read of the source transactions' movements, one UPDATE, one INSERT.
CREATE FUNCTION public.ledger_lots_give_back(
    p_program_id bigint, p_txn bigint[], p_member bigint[], p_points bigint[],
    p_from_txn bigint[])
RETURNS bigint[] LANGUAGE plpgsql
-- index scans whatever the table statistics say (a fresh or a huge table alike)
SET enable_seqscan = off AS $$
DECLARE
    n_ops integer := coalesce(cardinality(p_txn), 0);
    s_from bigint[];
    s_lot bigint[];
    s_taken bigint[];
    n_src integer;
    mv_txn bigint[] := '{}';
    mv_lot bigint[] := '{}';
    mv_points bigint[] := '{}';
    n_mv integer := 0;
    left_over bigint[] := '{}';
    want bigint;
    give bigint;
    j integer;
BEGIN
    IF n_ops = 0 THEN
        RETURN left_over;
    END IF;
    -- what each source transaction took from each lot of the member, latest expiry first
    SELECT array_agg(s.from_txn ORDER BY s.from_txn, s.expires_at DESC NULLS FIRST,
                                         s.earned_at DESC, s.lot_id DESC),
           array_agg(s.lot_id ORDER BY s.from_txn, s.expires_at DESC NULLS FIRST,
                                       s.earned_at DESC, s.lot_id DESC),
           array_agg(s.taken ORDER BY s.from_txn, s.expires_at DESC NULLS FIRST,
                                      s.earned_at DESC, s.lot_id DESC)
      INTO s_from, s_lot, s_taken
      FROM (SELECT m.transaction_id AS from_txn, m.lot_id, l.expires_at, l.earned_at,
                   -sum(m.points) AS taken
              FROM public.lot_movements m
              JOIN public.lots l ON l.program_id = m.program_id AND l.id = m.lot_id
             WHERE m.program_id = p_program_id
               AND m.transaction_id = ANY (p_from_txn)
             GROUP BY m.transaction_id, m.lot_id, l.expires_at, l.earned_at
            HAVING sum(m.points) < 0) s;
    n_src := coalesce(cardinality(s_lot), 0);

    FOR op IN 1 .. n_ops LOOP
        want := coalesce(p_points[op], 0);
        FOR j IN 1 .. n_src LOOP
            EXIT WHEN want <= 0;
            CONTINUE WHEN s_from[j] IS DISTINCT FROM p_from_txn[op] OR s_taken[j] = 0;
            give := least(want, s_taken[j]);
            s_taken[j] := s_taken[j] - give;
            want := want - give;
            n_mv := n_mv + 1;
            mv_txn[n_mv] := p_txn[op];
            mv_lot[n_mv] := s_lot[j];
            mv_points[n_mv] := give;
        END LOOP;
        left_over[op] := greatest(want, 0);
    END LOOP;

    UPDATE public.lots l SET remaining = l.remaining + g.points
      FROM (SELECT lot, sum(points) AS points FROM unnest(mv_lot, mv_points) AS x (lot, points)
             GROUP BY lot) g
     WHERE l.program_id = p_program_id AND l.id = g.lot AND l.id = ANY (mv_lot);
    INSERT INTO public.lot_movements (program_id, transaction_id, lot_id, points)
    SELECT p_program_id, m.txn, m.lot, sum(m.points)
      FROM unnest(mv_txn, mv_lot, mv_points) AS m (txn, lot, points)
     GROUP BY m.txn, m.lot;
    RETURN left_over;
END $$;
