-- The answer body of an error caught by a posting function, when it is a business refusal:
-- one raised by ledger_refuse, or a CHECK of the accounts that the function's own checks
-- should have prevented (an overdraft, a balance beyond 2^53 - 1). NULL for anything else,
-- which the caller re-raises: a fault is never kept as an answer.
CREATE FUNCTION public.ledger_refusal(
    p_sqlstate text, p_message text, p_detail text, p_constraint text)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_sqlstate = 'PLREF' THEN
            jsonb_build_object('code', p_message, 'detail', nullif(p_detail, ''))
        WHEN p_sqlstate = '23514' AND p_constraint = 'no_overdraft' THEN
            jsonb_build_object('code', 'insufficient_points', 'detail', NULL)
        WHEN p_sqlstate = '23514' AND p_constraint = 'balance_in_json_range' THEN
            jsonb_build_object('code', 'amount_out_of_range',
                               'detail', 'the balance would exceed 9007199254740991')
        WHEN p_sqlstate = '22003' THEN
            jsonb_build_object('code', 'amount_out_of_range', 'detail', NULL)
    END;
$$;
