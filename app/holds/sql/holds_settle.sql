-- POST /v1/holds/{id}/capture and /release, in one call: claim the key, lock the member
-- (running its due maintenance, which may expire this very hold), check the hold is still
-- open and the capture fits, close it, count the captured points as redeemed on the hold's
-- order, and keep the answer. p_capture NULL captures all of it, 0 releases it.
-- Refusals (hold_not_found, hold_already_captured, hold_already_released, hold_expired,
-- capture_exceeds_hold) are kept as the answer too: a replay refuses again.
CREATE FUNCTION public.holds_settle(
    p_program_id bigint, p_key text, p_fingerprint bytea, p_hold_id bigint, p_capture bigint)
RETURNS TABLE (o_replayed boolean, o_status smallint, o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    h public.holds;
    v_capture bigint;
    v_txn bigint;
    v_status smallint;
    v_body jsonb;
    e_state text;
    e_message text;
    e_detail text;
    e_constraint text;
BEGIN
    SELECT * INTO claim FROM public.ledger_claim(p_program_id, p_key, p_fingerprint);
    IF NOT claim.o_claimed THEN
        RETURN QUERY SELECT true, claim.o_status, claim.o_body;
        RETURN;
    END IF;
    -- the member's lock and due maintenance come first, outside the refusal's savepoint: a
    -- hold that maintenance expires stays expired even though this request is refused
    SELECT * INTO h FROM public.holds WHERE program_id = p_program_id AND id = p_hold_id;
    IF FOUND THEN
        PERFORM 1 FROM public.ledger_lock_members(p_program_id, ARRAY[h.member_id]);
        SELECT * INTO h FROM public.holds WHERE program_id = p_program_id AND id = p_hold_id;
    END IF;
    BEGIN
        IF h.id IS NULL THEN
            PERFORM public.ledger_refuse('hold_not_found',
                                         format('no hold %s in this program', p_hold_id));
        ELSIF h.status = 'captured' THEN
            PERFORM public.ledger_refuse('hold_already_captured');
        ELSIF h.status = 'released' THEN
            PERFORM public.ledger_refuse('hold_already_released');
        ELSIF h.status = 'expired' THEN
            PERFORM public.ledger_refuse('hold_expired',
                format('the hold expired at %s and its points went back', h.expires_at));
        END IF;
        v_capture := coalesce(p_capture, h.points);
        IF v_capture > h.points THEN
            PERFORM public.ledger_refuse('capture_exceeds_hold',
                                         format('the hold is for %s points', h.points));
        END IF;
        IF h.order_id IS NOT NULL AND v_capture > 0 THEN
            -- the order row, locked after the member (the lock order of every posting)
            INSERT INTO public.orders (program_id, order_id, member_id)
            VALUES (p_program_id, h.order_id, h.member_id)
                ON CONFLICT DO NOTHING;
            UPDATE public.orders SET redeemed_points = redeemed_points + v_capture
             WHERE program_id = p_program_id AND order_id = h.order_id
               AND member_id = h.member_id;
        END IF;
        v_txn := public.holds_close(
            p_program_id, h.id, CASE WHEN v_capture > 0 THEN 'captured' ELSE 'released' END,
            v_capture, p_key);
        v_body := public.holds_view(p_program_id, h.id)
                  || jsonb_build_object('transaction_id', v_txn);
        v_status := 200;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_message = MESSAGE_TEXT,
                                e_detail = PG_EXCEPTION_DETAIL, e_constraint = CONSTRAINT_NAME;
        v_body := public.ledger_refusal(e_state, e_message, e_detail, e_constraint);
        IF v_body IS NULL THEN
            RAISE;
        END IF;
        v_status := NULL;
        v_txn := NULL;
    END;
    PERFORM public.ledger_answer(p_program_id, p_key, v_status, v_body, v_txn);
    RETURN QUERY SELECT false, v_status, v_body;
END $$;
