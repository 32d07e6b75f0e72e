"""The pure domain: the program's rules as functions of their inputs, without I/O.

Earning (`earning`: the rules engine that prices an order), tiers (`tiers`), expiry dates
(`expiry`), referral codes (`referrals`), money values of points (`money`), local days
(`dates`), how far back a sale may be dated (`backdating`), the return window (`pending`) and
the value types they share (`types`). Nothing here imports anything else from `app`, nor a
database or HTTP library (import-linter checks it): the features read what a rule needs, call
it, and pass its answer to the ledger. Unit tests with worked examples: tests/unit/.
"""
