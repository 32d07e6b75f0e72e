-- GET /v1/holds/{id} in one call: the hold as of now. When its member's maintenance is due, it
-- runs first, under the member's lock (ledger_lock_members): a hold past its expiry shows as
-- expired, its points back. NULL when the program has no such hold.
CREATE FUNCTION public.holds_get(p_program_id bigint, p_hold_id bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_member_id bigint;
BEGIN
    SELECT h.member_id INTO v_member_id FROM public.holds h
     WHERE h.program_id = p_program_id AND h.id = p_hold_id;
    IF v_member_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM public.members m
                WHERE m.program_id = p_program_id AND m.id = v_member_id AND m.due_at <= now())
    THEN
        PERFORM 1 FROM public.ledger_lock_members(p_program_id, ARRAY[v_member_id]);
    END IF;
    RETURN public.holds_view(p_program_id, p_hold_id);
END $$;
