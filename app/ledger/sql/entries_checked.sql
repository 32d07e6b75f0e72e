-- Invariant 2: every transaction balances per asset, and every leg names an account of the
-- transaction's program whose asset and owner it repeats, and a transaction that exists.
--
-- Checked once per INSERT statement, set-based over the statement's new rows (a transition
-- table): the posting functions write all legs of all their transactions in one INSERT. The
-- new legs of each transaction must sum to zero per asset, so a transaction stays balanced
-- whatever statement adds to it. The accounts and transactions named are fetched once each,
-- by their primary key (= ANY of the distinct ids), whatever the number of legs.
CREATE FUNCTION public.ledger_check_entries() RETURNS trigger LANGUAGE plpgsql
-- index scans whatever the table statistics say (a fresh or a huge table alike)
SET enable_seqscan = off AS $$
DECLARE
    bad record;
    v_program bigint;
    programs integer;
BEGIN
    SELECT min(n.program_id), count(DISTINCT n.program_id) INTO v_program, programs
      FROM new_entries n;
    IF programs > 1 THEN
        -- the service never writes legs of several programs in one statement
        RAISE EXCEPTION USING ERRCODE = 'PL002',
            MESSAGE = 'one INSERT into entries may not mix programs';
    END IF;

    -- (EXCEPT: a hashed set difference, never a join planned on guessed row counts)
    SELECT x.account_id INTO bad
      FROM (SELECT DISTINCT n.account_id, n.asset, n.member_id FROM new_entries n
            EXCEPT
            SELECT a.id, a.asset, a.member_id FROM public.accounts a
             WHERE a.program_id = v_program
               AND a.id = ANY (ARRAY(SELECT DISTINCT n.account_id FROM new_entries n))) x
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL002',
            MESSAGE = format('an entry does not match account %s (program, asset or owner)',
                             bad.account_id);
    END IF;

    IF (SELECT count(*) FROM public.transactions t
         WHERE t.program_id = v_program
           AND t.id = ANY (ARRAY(SELECT DISTINCT x.transaction_id FROM new_entries x)))
       <> (SELECT count(DISTINCT x.transaction_id) FROM new_entries x) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL002',
            MESSAGE = 'entries name a transaction that does not exist in their program';
    END IF;

    SELECT n.transaction_id, n.asset, sum(n.amount) AS total INTO bad
      FROM new_entries n
     GROUP BY n.transaction_id, n.asset
    HAVING sum(n.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'PL003',
            MESSAGE = format('transaction %s is unbalanced: its new %s entries sum to %s',
                             bad.transaction_id, bad.asset, bad.total);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER entries_checked AFTER INSERT ON public.entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_check_entries();
