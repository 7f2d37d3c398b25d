"""Settings, read from the environment (12-factor) with defaults that work on a laptop.

Unset ``ALERTD_REDIS_URL`` / ``ALERTD_MQTT_URL`` mean "start embedded ones"
(see ``alertd.embedded``), which is what makes ``make demo`` need nothing else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_optional_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


@dataclass
class Settings:
    redis_url: str | None = None
    mqtt_url: str | None = None
    admin_token: str | None = None
    key_prefix: str = "alertd"
    topic_prefix: str = "alerts/v1"  # MQTT topics live under it (several deployments on one broker)
    feed_lease_ttl_s: float = 15.0  # how long a dead ack listener / state publisher blocks its successor
    consumer_name: str | None = None  # defaults to host:pid
    max_body_bytes: int = 1_000_000
    # Work held by a consumer that went quiet for this long is taken over by
    # another; it must comfortably exceed the longest delivery attempt.
    claim_idle_s: float = 30.0
    default_timeout_s: float = 5.0
    flash_concurrency: int = 512
    routine_concurrency: int = 256
    http_connections: int = 512
    # What carries webhooks (issue 12; README "Which HTTP client carries the webhooks"):
    # "httptools" (the thin keep-alive client, a third of aiohttp's CPU per delivery),
    # "aiohttp" (what alertd used before), or "pyreqwest" (Rust; I/O off the loop's thread).
    http_client: str = "httptools"
    redis_connections: int = 64
    # Lane readers block this long in XREADGROUP; the Redis socket timeout must
    # stay well above it, or every quiet read would end in a timeout.
    lane_block_ms: int = 1000
    redis_socket_timeout_s: float = 5.0
    # Replicas that must hold an alert before it is answered 202 (Redis WAIT); None: one
    # with a Sentinel URL (a failover must not lose what was accepted), none otherwise.
    redis_wait_replicas: int | None = None
    redis_wait_ms: int = 500
    # Delivery work split over this many Redis slots (alertd/shards.py): on a Redis Cluster,
    # the number of masters spreads it over all of them; elsewhere 1 is all it needs.
    lane_shards: int = 1
    # "numlocal,numreplicas,timeout_ms": Redis WAITAOF after each accepted alert (Redis 7.2 or
    # later), so a 202 means the alert is fsynced to disk; start-up fails on an older Redis.
    redis_waitaof: str | None = None
    # Anonymous reads worked on at once, and waiting, before a 503 (alertd/public.py).
    public_concurrency: int = 2
    public_backlog: int = 64
    # Public requests per client address (alertd/ratelimit.py).
    public_rate_per_s: float = 20.0
    public_burst: float = 100.0
    # The flood guard on the desk side (alertd/ratelimit.py): this many refusals in the window
    # shut a caller out for the cooldown. Sign-in attempts count like any request.
    refusal_limit: int = 20
    refusal_window_s: float = 10.0
    refusal_cooldown_s: float = 10.0
    # /healthz answers 503 when a lane's oldest job has waited longer than this.
    health_flash_age_s: float = 30.0
    health_routine_age_s: float = 600.0
    retry_base_s: float = 0.5
    retry_max_s: float = 60.0
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 10.0
    default_expiry_h: float = 24.0
    # The retention policy (alertd/retention.py): an alert and its delivery records are
    # deleted this long after it stopped standing and its last delivery ended (0: never);
    # its dedup marker lives dedup_days longer; the sweeper runs every retention_sweep_s.
    retention_days: float = 30.0
    dedup_days: float = 30.0
    retention_sweep_s: float = 300.0
    call_signs: dict[str, str] = field(default_factory=dict)
    seed_file: str | None = None
    # PEM files: with both set, every CAP document alertd emits carries an XML-DSig signature.
    signing_key: str | None = None
    signing_cert: str | None = None
    # TLS (alertd/tls.py). The listeners' PEM pair (--tls-cert/--tls-key override it);
    # the public listener may have a pair of its own (internet vs. LGWAN side).
    tls_cert: str | None = None
    tls_key: str | None = None
    public_tls_cert: str | None = None
    public_tls_key: str | None = None
    # The private CA that signed a rediss:// Redis's or an mqtts:// broker's certificate.
    redis_ca_file: str | None = None
    mqtt_ca_file: str | None = None
    # The private CA of an SMTP relay that e-mail subscribers send through (STARTTLS or smtps://).
    smtp_ca_file: str | None = None
    # The broker login, when ALERTD_MQTT_URL does not carry one (alertd/broker.py).
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=os.environ.get("ALERTD_REDIS_URL") or None,
            mqtt_url=os.environ.get("ALERTD_MQTT_URL") or None,
            admin_token=os.environ.get("ALERTD_ADMIN_TOKEN") or None,
            key_prefix=os.environ.get("ALERTD_KEY_PREFIX", "alertd"),
            topic_prefix=os.environ.get("ALERTD_TOPIC_PREFIX", "alerts/v1"),
            feed_lease_ttl_s=_env_float("ALERTD_FEED_LEASE_TTL_S", 15.0),
            consumer_name=os.environ.get("ALERTD_CONSUMER") or None,
            max_body_bytes=_env_int("ALERTD_MAX_BODY_BYTES", 1_000_000),
            claim_idle_s=_env_float("ALERTD_CLAIM_IDLE_S", 30.0),
            default_timeout_s=_env_float("ALERTD_TIMEOUT_S", 5.0),
            retry_base_s=_env_float("ALERTD_RETRY_BASE_S", 0.5),
            retry_max_s=_env_float("ALERTD_RETRY_MAX_S", 60.0),
            breaker_threshold=_env_int("ALERTD_BREAKER_THRESHOLD", 5),
            breaker_cooldown_s=_env_float("ALERTD_BREAKER_COOLDOWN_S", 10.0),
            flash_concurrency=_env_int("ALERTD_FLASH_CONCURRENCY", 512),
            routine_concurrency=_env_int("ALERTD_ROUTINE_CONCURRENCY", 256),
            http_client=os.environ.get("ALERTD_HTTP_CLIENT") or "httptools",
            seed_file=os.environ.get("ALERTD_CONFIG") or None,
            signing_key=os.environ.get("ALERTD_SIGNING_KEY") or None,
            signing_cert=os.environ.get("ALERTD_SIGNING_CERT") or None,
            tls_cert=os.environ.get("ALERTD_TLS_CERT") or None,
            tls_key=os.environ.get("ALERTD_TLS_KEY") or None,
            public_tls_cert=os.environ.get("ALERTD_PUBLIC_TLS_CERT") or None,
            public_tls_key=os.environ.get("ALERTD_PUBLIC_TLS_KEY") or None,
            redis_ca_file=os.environ.get("ALERTD_REDIS_CA_FILE") or None,
            mqtt_ca_file=os.environ.get("ALERTD_MQTT_CA_FILE") or None,
            smtp_ca_file=os.environ.get("ALERTD_SMTP_CA_FILE") or None,
            mqtt_username=os.environ.get("ALERTD_MQTT_USERNAME") or None,
            mqtt_password=os.environ.get("ALERTD_MQTT_PASSWORD") or None,
            redis_socket_timeout_s=_env_float("ALERTD_REDIS_TIMEOUT_S", 5.0),
            redis_wait_replicas=_env_optional_int("ALERTD_REDIS_WAIT_REPLICAS"),
            redis_wait_ms=_env_int("ALERTD_REDIS_WAIT_MS", 500),
            lane_shards=_env_int("ALERTD_LANE_SHARDS", 1),
            redis_waitaof=os.environ.get("ALERTD_REDIS_WAITAOF") or None,
            health_flash_age_s=_env_float("ALERTD_HEALTH_FLASH_AGE_S", 30.0),
            public_rate_per_s=_env_float("ALERTD_PUBLIC_RATE", 20.0),
            public_burst=_env_float("ALERTD_PUBLIC_BURST", 100.0),
            refusal_limit=_env_int("ALERTD_REFUSAL_LIMIT", 20),
            refusal_window_s=_env_float("ALERTD_REFUSAL_WINDOW_S", 10.0),
            refusal_cooldown_s=_env_float("ALERTD_REFUSAL_COOLDOWN_S", 10.0),
            health_routine_age_s=_env_float("ALERTD_HEALTH_ROUTINE_AGE_S", 600.0),
            retention_days=_env_float("ALERTD_RETENTION_DAYS", 30.0),
            dedup_days=_env_float("ALERTD_DEDUP_DAYS", 30.0),
            retention_sweep_s=_env_float("ALERTD_RETENTION_SWEEP_S", 300.0),
        )

    def __post_init__(self) -> None:
        if self.redis_socket_timeout_s <= self.lane_block_ms / 1000 + 1:
            raise ValueError(
                f"ALERTD_REDIS_TIMEOUT_S is {self.redis_socket_timeout_s:g} s; it must exceed the lane "
                f"readers' {self.lane_block_ms / 1000:g} s block time by more than a second."
            )


def load_seed(path: str | Path) -> dict[str, Any]:
    """A YAML file with ``issuers:`` and ``subscribers:`` lists, as the API takes them."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'issuers' and 'subscribers'")
    return data
