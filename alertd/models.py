"""The alert model every stage speaks.

It follows CAP 1.2 (OASIS) closely — alert → info blocks → areas — because
CAP is what alertd takes in from peers and gives out to them, and a model
that can hold a whole CAP document is what makes the round trip lossless.
The fields after the CAP ones are alertd's own: what the engine resolved
(districts, priority lane) and what the desk order said (level, action).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any


class Status(enum.StrEnum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(enum.StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Priority(enum.StrEnum):
    """Which delivery lane an alert travels in.

    ``flash`` is for national warnings with no time to spare (EEW, missile,
    tsunami, special warnings); it has its own stream and its own workers so
    a backlog of ``routine`` work can never delay it.
    """

    FLASH = "flash"
    ROUTINE = "routine"


# The note (CAP <note>) of a Cancel that ends a drill: said as 訓練終了, never as "sent in error".
DRILL_END_NOTE = "訓練終了"


class DeliveryState(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"  # transport acknowledged (HTTP 2xx, MQTT PUBACK)
    CONFIRMED = "confirmed"  # the receiver itself said it has the alert
    FAILED = "failed"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        DeliveryState.DELIVERED,
        DeliveryState.CONFIRMED,
        DeliveryState.FAILED,
        DeliveryState.EXPIRED,
        DeliveryState.SUPERSEDED,
    }
)


class AdapterKind(enum.StrEnum):
    BROADCASTER = "broadcaster"
    ISP = "isp"
    SIGNAGE = "signage"
    RADIO = "radio"
    # Channels a city relays its loudspeaker texts to (issue 14): registered e-mail lists
    # over SMTP, social and chat services through Apprise, a carrier's cell-broadcast centre (CAP).
    EMAIL = "email"
    APPRISE = "apprise"
    CBC = "cbc"
    # alertd's own MQTT feed (alerts/v1/<pref>/<muni>): planned and tracked like a receiver
    # (subscriber "_feed"), never a kind a subscriber can register.
    FEED = "feed"


# What a subscriber may register as: every kind but alertd's own feed.
SUBSCRIBER_ADAPTERS = tuple(k for k in AdapterKind if k is not AdapterKind.FEED)


class Origin(enum.StrEnum):
    """Which ingest path made an alert (counted in alertd_alerts_received_total{source})."""

    DESK = "desk"  # an evacuation order or shelter notice from a desk route
    CAP = "cap"  # CAP 1.2 posted to /api/v1/alerts
    JSON = "json"  # the JSON alert posted to /api/v1/alerts
    JMA = "jma"  # a JMA telegram (feed or drop folder)
    TEST = "test"  # the transmission test
    DRILL = "drill"


class Action(enum.StrEnum):
    """What a desk does with an evacuation order."""

    ISSUE = "issue"  # 発令
    LIFT = "lift"  # 解除


class AlertKind(enum.StrEnum):
    """What an alert is about; an alert's ``kind`` is one of these (or empty)."""

    EVACUATION = "evacuation"  # 避難情報 from a desk
    SHELTER = "shelter"  # 避難所 notices
    EEW = "eew"  # 緊急地震速報
    TSUNAMI = "tsunami"
    MISSILE = "missile"  # J-Alert 弾道ミサイル情報
    NATIONAL = "national"  # any other national warning (J-Alert)
    SPECIAL_WARNING = "special_warning"  # 特別警報
    WARNING = "warning"  # 警報
    ADVISORY = "advisory"  # 注意報
    LANDSLIDE = "landslide"  # 土砂災害警戒情報
    FLOOD = "flood"  # 指定河川洪水予報, 水位周知河川
    # JMA information alertd relays (alertd/jma/): reports and notices rather than warning grades.
    EARTHQUAKE = "earthquake"  # 震度速報, 震源・震度に関する情報
    EEW_FORECAST = "eew_forecast"  # 緊急地震速報（予報）: parsed, never broadcast by the default policy
    TSUNAMI_INFO = "tsunami_info"  # 沖合の津波観測に関する情報
    VOLCANO = "volcano"  # 噴火警報・予報, 噴火速報
    MEGAQUAKE = "megaquake"  # 南海トラフ地震臨時情報, 北海道・三陸沖後発地震注意情報
    HEAVY_RAIN = "heavy_rain"  # 記録的短時間大雨情報
    TORNADO = "tornado"  # 竜巻注意情報
    HEAT = "heat"  # 熱中症警戒アラート


class AlertState(enum.StrEnum):
    """Where an alert stands (the ``state`` of GET /api/v1/alerts/{id})."""

    ACTIVE = "active"
    LIFTED = "lifted"  # an evacuation order a later 解除 lifted
    UPDATED = "updated"  # replaced by an Update
    CANCELLED = "cancelled"
    ENDED = "ended"  # lifts, cancels and tests are never "in force" themselves


