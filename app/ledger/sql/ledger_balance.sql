-- A member's points balance as answers show it: `available` net of debt (below zero for a
-- member who owes points under the allow_negative return policy), pending, held. In points:
-- what they are worth in money is added by the API (app/domain/money.py), not stored.
CREATE FUNCTION public.ledger_balance(p_program_id bigint, p_member_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'available', coalesce(sum(balance) FILTER (WHERE kind IN ('available', 'debt')),
                                     0),
               'pending', coalesce(sum(balance) FILTER (WHERE kind = 'pending'), 0),
               'held', coalesce(sum(balance) FILTER (WHERE kind = 'held'), 0))
      FROM public.accounts
     WHERE program_id = p_program_id AND member_id = p_member_id AND asset = 'points';
$$;
