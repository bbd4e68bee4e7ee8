"""The capture service's process-wide side: started with the proxy port, stopped with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.capture.service import CaptureService
from gateway.state import STATE


async def capture_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx of the proxy app: the capture service lives as long as the proxy port."""
    state = app[STATE]
    policy = state.current.policy
    service = CaptureService(policy.errors, state.metrics, store_url=policy.store.url)
    await service.start()
    state.capture = service
    yield
    state.capture = None
    await service.stop()
