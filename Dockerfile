# syntax=docker/dockerfile:1.7
# The gateway image: wheels built in a full Python image, installed into a slim one that runs as
# a non-root user on a read-only root filesystem (it writes nowhere but /tmp).
#
#   docker build -t gateway .                                   # CRS from the upstream release
#   docker build --build-arg CRS_SOURCE=context -t gateway .    # CRS from ./crs/rules instead
#   docker build --build-arg CRS_SOURCE=none -t gateway .       # no CRS (attack detection off)
#   docker run --rm --read-only --tmpfs /tmp -p 8080:8080 -p 8081:8081 -p 9090:9090 gateway
#
# Signals: the ENTRYPOINT is in exec form, so the gateway is PID 1 and receives SIGTERM itself;
# its asyncio handlers drain (/readyz 503, then in-flight requests finish). It starts no child
# processes, so there are no zombies to reap; `docker run --init` (tini) is harmless if wanted.

ARG PYTHON_VERSION=3.11
# release: the OWASP CRS release tarball | context: COPY ./crs/rules | none: an empty directory
ARG CRS_SOURCE=release
ARG CRS_VERSION=4.28.0

# --- wheels: the gateway and every dependency, compiled where a compiler exists ------------------
# The gateway's wheel carries its mypyc-compiled modules (gateway/native.py): mypyc type-checks
# them against the dependencies, so those and mypy are installed first, and the wheel is built
# without build isolation. (DL3013: the versions are pyproject.toml's, as for every dependency.)
FROM python:${PYTHON_VERSION}-bookworm AS builder
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY gateway ./gateway
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[native]" \
    && pip wheel --no-cache-dir --no-build-isolation --wheel-dir /wheels .

# --- the Core Rule Set for the attack detector, from one of three sources -------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS crs-release
ARG CRS_VERSION
ADD https://github.com/coreruleset/coreruleset/archive/refs/tags/v${CRS_VERSION}.tar.gz /tmp/crs.tar.gz
RUN mkdir -p /crs \
    && tar -xzf /tmp/crs.tar.gz -C /crs --strip-components=1 \
    && rm /tmp/crs.tar.gz

FROM python:${PYTHON_VERSION}-slim-bookworm AS crs-context
COPY crs/rules /crs/rules

FROM python:${PYTHON_VERSION}-slim-bookworm AS crs-none
RUN mkdir -p /crs/rules

# hadolint ignore=DL3006
FROM crs-${CRS_SOURCE} AS crs

# --- the runtime ------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

# No .pyc writes (the root filesystem is read-only; pip compiled them at install). The listen
# addresses feed the ${GATEWAY_*_LISTEN} variables of the default policy (config/example.yaml);
# policies name the CRS as rules_dir: "${GATEWAY_CRS_RULES}".
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_PROXY_LISTEN=0.0.0.0:8080 \
    GATEWAY_HEALTH_LISTEN=0.0.0.0:8081 \
    GATEWAY_METRICS_LISTEN=0.0.0.0:9090 \
    GATEWAY_CRS_RULES=/usr/share/gateway/crs/rules

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin gateway

# The wheels are bind-mounted, not copied: they never become a layer of the final image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl

# The CRS lives outside /etc/gateway, so a ConfigMap mounted over /etc/gateway does not hide it.
COPY --from=crs /crs/rules /usr/share/gateway/crs/rules
COPY config/example.yaml /etc/gateway/policy.yaml

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp

# proxy, health, metrics; the admin port stays on the container's loopback.
EXPOSE 8080 8081 9090

# Slim images have no curl; the port follows GATEWAY_HEALTH_LISTEN.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('GATEWAY_HEALTH_LISTEN', ':8081').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/livez', timeout=2)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["gateway"]
CMD ["run", "--policy", "/etc/gateway/policy.yaml"]
