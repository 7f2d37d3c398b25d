"""What every JMA message shares: the Control and Head blocks, and how they become an alert.

JMA disaster-prevention XML has no message identifier, no CAP-style
status words and no expiry on most types, so the choices made here (how an
identifier is formed, which status maps to which, how long an alert stays
in force) are made once, for every type, and documented in docs/jma.md.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from lxml import etree

from alertd.cap import PARAM_REASON
from alertd.errors import InvalidInput, UnknownArea
from alertd.inforce import CODE_INFORMATION
from alertd.messages import quake_details, reason_text
from alertd.models import Alert, Area, Info, MsgType, Origin, Status, parse_time

SENDER = "jma.go.jp"

STATUS = {"通常": Status.ACTUAL, "訓練": Status.EXERCISE, "試験": Status.TEST}
# 遅延 (a late report) carries the same content as the report it stands for,
# so for a receiver it is an update, not a new alert.
MSG_TYPE = {"発表": MsgType.ALERT, "訂正": MsgType.UPDATE, "遅延": MsgType.UPDATE, "取消": MsgType.CANCEL}

# Geocode value names used in info areas, so a CAP consumer can tell the code systems apart.
GEOCODE_JMA_AREA = "JP-JMA-AREA"  # 気象・地震・火山情報／市町村等 (7 digits) and 府県予報区 (6 digits)
GEOCODE_TSUNAMI = "JP-JMA-TSUNAMI"  # 津波予報区
GEOCODE_EEW_PREF = "JP-JMA-EEW-PREF"  # 緊急地震速報／府県予報区
GEOCODE_SEISMIC = "JP-JMA-SEISMIC-AREA"  # 地震情報／細分区域
GEOCODE_RIVER = "JP-JMA-RIVER"  # 指定河川洪水予報 forecast reach

_SAFE_KEY = re.compile(r"^[0-9A-Za-z_-]{1,40}$")


class AreaRegistry(Protocol):
    """The part of geo.registry.Registry the JMA parsers use."""

    def jma_area(self, code: str) -> list[str]: ...
    def tsunami_region(self, code: str) -> Any: ...
    def tsunami_municipalities(self, code: str) -> list[str]: ...
    def find(self, code: str) -> Any: ...
    def jma_forecast_area_named(self, name: str) -> str | None: ...


class Resolver:
    """Turns JMA area codes into registry district codes, remembering what it could not resolve.

    An unknown code never fails the message: a warning for twenty towns must
    still reach the nineteen the registry knows. The misses are reported
    (ParseResult.unresolved, the CLI) so the registry can be completed.
    """

    def __init__(self, registry: AreaRegistry) -> None:
        self.registry = registry
        self.unresolved: list[str] = []

    def miss(self, code: str) -> None:
        if code not in self.unresolved:
            self.unresolved.append(code)

    def municipalities(self, code7: str) -> list[str]:
        try:
            return list(self.registry.jma_area(code7))
        except UnknownArea:
            self.miss(code7)
            return []

    def tsunami(self, code: str) -> list[str]:
        try:
            region = self.registry.tsunami_region(code)
            munis = list(self.registry.tsunami_municipalities(code))
        except UnknownArea:
            self.miss(f"tsunami:{code}")
            return []
        return [region.code, *munis]

    def forecast_area_named(self, name: str) -> str | None:
        code = self.registry.jma_forecast_area_named(name) if name else None
        if code is None:
            self.miss(name or "(no area name)")
        return code

    def prefecture(self, pref: str) -> list[str]:
        if self.registry.find(pref) is None:
            self.miss(pref)
            return []
        return [pref]


def unique(codes: Iterable[str]) -> list[str]:
    """Codes in first-seen order without repeats (order follows the message, which operators read)."""
    return list(dict.fromkeys(codes))


def text(el: etree._Element | None, path: str = "") -> str:
    if el is None:
        return ""
    node = el.find(path) if path else el
    return (node.text or "").strip() if node is not None else ""


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


@dataclass
class Header:
    """Control + Head of one message, with the Body left as XML for the type's parser."""

    type_code: str
    control_title: str
    control_time: datetime
    status: Status
    editorial_office: str
    publishing_office: str
    title: str
    report_time: datetime
    valid_time: datetime | None
    event_id: str
    info_type: str
    msg_type: MsgType
    serial: str
    info_kind: str
    headline: str
    head: etree._Element
    body: etree._Element | None

    @property
    def identity(self) -> str:
        """What makes a JMA report itself, whatever bytes carried it: a hash of its identifying fields.

        Type, status, offices, Head/Title, EventID, Serial, ReportDateTime and
        InfoType — the same report re-sent with CRLF line endings, another
        encoding declaration or by another relay has the same identity, so it
        is announced once; a 訂正, a new serial or a 取消 has a new one.
        """
        fields = (
            self.type_code,
            self.control_title,
            self.status.value,
            self.editorial_office,
            self.publishing_office,
            self.title,
            self.event_id,
            self.serial,
            self.report_time.astimezone(UTC).isoformat(),
            self.info_type,
        )
        return hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()

    @property
    def incident(self) -> str:
        """The CAP <incidents> key shared by every report about the same JMA event.

        EventID is the event (an earthquake's origin time, a river reach);
        warnings have none, so the issuing office and title stand in for it —
        each new warning message for a prefecture replaces the previous one.
        """
        key = self.event_id
        if not _SAFE_KEY.match(key):
            basis = key or f"{self.editorial_office}|{self.title}"
            key = hashlib.sha1(basis.encode("utf-8")).hexdigest()[:12]
        # 震度速報, 震源に関する情報 and 震源・震度に関する情報 are reports of one quake (one
        # EventID): one story, so a VXSE53 is an Update of the VXSE51 before it.
        story = "quake" if self.type_code in QUAKE_REPORTS else self.type_code
        return f"jma-{story}-{key}"


