"""Accept a well-formed X-Request-ID or mint one; bind it to every log line of the request."""

from __future__ import annotations

import random
import re

from multidict import istr

from gateway.observability.logs import REQUEST_ID as REQUEST_ID_LOGGED
from gateway.server.connection import Answer, Handler
from gateway.server.request import ProxyRequest
from gateway.state import REQUEST_ID

# Ids travel into logs and upstream headers: accept only short, printable, header-safe ones.
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:+=/-]{1,128}$")
X_REQUEST_ID = istr("X-Request-ID")
_random_bits = random.getrandbits


async def request_id(request: ProxyRequest, handler: Handler) -> Answer:
    offered = request.headers.get("X-Request-ID")
    # 128 random bits as 32 hex digits, as uuid4().hex. An id names, it guards nothing: the
    # process's generator (reseeded in forked workers) spares a getrandom() syscall per request.
    rid = offered if offered and _WELL_FORMED.match(offered) else f"{_random_bits(128):032x}"
    request[REQUEST_ID] = rid
    # A connection's requests run one after another in its task, each setting its id first:
    # every line logged while serving one carries that one's id.
    REQUEST_ID_LOGGED.set(rid)
    return await handler(request)


def add_request_id_header(request: ProxyRequest, response: Answer) -> str:
    """Prepare hook: every response, streamed or not, carries the request id (ours replaces
    the one an upstream echoes; the id is header-safe, checked above or minted)."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        return ""
    headers = response.headers
    if X_REQUEST_ID in headers:
        del headers[X_REQUEST_ID]
    return "X-Request-ID: " + rid + "\r\n"
