-- Keep the answer to a claimed key (see ledger_claim): a success (status, body, the
-- transaction it posted) or a refusal (status NULL, body {code, detail}). Replays return it.
CREATE FUNCTION public.ledger_answer(
    p_program_id bigint, p_key text, p_status smallint, p_body jsonb,
    p_transaction_id bigint DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
    UPDATE public.idempotency_keys
       SET status_code = p_status, response = p_body, transaction_id = p_transaction_id
     WHERE program_id = p_program_id AND key = p_key
    RETURNING response;
$$;