def utcnow() -> datetime:
    return datetime.now(UTC)


# Japan time, for what a prefecture publishes (drill reports, transmission-test tables).
JST = timezone(timedelta(hours=9))


@dataclass
class Area:
    """One CAP <area>: a description plus any mix of geometry and codes."""

    desc: str
    polygons: list[str] = field(default_factory=list)  # CAP "lat,lon lat,lon ..." strings
    circles: list[str] = field(default_factory=list)  # CAP "lat,lon radius_km"
    geocodes: list[tuple[str, str]] = field(default_factory=list)  # (valueName, value)
    altitude: float | None = None
    ceiling: float | None = None


@dataclass
class Resource:
    desc: str
    mime_type: str
    size: int | None = None
    uri: str | None = None
    digest: str | None = None


@dataclass
class Info:
    """One CAP <info> block; an alert usually has one per language."""

    event: str
    urgency: str = "Unknown"  # Immediate | Expected | Future | Past | Unknown
    severity: str = "Unknown"  # Extreme | Severe | Moderate | Minor | Unknown
    certainty: str = "Unknown"  # Observed | Likely | Possible | Unlikely | Unknown
    language: str = "ja-JP"
    categories: list[str] = field(default_factory=lambda: ["Safety"])
    response_types: list[str] = field(default_factory=list)
    audience: str | None = None
    event_codes: list[tuple[str, str]] = field(default_factory=list)
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    areas: list[Area] = field(default_factory=list)

    def parameter(self, name: str) -> str | None:
        for key, value in self.parameters:
            if key == name:
                return value
        return None


@dataclass
class Shelter:
    """A shelter (避難所) named in an evacuation order."""

    name: str
    status: str = "open"  # open | closed | full
    address: str | None = None
    capacity: int | None = None
    occupancy: int | None = None
    lat: float | None = None
    lon: float | None = None


@dataclass
class Alert:
    # --- CAP <alert> fields -------------------------------------------------
    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    scope: str = "Public"
    source: str | None = None  # CAP <source>: the operator or system that made it
    restriction: str | None = None
    addresses: str | None = None
    codes: list[str] = field(default_factory=list)
    note: str | None = None
    references: list[str] = field(default_factory=list)  # CAP "sender,identifier,sent" triples
    incidents: str | None = None
    infos: list[Info] = field(default_factory=list)

    # --- alertd's own -------------------------------------------------------
    id: str = ""  # alertd's id, assigned when accepted
    origin: str = Origin.JSON  # an Origin: which ingest path made it (a str once read back from Redis)
    priority: Priority = Priority.ROUTINE
    districts: list[str] = field(default_factory=list)  # resolved registry codes
    municipality: str | None = None  # 5-digit code for desk orders
    on_behalf_of: str | None = None  # 代行: the municipality a prefecture issued for
    issuer_id: str | None = None
    level: int | None = None  # 警戒レベル 1..5, or the JMA warning grade mapped onto it
    action: str | None = None  # issue | lift (desk orders)
    reason: str | None = None  # 洪水, 土砂災害, 津波 …
    kind: str | None = None  # evacuation | shelter | eew | tsunami | special_warning | warning | missile …
    shelters: list[Shelter] = field(default_factory=list)
    referenced_ids: list[str] = field(default_factory=list)  # alertd ids this alert updates/cancels
    # Which adapter kinds may carry it (None: all). "feed" alone means the MQTT
    # feed only, no pushed deliveries — the JMA policy uses this for advisories.
    adapters: list[str] | None = None
    # Where it is delivered beyond where it is in force: the JMA policy's "prefecture"
    # scope sends a tsunami warning to every subscriber in the prefecture, while it is in
    # force (and shown in the retained state) only in the coastal towns it names.
    reach: list[str] = field(default_factory=list)
    accepted_at: datetime | None = None
    # For a lift or cancel: what still stands in its districts afterwards,
    # [{"level": 4, "districts": ["若宮戸"]}], so its text can say so.
    remaining: list[dict[str, Any]] = field(default_factory=list)
    # For a lift: what it ends, by level, [{"level": 4, "districts": ["三坂町"]}], highest first.
    ended: list[dict[str, Any]] = field(default_factory=list)
    # For a correction (訂正): what it changes, [{"shelter", "field", "from", "to"}].
    corrections: list[dict[str, Any]] = field(default_factory=list)

    @property
    def expires(self) -> datetime | None:
        """The latest expiry of any info block: when retrying stops making sense."""
        times = [i.expires for i in self.infos if i.expires is not None]
        return max(times) if times else None

    @property
    def event(self) -> str:
        return self.infos[0].event if self.infos else ""

    def info_for(self, language: str) -> Info | None:
        """The info block for a language ('en' matches 'en-US'), else None."""
        lang = language.lower()
        for info in self.infos:
            if info.language.lower() == lang:
                return info
        prefix = lang.split("-")[0]
        for info in self.infos:
            if info.language.lower().split("-")[0] == prefix:
                return info
        return None

    def reference_key(self) -> str:
        """This alert as other CAP messages refer to it: 'sender,identifier,sent'."""
        return f"{self.sender},{self.identifier},{format_cap_time(self.sent)}"

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        d = dict(data)
        d["sent"] = parse_time(d["sent"])
        d["status"] = Status(d["status"])
        d["msg_type"] = MsgType(d["msg_type"])
        d["priority"] = Priority(d.get("priority", "routine"))
        if d.get("accepted_at"):
            d["accepted_at"] = parse_time(d["accepted_at"])
        d["shelters"] = [Shelter(**s) for s in d.get("shelters") or []]
        d["infos"] = [_info_from_dict(i) for i in d.get("infos") or []]
        return cls(**d)


