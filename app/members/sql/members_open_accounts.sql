-- A member's accounts: points available / pending / held / debt, and the qualifying credit
-- of the tier metric. Opened with the member, whichever statement enrols it (an earn naming a
-- new member, POST /v1/members, an import), one INSERT per enrolling statement.
CREATE FUNCTION public.members_open_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.accounts (program_id, member_id, asset, kind, balance)
    SELECT m.program_id, m.id, a.asset, a.kind, 0
      FROM new_members m
     CROSS JOIN (VALUES ('points', 'available'), ('points', 'pending'), ('points', 'held'),
                        ('points', 'debt'), ('qualifying', 'available')) AS a (asset, kind);
    RETURN NULL;
END $$;

CREATE TRIGGER members_open_accounts AFTER INSERT ON public.members
    REFERENCING NEW TABLE AS new_members
    FOR EACH STATEMENT EXECUTE FUNCTION public.members_open_accounts();

-- Members are referenced by the ledger: they are never removed.
CREATE TRIGGER members_no_delete BEFORE DELETE ON public.members
    FOR EACH ROW EXECUTE FUNCTION public.ledger_forbid_mutation();
