"""The proxy port's HTTP/1.1 server: asyncio protocols on llhttp (httptools), no framework.

aiohttp's web server costs more CPU per request than all the policies together
(../shared/notes/perf.md); this one parses with llhttp, hands the pipeline a `ProxyRequest`,
and writes answers straight to the transport. The health, metrics and admin ports stay aiohttp.
"""