def _info_from_dict(data: dict[str, Any]) -> Info:
    d = dict(data)
    for key in ("effective", "onset", "expires"):
        if d.get(key):
            d[key] = parse_time(d[key])
    d["event_codes"] = [tuple(x) for x in d.get("event_codes") or []]
    d["parameters"] = [tuple(x) for x in d.get("parameters") or []]
    d["resources"] = [Resource(**r) for r in d.get("resources") or []]
    d["areas"] = [
        Area(**{**a, "geocodes": [tuple(g) for g in a.get("geocodes") or []]}) for a in d.get("areas") or []
    ]
    return Info(**d)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_cap_time(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def format_cap_time(value: datetime) -> str:
    """CAP dateTime: second precision, explicit offset, never 'Z' (CAP 1.2 §3.3.2)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text = value.replace(microsecond=0).isoformat()
    # CAP forbids "Z" and spells UTC as "-00:00".
    return text[:-6] + "-00:00" if text.endswith("+00:00") else text


def parse_time(value: str | datetime) -> datetime:
    """Parse an ISO-8601/CAP time; naive times are taken as UTC."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


@dataclass
class Issuer:
    """Who may send: a municipal desk, a prefecture, or a national source.

    ``jurisdiction`` holds registry codes; a prefecture code (2 digits)
    covers every municipality in it, which is what lets a prefecture issue
    on behalf (代行) of a municipality that cannot act.
    """

    id: str
    name: str
    token_hash: str
    jurisdiction: list[str]
    national: bool = False  # may issue anywhere (JMA, the national government)
    # CAP senders this issuer may use besides its own "<id>@alertd"; each belongs
    # to one issuer only, so a sender says who spoke.
    senders: list[str] = field(default_factory=list)
    # The two-person rule, {"status": ["Actual"], "min_level": 4}: matching orders wait for an
    # approver (alertd.intake.Approval). None: nothing waits.
    approval: dict[str, Any] | None = None
    # PEM certificate: when set, CAP this issuer posts must carry an XML-DSig by its key.
    cap_certificate: str | None = None

    def all_senders(self) -> list[str]:
        return [f"{self.id}@alertd", *(s for s in self.senders if s != f"{self.id}@alertd")]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "jurisdiction": self.jurisdiction,
            "national": self.national,
            "senders": self.all_senders(),
            "approval": self.approval,
            "cap_certificate": self.cap_certificate,
        }


@dataclass
class Subscriber:
    id: str
    adapter: AdapterKind
    endpoint: str  # http(s)://…, mqtt://host:port/topic, smtp://host:port (email), an Apprise URL (apprise)
    districts: list[str]
    secret: str | None = None
    min_level: int | None = None
    languages: list[str] = field(default_factory=lambda: ["ja", "en"])
    timeout_s: float = 5.0
    max_in_flight: int = 4
    name: str | None = None
    # A receiver that takes drills (訓練, status Exercise): without it no drill reaches it,
    # whoever sent the drill (routing.takes); a drill's own receivers always have it.
    drills: bool = False
    # E-mail only: who gets the message (by Bcc) and whom it is from.
    recipients: list[str] = field(default_factory=list)
    sender: str | None = None

    def public(self) -> dict[str, Any]:
        from alertd.redact import redact_endpoint

        d = asdict(self)
        d["adapter"] = self.adapter.value
        d["secret"] = "***" if self.secret else None
        d["endpoint"] = redact_endpoint(self.endpoint)  # credentials in the URL stay with alertd
        return d
