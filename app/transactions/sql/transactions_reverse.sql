-- POST /v1/transactions/{id}/reverse, in one call: post the exact opposite of a transaction
-- (every leg negated), at most once. Lots follow: a reversed credit takes back its own lot
-- first, a reversed debit gives its points back to the lots it spent (they keep their expiry;
-- one that has lapsed since lapses again at the next maintenance); a reversed earn's pending
-- points leave its pending lot. Python passes the local day (the qualifying credit taken back
-- counts on it).
--
-- Refused, and kept as the answer: transaction_not_found; not_reversible (a reversal, or a
-- step of a hold or a return window, which have their own ways back); already_reversed; and
-- insufficient_points when the points a credit gave have been spent since.
CREATE FUNCTION public.transactions_reverse(
    p_program_id bigint, p_key text, p_fingerprint bytea, p_transaction_id bigint,
    p_reason text, p_day date)
RETURNS TABLE (o_replayed boolean, o_status smallint, o_body jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    original public.transactions;
    leg record;
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
    PERFORM 1 FROM public.ledger_lock_members(
        p_program_id,
        ARRAY(SELECT DISTINCT e.member_id FROM public.entries e
               WHERE e.program_id = p_program_id AND e.transaction_id = p_transaction_id
                 AND e.member_id IS NOT NULL));
    BEGIN
        -- The row lock queues concurrent reversals of one transaction here, so the second
        -- sees the first and answers already_reversed.
        SELECT * INTO original FROM public.transactions
         WHERE program_id = p_program_id AND id = p_transaction_id
           FOR UPDATE;
        IF NOT FOUND THEN
            PERFORM public.ledger_refuse('transaction_not_found',
                format('no transaction %s in this program', p_transaction_id));
        ELSIF original.kind = 'reverse' THEN
            PERFORM public.ledger_refuse('not_reversible',
                'a reversal cannot be reversed; post an adjustment instead');
        ELSIF original.kind IN ('hold', 'capture', 'release') THEN
            PERFORM public.ledger_refuse('not_reversible',
                'a hold is captured or released, not reversed');
        ELSIF original.kind = 'settle' THEN
            PERFORM public.ledger_refuse('not_reversible',
                'points leave the return window once; refund the order instead');
        ELSIF EXISTS (SELECT 1 FROM public.transactions r
                       WHERE r.program_id = p_program_id AND r.reverses_id = original.id) THEN
            PERFORM public.ledger_refuse('already_reversed');
        END IF;
        FOR leg IN
            SELECT a.kind, a.balance, -sum(e.amount) AS amount
              FROM public.entries e
              JOIN public.accounts a ON a.program_id = e.program_id AND a.id = e.account_id
             WHERE e.program_id = p_program_id AND e.transaction_id = original.id
               AND a.balance IS NOT NULL
             GROUP BY a.id, a.kind, a.balance
        LOOP
            IF leg.kind <> 'debt' AND leg.balance + leg.amount < 0 THEN
                PERFORM public.ledger_refuse('insufficient_points',
                    format('%s points needed, %s there', -leg.amount, leg.balance));
            ELSIF leg.kind = 'debt' AND leg.balance + leg.amount > 0 THEN
                PERFORM public.ledger_refuse('not_reversible',
                    'the debt it recorded has been repaid since');
            END IF;
        END LOOP;
        UPDATE public.pending_lots p
           SET remaining = p.remaining - taken.points
          FROM (SELECT sum(e.amount) AS points
                  FROM public.entries e
                  JOIN public.accounts a ON a.program_id = e.program_id AND a.id = e.account_id
                 WHERE e.program_id = p_program_id AND e.transaction_id = original.id
                   AND a.kind = 'pending' AND a.asset = 'points') taken
         WHERE p.program_id = p_program_id AND p.earn_transaction_id = original.id
           AND taken.points > 0;
        v_txn := public.ledger_post(
            p_program_id, 'reverse', original.member_id, now(),
            ARRAY(SELECT e.account_id FROM public.entries e
                   WHERE e.program_id = p_program_id AND e.transaction_id = original.id
                   ORDER BY e.leg),
            ARRAY(SELECT -e.amount FROM public.entries e
                   WHERE e.program_id = p_program_id AND e.transaction_id = original.id
                   ORDER BY e.leg),
            p_order_id => original.order_id, p_reason => p_reason, p_key => p_key,
            p_reverses_id => original.id, p_day => p_day, p_give_back_from => original.id,
            p_take_own_txn => original.id);
        v_body := public.transactions_view(p_program_id, v_txn);
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
