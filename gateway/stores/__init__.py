"""Rate-limit stores, chosen by the URL scheme of the policy's `store.url`."""

from __future__ import annotations

from gateway.policy.model import Store
from gateway.stores.base import LimitStore
from gateway.stores.failover import FailoverStore, OnSwitch
from gateway.stores.memory import MemoryStore


def open_store(config: Store, *, on_switch: OnSwitch | None = None, workers: int = 1) -> LimitStore:
    """memory:// is a bounded MemoryStore; every Redis scheme gets the failover around it.

    The `local` fallback divides each limit among every process: replicas x workers.
    """
    if config.url.startswith("memory://"):
        return MemoryStore(config.max_keys)
    from gateway.stores.redis import RedisStore  # redis-py is only loaded when it is used

    return FailoverStore(
        RedisStore(config.url, timeout=config.timeout, namespace=config.namespace),
        on_error=config.on_error,
        replicas=config.replicas * workers,
        retry_interval=config.retry_interval,
        fallback=MemoryStore(config.max_keys),
        on_switch=on_switch,
    )


__all__ = ["FailoverStore", "LimitStore", "MemoryStore", "open_store"]
