"""Who may use the admin port: loopback peers by default, bearer-token holders when a token is set.

The loader refuses a non-loopback `listen.admin` without `admin.token`, so a port reachable from
the network always asks for the token. Without a token the peer's own address is checked too, in
case the socket is reachable anyway (a port forward, a shared network namespace).
The page's HTML, script and style are served to anyone allowed to connect: they hold no data;
every /admin/ endpoint needs the token.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.errors import AdminForbidden, AdminUnauthorized, Rejection
from gateway.policy.admin import is_loopback_host
from gateway.problem import problem_response
from gateway.state import STATE

PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/", "/favicon.ico"})


def token_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    if header is None or header[:7].lower() != "bearer ":
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def peer_allowed(remote: str | None) -> bool:
    """Only loopback peers reach a tokenless admin port; an unknown peer (a UNIX socket) too."""
    return remote is None or remote == "" or is_loopback_host(remote)


def check_access(
    path: str, remote: str | None, authorization: str | None, token: str | None
) -> None:
    """Raise the Rejection a request to the admin port gets, or return when it may pass."""
    if token is None:
        if not peer_allowed(remote):
            raise AdminForbidden(f"{remote} is not a loopback address; set admin.token")
        return
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return
    if not token_matches(authorization, token):
        raise AdminUnauthorized(
            "Send the policy's admin.token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="gateway-admin"'},
        )


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Read per request: a reload that changes the token applies at once.
    token = request.app[STATE].current.policy.admin.token
    try:
        check_access(request.path, request.remote, request.headers.get("Authorization"), token)
    except Rejection as exc:
        return problem_response(exc, request_id=None, instance=request.path)
    return await handler(request)
