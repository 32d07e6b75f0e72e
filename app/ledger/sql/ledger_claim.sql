-- Claim an idempotency key for the write about to happen in this database transaction, for
-- the writes that are not the engine's (which claims a whole batch at once). Returns
-- o_claimed = true when the caller should go on; otherwise the answer stored under the key
-- (o_status NULL: a refusal, its {code, detail} in o_body). A concurrent request with the
-- same key waits here until the first commits, then replays its answer. The same key with a
-- different request is refused (PL101 idempotency_conflict), and nothing is stored for that.
CREATE FUNCTION public.ledger_claim(
    p_program_id bigint, p_key text, p_fingerprint bytea,
    OUT o_claimed boolean, OUT o_status smallint, OUT o_body jsonb)
RETURNS record LANGUAGE plpgsql AS $$
DECLARE
    stored record;
BEGIN
    INSERT INTO public.idempotency_keys (program_id, key, fingerprint)
    VALUES (p_program_id, p_key, p_fingerprint)
        ON CONFLICT DO NOTHING;
    IF FOUND THEN
        o_claimed := true;
        RETURN;
    END IF;
    SELECT k.fingerprint, k.status_code, k.response INTO stored
      FROM public.idempotency_keys k WHERE k.program_id = p_program_id AND k.key = p_key;
    IF stored.fingerprint <> p_fingerprint OR stored.response IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL101',
            MESSAGE = 'idempotency_conflict',
            DETAIL = format('key %L was first used with a different request', p_key);
    END IF;
    o_claimed := false;
    o_status := stored.status_code;
    o_body := stored.response;
END $$;
