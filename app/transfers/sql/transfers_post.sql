-- POST /v1/transfers, in one call: move points from one member to another of the same
-- program, both legs or neither. The sender's points are spent FIFO like a redemption; the
-- receiver repays debt first, and the rest is a new lot lapsing at p_lot_expires_at (the
-- program's expiry policy, decided by Python). Both members are locked in ascending id order.
-- Refusals (member_not_found, same_member, insufficient_points) are kept as the answer.
CREATE FUNCTION public.transfers_post(
    p_program_id bigint, p_key text, p_fingerprint bytea, p_from text, p_to text,
    p_points bigint, p_reason text, p_lot_expires_at timestamptz)
RETURNS TABLE (o_replayed boolean, o_status smallint, o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    from_id bigint;
    to_id bigint;
    locked record;
    sender record;
    receiver record;
    repay bigint;
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
    SELECT id INTO from_id FROM public.members
     WHERE program_id = p_program_id AND external_id = p_from;
    SELECT id INTO to_id FROM public.members
     WHERE program_id = p_program_id AND external_id = p_to;
    IF from_id IS NOT NULL AND to_id IS NOT NULL THEN
        FOR locked IN SELECT * FROM public.ledger_lock_members(p_program_id,
                                                               ARRAY[from_id, to_id]) LOOP
            IF locked.o_member_id = from_id THEN
                sender := locked;
            END IF;
            IF locked.o_member_id = to_id THEN
                receiver := locked;
            END IF;
        END LOOP;
    END IF;
    BEGIN
        IF from_id IS NULL OR to_id IS NULL THEN
            PERFORM public.ledger_refuse('member_not_found',
                format('no member %L in this program',
                       CASE WHEN from_id IS NULL THEN p_from ELSE p_to END));
        END IF;
        IF from_id = to_id THEN
            PERFORM public.ledger_refuse('same_member',
                                         'the points would go back where they came from');
        END IF;
        IF sender.o_available < p_points THEN
            PERFORM public.ledger_refuse('insufficient_points',
                format('%s points needed, %s there', p_points, sender.o_available));
        END IF;
        repay := least(greatest(-receiver.o_debt, 0), p_points);
        v_txn := public.ledger_post(
            p_program_id, 'transfer', from_id, now(),
            ARRAY[sender.o_available_id, receiver.o_available_id, receiver.o_debt_id],
            ARRAY[-p_points, p_points - repay, repay],
            p_reason => p_reason, p_metadata => jsonb_build_object('to_member', p_to),
            p_key => p_key, p_lot_expires_at => p_lot_expires_at, p_spending => true);
        v_body := jsonb_build_object(
            'transaction_id', v_txn, 'from_member', p_from, 'to_member', p_to,
            'points', p_points,
            'from_balance', public.ledger_balance(p_program_id, from_id),
            'to_balance', public.ledger_balance(p_program_id, to_id));
        v_status := 201;
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
