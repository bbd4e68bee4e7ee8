"""Tests of circuit breaking, retries, timeouts and bulkheads."""
