"""The metrics port: /metrics in the Prometheus text format, from the gateway's own registry."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from gateway.state import STATE, GatewayState


async def _metrics(request: web.Request) -> web.Response:
    # Prometheus text by default; OpenMetrics for a scraper that asks for it.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encode(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


def build_metrics_app(state: GatewayState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/metrics", _metrics)
    return app
