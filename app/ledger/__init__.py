"""The ledger core: posting, idempotency, invariants, verify and rebuild. Knows nothing of HTTP.

The tables, triggers and PL/pgSQL posting functions live in the alembic revisions under
`migrations/versions/`; this package is the Python side that calls them.
"""
