"""Each sink against a real local receiver: webhook, Slack format, Sentry ingest, SMTP."""

from __future__ import annotations

import email
from email import policy as email_policy

import aiohttp
import pytest
import sentry_sdk

from gateway.capture.alerts import AlertNotice
from gateway.capture.events import ErrorEvent, build_event
from gateway.capture.processors import fingerprinter, run_chain, scrubber
from gateway.capture.scrubbing import Scrubber
from gateway.capture.sinks.email import EmailSink
from gateway.capture.sinks.sentry import SentrySink
from gateway.capture.sinks.webhook import WebhookSink
from gateway.policy.errors import EmailSink as EmailConfig
from gateway.policy.errors import SentrySink as SentryConfig
from gateway.policy.errors import WebhookSink as WebhookConfig
from tests.capture.conftest import Receiver, SentryIngest, SmtpServer, wait_for
from tests.conftest import free_port

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _scrubbed_event() -> ErrorEvent:
    raw = build_event(
        reason="upstream_5xx",
        status=502,
        route="orders",
        method="POST",
        path="/orders",
        query="token=s3cret&page=1",
        headers=[("Authorization", "Bearer s3cret"), ("traceparent", TRACEPARENT)],
        body=b'{"password": "s3cret", "item": 7}',
        body_limit=256,
        client_ip="198.51.100.7",
        client_mode="hash",
        client_salt=b"x",
        duration=0.25,
        request_id="req-42",
        upstream="127.0.0.1:9999",
        breaker_state="closed",
    )
    event, _ = run_chain([scrubber(Scrubber(), 256), fingerprinter(["reason", "route"])], raw)
    assert event is not None
    return event


NOTICE = AlertNotice(
    "upstream-errors", "fired", "rate(upstream_5xx) > 5/min", "6.00/min", 40, 60.0, ("hook",), 1.0
)


async def test_webhook_posts_events_and_alerts_as_json(receiver: Receiver) -> None:
    """The JSON webhook receives the batch's events and alerts in one POST."""
    async with aiohttp.ClientSession() as session:
        sink = WebhookSink(WebhookConfig(name="hook", type="webhook", url=receiver.url), session)
        await sink.send([_scrubbed_event(), NOTICE])
    (body,) = receiver.bodies
    (event,) = body["events"]
    assert (event["reason"], event["route"], event["status"]) == ("upstream_5xx", "orders", 502)
    assert event["headers"]["authorization"] == "[Filtered]"
    assert body["alerts"][0]["rule"] == "upstream-errors"
    assert b"s3cret" not in receiver.raw[0]


async def test_slack_format_is_an_incoming_webhook_message(receiver: Receiver) -> None:
    """The Slack format posts `text` and mrkdwn section blocks, one line per item."""
    config = WebhookConfig(name="chat", type="webhook", url=receiver.url, format="slack")
    async with aiohttp.ClientSession() as session:
        await WebhookSink(config, session).send([NOTICE])
    (body,) = receiver.bodies
    assert body["text"].startswith("[FIRING] upstream-errors")
    assert body["blocks"][0]["type"] == "section"
    assert body["blocks"][0]["text"]["type"] == "mrkdwn"


async def test_webhook_error_status_raises_for_the_worker(receiver: Receiver) -> None:
    """A non-2xx answer is a failed delivery the worker can retry."""
    receiver.fail = 1
    async with aiohttp.ClientSession() as session:
        sink = WebhookSink(WebhookConfig(name="hook", type="webhook", url=receiver.url), session)
        with pytest.raises(Exception, match="HTTP 500"):
            await sink.send([NOTICE])


async def test_sentry_sdk_delivers_an_issue_with_tags_and_request(
    sentry_ingest: SentryIngest,
) -> None:
    """The real sentry-sdk posts an envelope whose event carries tags, request and trace."""
    sink = SentrySink(
        SentryConfig(name="sentry", type="sentry", dsn=sentry_ingest.dsn, environment="test")
    )
    event = _scrubbed_event()
    await sink.send([event])
    await sink.close()
    await wait_for(lambda: len(sentry_ingest.events) == 1)
    (received,) = sentry_ingest.events
    assert received["event_id"] == event.id
    assert received["tags"]["reason"] == "upstream_5xx"
    assert received["tags"]["route"] == "orders"
    assert received["tags"]["breaker_state"] == "closed"
    assert received["fingerprint"] == [event.fingerprint]
    assert received["request"]["method"] == "POST"
    assert received["contexts"]["trace"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert received["environment"] == "test"
    assert "sentry_key=public" in sentry_ingest.auth[0]
    assert b"s3cret" not in sentry_ingest.raw[0]
    assert not sentry_sdk.get_client().is_active()  # the global hub was never initialised


async def test_sentry_losses_are_reported(sentry_ingest: SentryIngest) -> None:
    """When Sentry cannot be reached, the SDK's loss is reported to the sink's hook."""
    lost: list[tuple[str, str]] = []
    dsn = f"http://public@127.0.0.1:{free_port()}/1"  # nothing listens there
    sink = SentrySink(
        SentryConfig(name="sentry", type="sentry", dsn=dsn), on_lost=lambda *a: lost.append(a)
    )
    await sink.send([_scrubbed_event()])
    await sink.close()
    await wait_for(lambda: bool(lost))
    assert lost == [("sentry", "lost")]


async def test_email_goes_through_starttls(smtp_server: SmtpServer) -> None:
    """An alert is mailed over STARTTLS to a server that refuses plain-text mail."""
    config = EmailConfig(
        name="mail",
        type="email",
        smtp=f"smtp://127.0.0.1:{smtp_server.port}",
        sender="gw@example.com",
        to=("ops@example.com",),
        ca_file=str(smtp_server.cert),
    )
    await EmailSink(config).send([NOTICE])
    (mail,) = smtp_server.mails
    assert mail.tls
    assert mail.recipients == ["ops@example.com"]
    message = email.message_from_bytes(mail.content, policy=email_policy.default)
    assert message["Subject"] == "[gateway] FIRED: upstream-errors"
    assert "rate(upstream_5xx) > 5/min" in message.get_content()  # type: ignore[attr-defined]


async def test_email_refuses_an_unverified_server(smtp_server: SmtpServer) -> None:
    """Without the CA of a self-signed server, STARTTLS fails and nothing is sent."""
    config = EmailConfig(
        name="mail",
        type="email",
        smtp=f"smtp://127.0.0.1:{smtp_server.port}",
        sender="gw@example.com",
        to=("ops@example.com",),
    )
    with pytest.raises(Exception):  # noqa: B017 - aiosmtplib wraps the ssl error its own way
        await EmailSink(config).send([NOTICE])
    assert smtp_server.mails == []
