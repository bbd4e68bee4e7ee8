"""Real local receivers for the capture sinks: a webhook server, Sentry's ingest, an SMTP server."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.observability.logs import configure_logging
from tests.conftest import GatewayFactory, free_port


class FakeClock:
    """A clock the tests move by hand; nothing sleeps to make time pass."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll until I/O done elsewhere (a thread, a socket) has arrived; fails after `within` s."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class Receiver:
    """An aiohttp server that records every POST; the first `fail` answers are 500s."""

    server: TestServer
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    fail: int = 0
    attempts: int = 0

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on a free loopback port."""
    state: Receiver

    async def hook(request: web.Request) -> web.Response:
        state.attempts += 1
        if state.fail > 0:
            state.fail -= 1
            return web.Response(status=500, text="try later")
        raw = await request.read()
        state.raw.append(raw)
        state.bodies.append(json.loads(raw))
        state.headers.append(dict(request.headers))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app)
    await server.start_server()
    state = Receiver(server)
    yield state
    await server.close()


@dataclass
class SentryIngest:
    """Stands in for Sentry: accepts envelopes and keeps their event items, parsed."""

    server: TestServer
    events: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"http://public@{self.server.host}:{self.server.port}/1"


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Sentry's envelope: a header line, then (item header line, payload) pairs."""
    lines = body.split(b"\n")
    items = []
    index = 1
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        header = json.loads(lines[index])
        payload = lines[index + 1] if index + 1 < len(lines) else b""
        items.append((header, payload))
        index += 2
    return items


@pytest.fixture
async def sentry_ingest() -> AsyncIterator[SentryIngest]:
    """A local HTTP endpoint speaking Sentry's envelope ingest protocol."""
    state: SentryIngest

    async def envelope(request: web.Request) -> web.Response:
        body = await request.read()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        state.raw.append(body)
        state.auth.append(request.headers.get("X-Sentry-Auth", ""))
        for header, payload in parse_envelope(body):
            if header.get("type") == "event":
                state.events.append(json.loads(payload))
        return web.json_response({"id": "ok"})

    app = web.Application()
    app.router.add_post("/api/{project}/envelope/", envelope)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state = SentryIngest(server)
    yield state
    await server.close()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl CLI."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    content: bytes
    tls: bool


class _Handler:
    def __init__(self) -> None:
        self.mails: list[Mail] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.mails.append(
            Mail(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                content,
                tls=session.ssl is not None,
            )
        )
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    cert: Path
    handler: _Handler

    @property
    def mails(self) -> list[Mail]:
        return self.handler.mails


@pytest.fixture
def smtp_server(tls_cert: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """An aiosmtpd server on a free port that refuses mail until the client did STARTTLS."""
    cert, key = tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = _Handler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    yield SmtpServer(port, cert, handler)
    controller.stop()


@pytest.fixture
def log_stream(make_gateway: GatewayFactory) -> Iterator[io.StringIO]:
    """Where the test sends the gateway's log lines after start (start() configures logging).

    It depends on make_gateway so that it is torn down first, before the gateway logs its stop.
    """
    stream = io.StringIO()
    yield stream
    configure_logging("info")