QUAKE_REPORTS = frozenset({"VXSE51", "VXSE52", "VXSE53"})


def read_header(root: etree._Element, type_code: str) -> Header:
    control = root.find("{*}Control")
    head = root.find("{*}Head")
    if control is None or head is None:
        raise InvalidInput("The JMA message has no Control or Head block.")
    status_word = text(control, "{*}Status")
    if status_word not in STATUS:
        raise InvalidInput(f"The JMA message has an unknown Control/Status '{status_word}'.")
    info_type = text(head, "{*}InfoType")
    if info_type not in MSG_TYPE:
        raise InvalidInput(f"The JMA message has an unknown Head/InfoType '{info_type}'.")
    report = text(head, "{*}ReportDateTime")
    control_dt = text(control, "{*}DateTime")
    if not report and not control_dt:
        raise InvalidInput("The JMA message has neither Head/ReportDateTime nor Control/DateTime.")
    report_time = parse_time(report or control_dt)
    valid = text(head, "{*}ValidDateTime")
    return Header(
        type_code=type_code,
        control_title=text(control, "{*}Title"),
        control_time=parse_time(control_dt) if control_dt else report_time,
        status=STATUS[status_word],
        editorial_office=text(control, "{*}EditorialOffice"),
        publishing_office=text(control, "{*}PublishingOffice"),
        title=text(head, "{*}Title"),
        report_time=report_time,
        valid_time=parse_time(valid) if valid else None,
        event_id=text(head, "{*}EventID"),
        info_type=info_type,
        msg_type=MSG_TYPE[info_type],
        serial=text(head, "{*}Serial"),
        info_kind=text(head, "{*}InfoKind"),
        headline=text(head, "{*}Headline/{*}Text"),
        head=head,
        body=root.find("{*}Body"),
    )


# How long an alert is worth retrying when JMA gives no ValidDateTime. JMA
# warnings stay in force until the next message replaces them, so these are
# "stop retrying" horizons, not the warning's duration (docs/jma.md).
DEFAULT_EXPIRY = {
    "eew": timedelta(minutes=10),  # the shaking has come and gone long before
    "tsunami": timedelta(hours=24),
    "special_warning": timedelta(hours=24),
    "warning": timedelta(hours=24),
    "advisory": timedelta(hours=24),
    "landslide": timedelta(hours=24),
    "flood": timedelta(hours=24),
}

# Reports about an event rather than warnings of it: delivered, never standing in force
# (alertd/inforce.py, CODE_INFORMATION). 津波情報 and 沖合の津波観測 restate or add to the
# VTSE41 warning, whose own Updates and 解除 say what stands; 震度速報, 震源に関する情報 and
# 震源・震度に関する情報 report shaking that has happened.
INFORMATION_TYPES = frozenset({"VTSE51", "VTSE52", "VXSE51", "VXSE52", "VXSE53"})

# CAP urgency / severity / certainty by alertd level; lifts are "Past".
_CAP_GRADE = {
    5: ("Immediate", "Extreme", "Likely"),
    4: ("Immediate", "Severe", "Likely"),
    3: ("Expected", "Severe", "Likely"),
    2: ("Expected", "Moderate", "Possible"),
    1: ("Future", "Minor", "Possible"),
}


@dataclass
class Part:
    """One alert's worth of a message: one event, one action, the areas it covers."""

    key: str  # distinguishes this part's identifier from the message's other parts
    kind: str
    event: str
    event_en: str | None
    level: int | None
    action: str | None  # issue | continue | lift; None for a cancelled report
    reason: str | None
    districts: list[str]
    areas: list[Area]
    jma_status: str = ""
    parameters: list[tuple[str, str]] = field(default_factory=list)
    description: str | None = None
    # The CAP headline, when the message's Head/Title would misstate this part:
    # a VTSE41 titled 大津波警報・津波警報・津波注意報 carries one alert per grade.
    headline: str | None = None
    headline_en: str | None = None
    # The CAP <incidents>, when the EventID does not name the story: every 南海トラフ地震臨時情報
    # has its own EventID, yet each one replaces the last (there is one Nankai Trough).
    incident: str | None = None


