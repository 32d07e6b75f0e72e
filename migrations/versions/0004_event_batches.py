"""Batch ingestion: many earn/redeem events posted in one statement and one commit.

Each event runs exactly as a single `POST /v1/earn` or `/v1/redeem` would (`api_move_points`),
inside its own exception block, so one refused event (insufficient points, unknown member, an
id reused with another body…) rolls back only itself and never rejects the others.

Revision ID: 0004_event_batches
Revises: 0003_checkout_flows
Create Date: 2026-11-23
"""

from sqlscript import run_script

revision = "0004_event_batches"
down_revision = "0003_checkout_flows"
branch_labels = None
depends_on = None

FUNCTIONS = """
-- p_events: a JSON array of api_move_points arguments, one object per event (built by
-- app/events/service.py). Returns one JSON object per event, in order:
--   {"status": "posted" | "duplicate", "body": <the response>}  or
--   {"status": "rejected", "sqlstate": "...", "detail": "..."}
CREATE FUNCTION api_event_batch(p_program_id bigint, p_events jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    ev jsonb;
    r record;
    results jsonb[] := '{}';
    err_state text;
    err_detail text;
BEGIN
    -- Lock the accounts of every known member of the batch up front, in ascending id order:
    -- batches naming the same members in another order then queue instead of deadlocking.
    PERFORM 1 FROM accounts a
      JOIN members m ON m.id = a.member_id
     WHERE m.program_id = p_program_id
       AND m.external_id IN (SELECT DISTINCT value ->> 'member'
                               FROM jsonb_array_elements(p_events))
       AND a.program_id = p_program_id AND a.asset = 'points'
     ORDER BY a.id
       FOR NO KEY UPDATE OF a;
    FOR ev IN SELECT value FROM jsonb_array_elements(p_events) LOOP
        BEGIN
            SELECT * INTO r FROM api_move_points(
                p_program_id, ev ->> 'key', decode(ev ->> 'fingerprint', 'hex'),
                ev ->> 'kind', ev ->> 'member', (ev ->> 'enroll')::boolean,
                (ev ->> 'member_delta')::bigint, (ev ->> 'points')::bigint,
                (ev ->> 'counter_account_id')::bigint, (ev ->> 'occurred_at')::timestamptz,
                ev ->> 'order_id', NULL, coalesce(ev -> 'metadata', '{}'::jsonb),
                (ev ->> 'order_amount')::bigint, ev ->> 'order_currency',
                (ev ->> 'pending_until')::timestamptz, ev ->> 'store_id', ev ->> 'terminal_id');
            results := results || jsonb_build_object(
                'status', CASE WHEN r.o_replayed THEN 'duplicate' ELSE 'posted' END,
                'body', r.o_body);
        EXCEPTION
            -- refusals a client can cause; anything else is a fault and fails the batch
            WHEN SQLSTATE 'PL100' OR SQLSTATE 'PL101' OR SQLSTATE 'PL102'
                 OR SQLSTATE 'PL112' OR SQLSTATE 'PL113' OR SQLSTATE 'PL114'
                 OR SQLSTATE '22003' THEN
                GET STACKED DIAGNOSTICS err_state = RETURNED_SQLSTATE,
                                        err_detail = PG_EXCEPTION_DETAIL;
                results := results || jsonb_build_object(
                    'status', 'rejected', 'sqlstate', err_state, 'detail', err_detail);
        END;
    END LOOP;
    RETURN to_jsonb(results);
END $$;
"""


def upgrade() -> None:
    run_script(FUNCTIONS)


def downgrade() -> None:
    run_script("DROP FUNCTION api_event_batch(bigint, jsonb);")
