-- Close an open hold: capture `p_capture` of its points (held -> redemption) and give the rest
-- back (held -> available, into the very lots the hold took, so they keep their expiry).
-- `p_status` is what the hold becomes: captured, released, or expired (by maintenance). The
-- caller holds the member's lock and has checked that the hold is open and p_capture fits.
-- Returns the capture's or release's transaction id.
CREATE FUNCTION public.holds_close(
    p_program_id bigint, p_hold_id bigint, p_status text, p_capture bigint, p_key text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    h public.holds;
    acct record;
    v_txn bigint;
BEGIN
    SELECT * INTO h FROM public.holds WHERE program_id = p_program_id AND id = p_hold_id;
    SELECT max(a.id) FILTER (WHERE a.kind = 'held') AS held,
           max(a.id) FILTER (WHERE a.kind = 'available') AS available,
           (SELECT r.id FROM public.accounts r
             WHERE r.program_id = p_program_id AND r.member_id IS NULL
               AND r.asset = 'points' AND r.kind = 'redemption') AS redemption,
           (SELECT t.id FROM public.transactions t
             WHERE t.program_id = p_program_id AND t.hold_id = h.id AND t.kind = 'hold')
               AS hold_txn
      INTO acct
      FROM public.accounts a
     WHERE a.program_id = p_program_id AND a.member_id = h.member_id AND a.asset = 'points';
    v_txn := public.ledger_post(
        p_program_id, CASE WHEN p_capture > 0 THEN 'capture' ELSE 'release' END, h.member_id,
        now(),
        ARRAY[acct.held, acct.redemption, acct.available],
        ARRAY[-h.points, p_capture, h.points - p_capture],
        p_order_id => h.order_id,
        p_reason => CASE WHEN p_status = 'expired' THEN 'hold expired' END,
        p_key => p_key, p_hold_id => h.id, p_give_back_from => acct.hold_txn);
    UPDATE public.holds
       SET status = p_status, captured_points = p_capture, closed_at = now()
     WHERE program_id = p_program_id AND id = p_hold_id;
    RETURN v_txn;
END $$;
