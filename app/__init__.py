"""points-ledger: a headless loyalty-points service on an append-only double-entry ledger."""
