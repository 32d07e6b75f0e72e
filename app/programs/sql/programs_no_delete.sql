-- Programs own every row of the ledger: they are never removed.
CREATE TRIGGER programs_no_delete BEFORE DELETE ON public.programs
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_mutation();
