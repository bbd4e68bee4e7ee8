"""Error capture: failures become scrubbed, grouped events delivered to sinks, and alert rules.

request ─► middleware/capture.py builds an ErrorEvent (raw) ─► intake queue (bounded)
drain task: processors (scrub ─► fingerprint ─► drop ─► group ─► sample) ─► sink queues
sink workers: batch ─► send with retry and backoff (webhook, slack, sentry, email)
every response also feeds the alert windows; a ticker turns rule transitions into notices.
"""
