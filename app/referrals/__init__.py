"""Referrals: codes, links made at enrolment, the bonus on the first qualifying order, and
its clawback when that order is refunded inside the return window."""
