"""Mails a batch through SMTP (aiosmtplib), upgrading the connection with STARTTLS."""

from __future__ import annotations

import json
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from urllib.parse import urlsplit

import aiosmtplib

from gateway.capture.alerts import AlertNotice
from gateway.capture.sinks import Item, summary_lines
from gateway.policy.errors import EmailSink as EmailConfig


def build_message(config: EmailConfig, batch: Sequence[Item]) -> EmailMessage:
    alerts = [item for item in batch if isinstance(item, AlertNotice)]
    if len(batch) == 1 and alerts:
        subject = f"{config.subject_prefix} {alerts[0].state.upper()}: {alerts[0].rule}"
    else:
        subject = f"{config.subject_prefix} {len(batch)} error notices"
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = ", ".join(config.to)
    message["Subject"] = subject
    details = json.dumps([item.to_dict() for item in batch], indent=2, default=str)
    message.set_content("\n".join(summary_lines(batch)) + "\n\n" + details + "\n")
    return message


class EmailSink:
    def __init__(self, config: EmailConfig) -> None:
        self.name = config.name
        self._config = config
        url = urlsplit(config.smtp)
        self._implicit_tls = url.scheme == "smtps"
        self._host = url.hostname or "localhost"
        self._port = url.port or (465 if self._implicit_tls else 587)
        self._tls = ssl.create_default_context(cafile=config.ca_file)

    async def send(self, batch: Sequence[Item]) -> None:
        config = self._config
        await aiosmtplib.send(
            build_message(config, batch),
            hostname=self._host,
            port=self._port,
            use_tls=self._implicit_tls,
            start_tls=config.starttls and not self._implicit_tls,
            tls_context=self._tls,
            username=config.username,
            password=config.password,
            timeout=config.timeout,
        )

    async def close(self) -> None:
        """Each batch opens its own connection: nothing stays open."""
