"""Events grouped by fingerprint: count, first and last seen, in a bounded in-memory store.

Each replica counts what it saw here; when the policy's store is Redis, the recorded events are
also passed on (through `outbox`) to shared_groups.RedisGroups, which replicas share. The least
recently seen group is evicted when the store is full.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

from gateway.capture.events import ErrorEvent


@dataclass(slots=True)
class Group:
    fingerprint: str
    title: str
    reason: str
    category: str
    route: str
    status: int
    exception_type: str | None
    count: int
    first_seen: float
    last_seen: float
    last_event_id: str


class GroupStore:
    """At most `max_groups` groups, most recently seen last."""

    def __init__(self, max_groups: int = 1000) -> None:
        self.max_groups = max_groups
        self.evicted = 0
        self._groups: OrderedDict[str, Group] = OrderedDict()
        self.outbox: list[ErrorEvent] | None = None
        """When set, every recorded event is appended for the shared store to take."""

    def record(self, event: ErrorEvent) -> Group:
        group = self._groups.get(event.fingerprint)
        if group is None:
            group = Group(
                fingerprint=event.fingerprint,
                title=event.title,
                reason=event.reason,
                category=event.category,
                route=event.route,
                status=event.status,
                exception_type=event.exception.type if event.exception else None,
                count=0,
                first_seen=event.timestamp,
                last_seen=event.timestamp,
                last_event_id=event.id,
            )
            self._groups[event.fingerprint] = group
            while len(self._groups) > self.max_groups:
                self._groups.popitem(last=False)
                self.evicted += 1
        else:
            self._groups.move_to_end(event.fingerprint)
        group.count += 1
        if self.outbox is not None:
            self.outbox.append(event)
        group.last_seen = max(group.last_seen, event.timestamp)
        group.last_event_id = event.id
        return group

    def __len__(self) -> int:
        return len(self._groups)

    def get(self, fingerprint: str) -> Group | None:
        return self._groups.get(fingerprint)

    def snapshot(self) -> list[dict[str, object]]:
        """Every group, the most frequent first."""
        return [asdict(g) for g in sorted(self._groups.values(), key=lambda g: -g.count)]
