-- Refuse a request for a business reason: `p_code` is the stable problem code the API
-- answers with (insufficient_points, hold_expired, ...), `p_detail` the human explanation.
-- Raised as SQLSTATE PLREF, which the posting functions catch to keep the refusal as the
-- request's answer (ledger_refusal), and which Python maps to its problem type.
CREATE FUNCTION public.ledger_refuse(p_code text, p_detail text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'PLREF', MESSAGE = p_code, DETAIL = coalesce(p_detail, '');
END $$;
