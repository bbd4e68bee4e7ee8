"""POSTs batches to a webhook, as our JSON or as a Slack incoming-webhook message."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from gateway.capture.alerts import AlertNotice
from gateway.capture.sinks import Item, SinkError, summary_lines
from gateway.policy.errors import WebhookSink as WebhookConfig

SLACK_MAX_BLOCKS = 50  # Slack refuses messages with more blocks than this


def json_payload(batch: Sequence[Item]) -> dict[str, object]:
    return {
        "source": "gateway",
        "events": [item.to_dict() for item in batch if not isinstance(item, AlertNotice)],
        "alerts": [item.to_dict() for item in batch if isinstance(item, AlertNotice)],
    }


def slack_payload(batch: Sequence[Item]) -> dict[str, object]:
    lines = summary_lines(batch)
    headline = lines[0] if len(lines) == 1 else f"gateway: {len(lines)} notices; {lines[0]}"
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": line}}
        for line in lines[:SLACK_MAX_BLOCKS]
    ]
    return {"text": headline, "blocks": blocks}


class WebhookSink:
    def __init__(self, config: WebhookConfig, session: aiohttp.ClientSession) -> None:
        self.name = config.name
        self._config = config
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=config.timeout)

    async def send(self, batch: Sequence[Item]) -> None:
        payload = slack_payload(batch) if self._config.format == "slack" else json_payload(batch)
        async with self._session.post(
            self._config.url, json=payload, headers=self._config.headers, timeout=self._timeout
        ) as response:
            if response.status >= 300:
                raise SinkError(f"webhook answered HTTP {response.status}")

    async def close(self) -> None:
        """The session is shared by every webhook sink and closed by the service."""
