-- A transaction as the API shows it: its member, what it did to the member's spendable points
-- (available and pending; held points are reserved, not spendable), its reversal either way,
-- and every leg with the account's owner and kind. NULL when the program has no such id.
CREATE FUNCTION public.transactions_view(p_program_id bigint, p_transaction_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', t.id, 'kind', t.kind, 'member', m.external_id,
        'points', coalesce((SELECT sum(e.amount)
                              FROM public.entries e
                              JOIN public.accounts a
                                ON a.program_id = e.program_id AND a.id = e.account_id
                             WHERE e.program_id = t.program_id AND e.transaction_id = t.id
                               AND e.member_id = t.member_id AND a.asset = 'points'
                               AND a.kind IN ('available', 'pending')), 0),
        'occurred_at', t.occurred_at, 'recorded_at', t.recorded_at, 'order_id', t.order_id,
        'reason', t.reason, 'metadata', t.metadata, 'reverses', t.reverses_id,
        'reversed_by', (SELECT r.id FROM public.transactions r
                         WHERE r.program_id = t.program_id AND r.reverses_id = t.id),
        'entries', (SELECT jsonb_agg(jsonb_build_object(
                               'account_id', e.account_id,
                               'owner', coalesce(o.external_id, 'program'),
                               'account', a.kind, 'asset', e.asset, 'amount', e.amount)
                             ORDER BY e.leg)
                      FROM public.entries e
                      JOIN public.accounts a
                        ON a.program_id = e.program_id AND a.id = e.account_id
                      LEFT JOIN public.members o
                        ON o.program_id = e.program_id AND o.id = e.member_id
                     WHERE e.program_id = t.program_id AND e.transaction_id = t.id))
      FROM public.transactions t
      LEFT JOIN public.members m ON m.program_id = t.program_id AND m.id = t.member_id
     WHERE t.program_id = p_program_id AND t.id = p_transaction_id;
$$;
