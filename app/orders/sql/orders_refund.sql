-- POST /v1/orders/{id}/refunds and /cancel, in one call: take back the points an order earned
-- in proportion to the money refunded, and on cancellation give back the points redeemed on it.
--
-- Cumulative rounding: after refunding R of an order of amount A, floor(earned x R / A)
-- points have been taken back in total, so partial refunds add up exactly to a full one (and
-- likewise the qualifying credit, so a refunded order can cost a tier). Points come back from
-- the order's pending points first, then from available (the order's own lots first); what
-- the member has already spent follows `p_return_policy`: cap_at_zero takes what is there and
-- writes the rest off, allow_negative puts the member in debt, which later credits repay. The
-- points given back on cancellation can pay for the take-back. Python decides the policy
-- inputs: the return policy, the local day, and when the points given back lapse.
--
-- Refusals (order_not_found, order_cancelled, currency_mismatch, refund_exceeds_order) are
-- kept as the answer under the key, like the postings.
CREATE FUNCTION public.orders_refund(
    p_program_id bigint, p_key text, p_fingerprint bytea, p_order_id text, p_amount bigint,
    p_currency text, p_reason text, p_cancel boolean, p_return_policy text, p_day date,
    p_lot_expires_at timestamptz)
RETURNS TABLE (o_replayed boolean, o_status smallint, o_body jsonb, o_member_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    claim record;
    o public.orders;
    acct record;
    refund_amount bigint;
    take bigint := 0;
    q_take bigint := 0;
    give bigint := 0;
    from_pending bigint := 0;
    from_available bigint := 0;
    owed_more bigint := 0;
    written_off bigint := 0;
    lot public.pending_lots;
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
        RETURN QUERY SELECT true, claim.o_status, claim.o_body, NULL::bigint;
        RETURN;
    END IF;
    SELECT * INTO o FROM public.orders WHERE program_id = p_program_id AND order_id = p_order_id;
    IF FOUND THEN
        PERFORM 1 FROM public.ledger_lock_members(p_program_id, ARRAY[o.member_id]);
    END IF;
    BEGIN
        IF o.order_id IS NULL OR (o.amount IS NULL AND NOT p_cancel) THEN
            PERFORM public.ledger_refuse('order_not_found',
                format('no order %L earned points in this program', p_order_id));
        END IF;
        SELECT * INTO o FROM public.orders
         WHERE program_id = p_program_id AND order_id = p_order_id
           FOR UPDATE;
        IF o.cancelled_at IS NOT NULL THEN
            PERFORM public.ledger_refuse('order_cancelled',
                                         format('order %L was cancelled', p_order_id));
        END IF;
        IF p_currency IS NOT NULL AND p_currency IS DISTINCT FROM o.currency THEN
            PERFORM public.ledger_refuse('currency_mismatch',
                                         format('the order is in %s', o.currency));
        END IF;
        refund_amount := CASE WHEN p_cancel THEN coalesce(o.amount, 0) - o.refunded_amount
                              ELSE p_amount END;
        IF o.refunded_amount + refund_amount > coalesce(o.amount, 0) THEN
            PERFORM public.ledger_refuse('refund_exceeds_order',
                format('%s of %s already refunded', o.refunded_amount, o.amount));
        END IF;
        SELECT max(a.id) FILTER (WHERE a.asset = 'points' AND a.kind = 'available') AS available,
               max(a.balance) FILTER (WHERE a.asset = 'points' AND a.kind = 'available')
                   AS available_balance,
               max(a.id) FILTER (WHERE a.asset = 'points' AND a.kind = 'pending') AS pending,
               max(a.id) FILTER (WHERE a.asset = 'points' AND a.kind = 'debt') AS debt,
               max(a.id) FILTER (WHERE a.asset = 'qualifying' AND a.kind = 'available')
                   AS qualifying,
               (SELECT x.id FROM public.accounts x
                 WHERE x.program_id = p_program_id AND x.member_id IS NULL
                   AND x.asset = 'points' AND x.kind = 'issuance') AS issuance,
               (SELECT x.id FROM public.accounts x
                 WHERE x.program_id = p_program_id AND x.member_id IS NULL
                   AND x.asset = 'points' AND x.kind = 'redemption') AS redemption,
               (SELECT x.id FROM public.accounts x
                 WHERE x.program_id = p_program_id AND x.member_id IS NULL
                   AND x.asset = 'qualifying' AND x.kind = 'issuance') AS qualifying_issuance
          INTO acct
          FROM public.accounts a
         WHERE a.program_id = p_program_id AND a.member_id = o.member_id;

        IF coalesce(o.amount, 0) > 0 THEN
            take := floor(o.earned_points::numeric * (o.refunded_amount + refund_amount)
                          / o.amount)::bigint - o.points_taken_back - o.points_written_off;
            q_take := floor(o.earned_qualifying::numeric * (o.refunded_amount + refund_amount)
                            / o.amount)::bigint - o.qualifying_taken_back;
        END IF;
        IF p_cancel THEN
            give := o.redeemed_points - o.redeemed_returned;
        END IF;
        IF take > 0 THEN
            SELECT * INTO lot FROM public.pending_lots
             WHERE program_id = p_program_id AND order_id = p_order_id AND remaining > 0
               AND member_id = o.member_id
             ORDER BY id LIMIT 1
               FOR UPDATE;
            IF FOUND THEN
                from_pending := least(lot.remaining, take);
                UPDATE public.pending_lots SET remaining = remaining - from_pending
                 WHERE program_id = p_program_id AND id = lot.id;
            END IF;
            from_available := least(take - from_pending, acct.available_balance + give);
            IF p_return_policy = 'allow_negative' THEN
                owed_more := take - from_pending - from_available;
            ELSE
                written_off := take - from_pending - from_available;
            END IF;
        END IF;

        IF take - written_off > 0 OR give > 0 OR q_take > 0 THEN
            v_txn := public.ledger_post(
                p_program_id, CASE WHEN p_cancel THEN 'cancel' ELSE 'refund' END, o.member_id,
                now(),
                ARRAY[acct.pending, acct.available, acct.debt, acct.issuance, acct.available,
                      acct.redemption, acct.qualifying, acct.qualifying_issuance],
                ARRAY[-from_pending, -from_available, -owed_more,
                      from_pending + from_available + owed_more, give, -give, -q_take, q_take],
                p_order_id => p_order_id, p_reason => p_reason,
                p_metadata => jsonb_build_object(
                    'refund_amount', refund_amount, 'points_taken_back', take - written_off,
                    'points_written_off', written_off, 'redeemed_points_returned', give,
                    'qualifying_taken_back', q_take),
                p_key => p_key, p_day => p_day, p_lot_expires_at => p_lot_expires_at,
                p_take_order => p_order_id);
        END IF;
        UPDATE public.orders
           SET refunded_amount = refunded_amount + refund_amount,
               points_taken_back = points_taken_back + take - written_off,
               points_written_off = points_written_off + written_off,
               qualifying_taken_back = qualifying_taken_back + q_take,
               redeemed_returned = redeemed_returned + give,
               cancelled_at = CASE WHEN p_cancel THEN now() END
         WHERE program_id = p_program_id AND order_id = p_order_id
        RETURNING * INTO o;

        v_body := jsonb_build_object(
            'order_id', p_order_id,
            'member', (SELECT external_id FROM public.members
                        WHERE program_id = p_program_id AND id = o.member_id),
            'transaction_id', v_txn,
            'refund_amount', refund_amount,
            'currency', o.currency,
            'points_taken_back', take - written_off,
            'points_written_off', written_off,
            'redeemed_points_returned', give,
            'order', jsonb_build_object(
                'amount', o.amount, 'refunded_amount', o.refunded_amount,
                'earned_points', o.earned_points, 'points_taken_back', o.points_taken_back,
                'points_written_off', o.points_written_off,
                'redeemed_points', o.redeemed_points, 'redeemed_returned', o.redeemed_returned,
                'cancelled', o.cancelled_at IS NOT NULL),
            'balance', public.ledger_balance(p_program_id, o.member_id));
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
    RETURN QUERY SELECT false, v_status, v_body, o.member_id;
END $$;
