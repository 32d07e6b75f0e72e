-- Invariant 1: the ledger is append-only. Corrections are new transactions (reverse, adjust).
-- Enforced in PostgreSQL for every role, the table owner included, so that no code path,
-- script or psql session can rewrite history.
CREATE FUNCTION public.ledger_forbid_mutation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'PL001',
        MESSAGE = format('%s is append-only: %s is not allowed', TG_TABLE_NAME, TG_OP),
        HINT = 'Post a correcting transaction (reverse or adjust) instead.';
END $$;

CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON public.transactions
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_mutation();

CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON public.transactions
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_forbid_mutation();

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON public.entries
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_mutation();

CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON public.entries
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_forbid_mutation();

CREATE TRIGGER lot_movements_append_only BEFORE UPDATE OR DELETE ON public.lot_movements
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_mutation();

-- Accounts are referenced by the ledger: they are never removed.
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON public.accounts
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_mutation();

CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON public.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_forbid_mutation();
