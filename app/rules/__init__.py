"""Pure program rules: functions of their inputs, no I/O, unit-tested without a database."""
