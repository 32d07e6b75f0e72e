"""`python -m app` is the `points-ledger` command."""

from app.cli import main

main()
