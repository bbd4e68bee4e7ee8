"""Alert notices through the service to a real webhook: firing, cooldown, recovery."""

from __future__ import annotations

from gateway.capture.service import CaptureService
from gateway.observability.metrics import GatewayMetrics
from gateway.policy.loader import parse_policy
from tests.capture.conftest import FakeClock, Receiver


def _errors(url: str) -> str:
    return f"""
errors:
  sinks:
    - {{name: chat, type: webhook, url: "{url}", format: slack, events: false}}
  alerts:
    - {{name: bad-gateway, when: "ratio(5xx) > 20% over 1m", min_requests: 10, sinks: [chat],
       cooldown: 10m}}
routes: [{{name: api}}]
"""


async def test_alert_fires_is_held_by_cooldown_and_recovers(receiver: Receiver) -> None:
    """Slack gets FIRING then RESOLVED; a relapse within the cooldown is counted, not sent."""
    clock = FakeClock()
    metrics = GatewayMetrics()
    errors = parse_policy(_errors(receiver.url)).policy.errors
    service = CaptureService(errors, metrics, clock=clock, wall=clock)
    await service.start()
    try:

        def traffic(failures: int, successes: int) -> None:
            for _ in range(failures):
                service.observe(errors, 502, "upstream_connect_error")
            for _ in range(successes):
                service.observe(errors, 200, None)

        traffic(5, 5)
        service.evaluate_alerts()
        await service.flush()
        clock.advance(61)
        traffic(0, 10)
        service.evaluate_alerts()
        await service.flush()
        clock.advance(61)
        traffic(5, 5)  # relapse, 2 minutes after firing: within the 10 minute cooldown
        service.evaluate_alerts()
        await service.flush()
    finally:
        await service.stop()

    texts = [body["text"] for body in receiver.bodies]
    assert [t.split(" ", 1)[0] for t in texts] == ["[FIRING]", "[RESOLVED]"]
    assert "bad-gateway: ratio(5xx) > 20% over 1m (now 50.0%" in texts[0]
    assert receiver.bodies[1]["blocks"][0]["text"]["text"].startswith("[RESOLVED] bad-gateway")
    sample = metrics.registry.get_sample_value
    assert sample("gateway_alerts_total", {"alert": "bad-gateway", "state": "fired"}) == 1
    assert sample("gateway_alerts_total", {"alert": "bad-gateway", "state": "resolved"}) == 1
    assert sample("gateway_alerts_total", {"alert": "bad-gateway", "state": "suppressed"}) == 1
    assert [item["state"] for item in service.recent] == ["fired", "resolved"]
