-- Test oracle (never installed in the service): an independent implementation of
-- app.domain.expiry.lot_expires_at on PostgreSQL's own calendar and time zone database, created
-- in the session's pg_temp schema by tests/test_expiry.py, which compares the two on DST
-- changes, month ends and random dates. The service computes lot dates in Python only.

-- The first instant of local day p_day in p_timezone, like app.domain.dates.start_of_day
-- (zoneinfo fold=0). PostgreSQL reads an ambiguous local midnight (clocks going back from
-- 01:00 to 00:00, as in Cuba) as the later of its two instants; the day begins at the earlier
-- one, which has the offset in effect the day before. A missing midnight (clocks jumping
-- from 24:00 to 01:00, as in Chile) is read with the offset before the change by both.
CREATE FUNCTION pg_temp.local_day_start(p_day date, p_timezone text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_local timestamp := p_day::timestamp;
    v_at timestamptz := p_day::timestamp AT TIME ZONE p_timezone;
    v_before timestamptz := v_at - interval '1 day';
    v_earlier timestamptz := (v_local - ((v_before AT TIME ZONE p_timezone)
                                         - (v_before AT TIME ZONE 'UTC'))) AT TIME ZONE 'UTC';
BEGIN
    IF v_earlier < v_at AND v_earlier AT TIME ZONE p_timezone = v_local THEN
        RETURN v_earlier;
    END IF;
    RETURN v_at;
END $$;

-- The instant a lot earned at p_earned_at lapses under p_policy (NULL: no date of its own):
-- the start of the local day after its last valid day. Mirrors app.domain.expiry.lot_expires_at
-- (tests compare the two); dates are local dates in p_timezone.
CREATE FUNCTION pg_temp.lot_expires_at(p_policy jsonb, p_timezone text, p_earned_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    earned_on date := (p_earned_at AT TIME ZONE p_timezone)::date;
    last_day date;
    first_day date;
BEGIN
    CASE p_policy ->> 'kind'
    WHEN 'lifetime' THEN
        last_day := (earned_on + make_interval(months => (p_policy ->> 'months')::int))::date;
        IF p_policy ->> 'round_to' = 'month_end' THEN
            last_day := (date_trunc('month', last_day) + interval '1 month - 1 day')::date;
        ELSIF p_policy ->> 'round_to' = 'quarter_end' THEN
            last_day := (date_trunc('quarter', last_day) + interval '3 months - 1 day')::date;
        END IF;
    WHEN 'fixed_date' THEN
        first_day := make_date(extract(year FROM earned_on)::int, (p_policy ->> 'month')::int,
                               (p_policy ->> 'day')::int);
        IF first_day < earned_on THEN
            first_day := (first_day + interval '1 year')::date;
        END IF;
        last_day := (first_day + make_interval(
            years => coalesce((p_policy ->> 'years_after')::int, 1)))::date;
    ELSE
        RETURN NULL;
    END CASE;
    RETURN pg_temp.local_day_start(last_day + 1, p_timezone);
END $$;

