"""The attack scan of the validation step: fill the CRS engine's view of the request, act on
its verdict (403 in block mode; log, count and capture in detect mode)."""

from __future__ import annotations

from gateway.errors import AttackDetected
from gateway.observability.logs import get_logger
from gateway.runtime import RouteRuntime
from gateway.server.request import ProxyRequest
from gateway.state import BODY, CLIENT_IP, UNENFORCED
from gateway.validation.attacks import AttackDetector
from gateway.validation.body import read_bounded
from gateway.validation.crs.request import RequestView

log = get_logger("gateway.attacks")


async def scan_for_attacks(
    request: ProxyRequest, route: RouteRuntime, detector: AttackDetector
) -> None:
    body = request.get(BODY)
    if body is None and request.body_exists:
        # The CRS reads ARGS_POST and REQUEST_BODY: the body must be whole, and bounded.
        idle = request.state.current.policy.limits.body_timeout
        # read_bounded itself raises PayloadTooLarge past max_body.
        body = await read_bounded(request.content, detector.max_body, request.content_length, idle)
        request[BODY] = body
    view = RequestView(
        method=request.method,
        uri=request.raw_path,
        protocol=f"HTTP/{request.version.major}.{request.version.minor}",
        headers=tuple(request.fields),
        body=body or b"",
        remote_addr=request.get(CLIENT_IP) or request.remote or "",
    )
    verdict = detector.evaluate(view, route.name)
    metrics = request.state.metrics
    metrics.attack_evaluation.labels(route.name).observe(verdict.elapsed)
    if verdict.failure is not None:
        metrics.attack_failures.labels(route.name, verdict.failure).inc()
        log.warning(
            "attack_scan_incomplete",
            route=route.name,
            failure=verdict.failure,
            decided="block" if verdict.blocked else "pass",
        )
    if not verdict.blocked:
        return
    outcome = "blocked" if detector.blocking else "detected"
    for family in verdict.families or ("other",):
        metrics.attack_matches.labels(route.name, family, outcome).inc()
    # Rule ids, families and the score; never the matched values, which are the client's payload.
    rejection = AttackDetected(
        f"The request's anomaly score {verdict.anomaly_score} reached the threshold "
        f"{verdict.threshold}",
        extensions={
            "rule_ids": list(verdict.rule_ids),
            "anomaly_score": verdict.anomaly_score,
            "families": list(verdict.families),
            **({"failure": verdict.failure} if verdict.failure else {}),
        },
    )
    log.warning(
        "attack_detected",
        route=route.name,
        outcome=outcome,
        rule_ids=list(verdict.rule_ids),
        anomaly_score=verdict.anomaly_score,
        families=list(verdict.families),
        fields=list(verdict.fields),
    )
    if detector.blocking:
        raise rejection
    request[UNENFORCED] = rejection
