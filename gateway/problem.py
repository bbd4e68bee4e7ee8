"""The one renderer of rejections: RFC 9457 application/problem+json."""

from __future__ import annotations

import json

from aiohttp import web

from gateway.errors import Rejection

CONTENT_TYPE = "application/problem+json"


def problem_response(error: Rejection, *, request_id: str | None, instance: str) -> web.Response:
    body = {
        "type": error.problem_type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": instance,
        "reason": error.reason,
        "request_id": request_id,
        **error.extensions,
    }
    response = web.Response(
        status=error.status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type=CONTENT_TYPE,
    )
    for name, value in error.headers.items():
        response.headers[name] = value
    if error.closes_connection:
        response.force_close()
    return response
