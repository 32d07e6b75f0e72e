-- A hold as the API shows it, with its member's balance.
CREATE FUNCTION public.holds_view(p_program_id bigint, p_hold_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'hold_id', h.id, 'member', m.external_id, 'points', h.points,
        'captured_points', h.captured_points, 'status', h.status, 'order_id', h.order_id,
        'expires_at', h.expires_at, 'created_at', h.created_at, 'closed_at', h.closed_at,
        'balance', public.ledger_balance(h.program_id, h.member_id))
      FROM public.holds h
      JOIN public.members m ON m.program_id = h.program_id AND m.id = h.member_id
     WHERE h.program_id = p_program_id AND h.id = p_hold_id;
$$;
