"""Input validation: limits, bounded body reading, JSON limits, JSON Schema, sanitization, SSRF.

The engines here never import aiohttp.web; gateway/middleware/validation.py adapts the request.
"""
