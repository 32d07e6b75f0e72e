-- Every version of the earning rules is kept as it was: an earn records the version it was
-- computed with, so a later change never rewrites why points were given.
CREATE TRIGGER rule_sets_append_only BEFORE UPDATE OR DELETE ON public.rule_sets
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_mutation();
