"""points-ledger benchmark harness: run it with `bench/run` (see bench/bench.py)."""
