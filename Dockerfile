# alertd: one image for the engine; Redis and the MQTT broker are configured
# with ALERTD_REDIS_URL / ALERTD_MQTT_URL (unset: embedded ones start inside).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

# libgeos and GDAL come inside the shapely/pyogrio wheels; nothing else is needed at run time.
RUN useradd --system --create-home --home-dir /var/lib/alertd alertd
WORKDIR /opt/alertd
COPY pyproject.toml README.md ./
COPY alertd ./alertd
COPY adapters ./adapters
COPY geo ./geo
COPY simulations ./simulations
COPY config ./config
RUN pip install --no-cache-dir .

USER alertd
# Desk/admin API on 8080, public outputs (feeds, acks) on 8081: separate
# listeners so a deployment can put them on different network segments.
EXPOSE 8080 8081
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["alertd"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080", "--public-host", "0.0.0.0", "--public-port", "8081"]
