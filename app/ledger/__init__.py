"""The ledger core: posting, idempotency, the invariants, verify and rebuild. No HTTP, no feature.

The split between Python and SQL (docs/architecture.md has the whole picture):

* SQL owns the invariants and the mechanics of posting -- member locks, balances, the
  append-only tables, idempotency keys, the spending order of lots -- in the functions under
  `app/ledger/sql/` (one definition each; the migrations are generated from them):
  `ledger_post_events` (the engine: N events in a fixed number of statements),
  `ledger_post` (one posting, for holds, refunds, transfers, reversals, maintenance),
  `ledger_write` (the one writer of transactions, entries, balances, lots),
  `ledger_lock_members`, `ledger_lots_take`, `ledger_maintain`.
* Python owns every policy decision -- how many points, which account, when a lot lapses,
  which tier -- in `app.domain` (pure) and the features, and passes the results as arguments
  (`engine.PostingEvent`, `posting.Posting`: typed, named-argument calls via `app.sqlcall`).

Here: `engine` (the engine's call), `commit` (group commit: concurrent writes of one process as
one engine call), `posting` (single postings), `idempotency` (claim, answer, fingerprint),
`members` (external ids), `verify` / `rebuild` / `checks` (the checks features register).
"""
