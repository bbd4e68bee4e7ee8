"""Resilience for upstream calls: circuit breaker, retries, timeouts and bulkhead."""