# CAP <category>: the solid earth (Geo) for quakes, tsunami, volcanoes and the Nankai Trough;
# the weather (Met) for the rest; heat illness is a health warning.
GEO_KINDS = frozenset({"eew", "eew_forecast", "tsunami", "tsunami_info", "earthquake", "volcano", "megaquake"})
# What these report has been seen to happen (震度 measured, a tsunami on the buoys, rain at a
# disaster rate on the gauges): CAP certainty Observed, not the forecast grade's Likely.
OBSERVED_KINDS = frozenset({"earthquake", "tsunami_info", "heavy_rain"})


def _category(kind: str) -> str:
    return "Geo" if kind in GEO_KINDS else "Health" if kind == "heat" else "Met"


def _cap_grade(part: Part, kind: str) -> tuple[str, str, str]:
    if part.action == "lift":
        return ("Past", "Minor", "Observed")
    grade = _CAP_GRADE.get(part.level or 0, ("Unknown", "Unknown", "Unknown"))
    if kind == "eew":
        # The shaking is forecast, not observed, and arrives within seconds.
        return ("Immediate", grade[1], "Likely")
    if kind in OBSERVED_KINDS:
        return (grade[0], grade[1], "Observed")
    return grade


def build_alert(h: Header, part: Part) -> Alert:
    identifier = (
        f"jma-{h.type_code}-{h.report_time.astimezone(UTC):%Y%m%dT%H%M%SZ}-{h.identity[:12]}-{part.key}"
    )
    expires = h.valid_time or (h.report_time + DEFAULT_EXPIRY.get(part.kind, timedelta(hours=24)))
    urgency, severity, certainty = _cap_grade(part, part.kind)
    params: list[tuple[str, str]] = [
        ("JMA_TYPE", h.type_code),
        ("JMA_TITLE", h.title),
        ("JMA_INFOTYPE", h.info_type),
    ]
    if h.event_id:
        params.append(("JMA_EVENTID", h.event_id))
    if h.serial:
        params.append(("JMA_SERIAL", h.serial))
    if part.jma_status:
        params.append(("JMA_STATUS", part.jma_status))
    if part.level is not None:
        params.append(("LEVEL", str(part.level)))
    params.extend(part.parameters)
    common: dict[str, Any] = {
        "urgency": urgency,
        "severity": severity,
        "certainty": certainty,
        "categories": [_category(part.kind)],
        "effective": h.report_time,
        "expires": expires,
        "sender_name": h.publishing_office or h.editorial_office or "気象庁",
        "areas": part.areas,
        "event_codes": [("JMA", h.type_code)],
    }
    infos = [
        Info(
            event=part.event,
            language="ja-JP",
            headline=(part.headline or h.title)
            + ("（取消）" if h.msg_type is MsgType.CANCEL and "取消" not in h.title else ""),
            description=part.description or h.headline or None,
            parameters=params,
            **common,
        )
    ]
    if part.event_en:
        infos.append(
            Info(
                event=part.event_en,
                language="en-US",
                headline=(part.headline_en or part.event_en)
                + (" (cancelled)" if h.msg_type is MsgType.CANCEL else ""),
                parameters=[*params, *_english_reason(part.reason)],
                **common,
            )
        )
    alert = Alert(
        identifier=identifier,
        sender=SENDER,
        sent=h.report_time,
        status=h.status,
        msg_type=h.msg_type,
        source=h.editorial_office or None,
        note=f"JMA {h.type_code} {h.control_title}",
        codes=[CODE_INFORMATION] if h.type_code in INFORMATION_TYPES else [],
        incidents=part.incident or h.incident,
        infos=infos,
        origin=Origin.JMA,
        districts=part.districts,
        level=part.level,
        action=part.action,
        reason=part.reason,
        kind=part.kind,
    )
    if h.type_code in QUAKE_REPORTS and part.kind == "earthquake":
        # 震度 by area, 震源 and magnitude in the Japanese description too, after JMA's words.
        ja = alert.infos[0]
        ja.description = "\n".join(t for t in (ja.description, quake_details(alert, "ja")) if t) or None
    return alert


def _english_reason(reason: str | None) -> list[tuple[str, str]]:
    """JP-ALERTD-REASON for the en-US block, in English: the block's own value is kept when CAP is
    written, so the Alert's 津波 no longer fills it (docs/cap-profile.md)."""
    english = reason_text(reason, "en") if reason else None
    return [(PARAM_REASON, english)] if english and english != reason else []


def area(name: str, code: str, value_name: str = GEOCODE_JMA_AREA) -> Area:
    return Area(desc=name or code, geocodes=[(value_name, code)])
