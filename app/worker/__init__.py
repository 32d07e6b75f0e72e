"""Scheduled jobs (`points-ledger worker`)."""
