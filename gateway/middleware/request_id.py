"""Accept a well-formed X-Request-ID or mint one; bind it to every log line of the request."""

from __future__ import annotations

import re
from typing import Final

from gateway.observability.request_log import LOGGED_REQUEST_ID, mint_request_id
from gateway.server.connection import Answer, Handler, drop_fields
from gateway.server.request import ProxyRequest
from gateway.state import REQUEST_ID

# Ids travel into logs and upstream headers: accept only short, printable, header-safe ones.
_WELL_FORMED: Final = re.compile(r"^[A-Za-z0-9._:+=/-]{1,128}$")
X_REQUEST_ID: Final = frozenset({"x-request-id"})


async def request_id(request: ProxyRequest, handler: Handler) -> Answer:
    offered = request.header("x-request-id")
    rid = offered if offered and _WELL_FORMED.match(offered) else mint_request_id()
    request[REQUEST_ID] = rid
    # A connection's requests run one after another in its task, each setting its id first:
    # every line logged while serving one carries that one's id.
    LOGGED_REQUEST_ID.set(rid)
    return await handler(request)


def add_request_id_header(request: ProxyRequest, response: Answer) -> str:
    """Prepare hook: every response, streamed or not, carries the request id (ours replaces
    the one an upstream echoes; the id is header-safe, checked above or minted)."""
    rid = request.get(REQUEST_ID)
    if rid is None:
        return ""
    drop_fields(response, X_REQUEST_ID)
    return "X-Request-ID: " + rid + "\r\n"
