-- GET /v1/members/{id} in one call: the member with its points balance and pending lots.
-- A member whose maintenance is due (a pending release, a hold or lot expiry) is brought up
-- to date first, under its lock (ledger_lock_members), so a read never shows points the
-- worker has not got round to releasing, nor expired points as spendable. NULL when the
-- program has no such member. Money values and the referral code are added by the API.
CREATE FUNCTION public.members_view(p_program_id bigint, p_external_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_member_id bigint;
    v_due boolean;
    result jsonb;
BEGIN
    SELECT id, due_at <= now() INTO v_member_id, v_due FROM public.members
     WHERE program_id = p_program_id AND external_id = p_external_id;
    IF v_member_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF v_due THEN
        PERFORM 1 FROM public.ledger_lock_members(p_program_id, ARRAY[v_member_id]);
    END IF;
    SELECT jsonb_build_object(
        'id', m.id, 'external_id', m.external_id, 'birthday', m.birthday,
        'attributes', m.attributes, 'created_at', m.created_at,
        'balance', public.ledger_balance(m.program_id, m.id),
        'pending_lots', coalesce(
            (SELECT jsonb_agg(jsonb_build_object('points', l.remaining,
                                                 'available_at', l.release_at,
                                                 'order_id', l.order_id)
                              ORDER BY l.release_at, l.id)
               FROM public.pending_lots l
              WHERE l.program_id = m.program_id AND l.member_id = m.id AND l.remaining > 0),
            '[]'::jsonb))
      INTO result
      FROM public.members m
     WHERE m.program_id = p_program_id AND m.id = v_member_id;
    RETURN result;
END $$;
