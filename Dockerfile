# alertd: one image for the engine (`alertd serve`) and its delivery workers (`alertd worker`).
# Redis and the MQTT broker are separate (deploy/compose.yaml); configure them with
# ALERTD_REDIS_URL / ALERTD_MQTT_URL (unset: embedded ones start inside, for trying it only).
#
# A Debian base with Debian's own Python; every Python package comes from PyPI (pip, in a
# virtual environment), nothing else is downloaded. Built the same way on any host:
#   docker build -t alertd .            (from the project root)

FROM debian:bookworm-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/alertd/.venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY alertd ./alertd
COPY adapters ./adapters
COPY geo ./geo
COPY simulations ./simulations
# Wheels only: shapely, pyogrio, lxml and hiredis bring their C libraries (GEOS, GDAL,
# libxml2) inside, so the image needs no compiler and no -dev packages.
RUN /opt/alertd/.venv/bin/pip install --only-binary=:all: --no-compile . \
 && /opt/alertd/.venv/bin/alertd --help > /dev/null

FROM debian:bookworm-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/alertd/.venv/bin:$PATH \
    ALERTD_GEO_CACHE=/var/lib/alertd/geo HOME=/var/lib/alertd
# The interpreter the virtual environment was made with, and CA certificates for TLS to
# Redis, the broker, SMTP relays and receivers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/alertd --create-home --shell /usr/sbin/nologin alertd
COPY --from=build /opt/alertd/.venv /opt/alertd/.venv
COPY config /opt/alertd/config
WORKDIR /var/lib/alertd
USER alertd
# Desk/admin API on 8080, public outputs (feeds, reads, acks) on 8081: separate listeners so
# a deployment can put them on different network segments. Workers listen on neither.
EXPOSE 8080 8081
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
  CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["alertd"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--public-host", "0.0.0.0", "--public-port", "8081"]
