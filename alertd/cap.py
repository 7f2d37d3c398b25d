"""CAP 1.2 in and out, with alertd's Japanese profile (docs/cap-profile.md).

CAP is how alertd talks to international peers (IPAWS, Google Public
Alerts, WMO Alert Hub) and to other alertd deployments, so both directions
matter:

* :func:`parse_cap` reads a whole CAP 1.2 document into an
  :class:`~alertd.models.Alert`. The OASIS schema is not shipped with alertd
  (production hosts have no ``../shared``), so the structural rules the
  schema enforces — required elements, enumerations, time format — are
  checked here, each with a sentence a desk operator can act on.
* :func:`to_cap` writes any Alert, from any ingest path, as a document that
  validates against CAP-v1.2.xsd. alertd's own fields (level, action,
  reason, shelters …) travel as ``JP-ALERTD-*`` parameters and district
  codes as ``JP-*`` geocodes, so a CAP → Alert → CAP round trip is lossless
  for everything the model holds.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from decimal import Decimal

from lxml import etree

from alertd.errors import InvalidInput
from alertd.limits import check_element_counts
from alertd.models import (
    Alert,
    Area,
    Info,
    MsgType,
    Origin,
    Resource,
    Shelter,
    Status,
    format_cap_time,
    parse_time,
)
from alertd.xmlsafe import DEFAULT_MAX_BYTES, parse_xml

__all__ = [
    "CAP_NAMESPACE",
    "GEOCODE_DISTRICT",
    "GEOCODE_JISX0401",
    "GEOCODE_JISX0402",
    "GEOCODE_JMA_AREA",
    "GEOCODE_JMA_TSUNAMI",
    "PARAM_ACTION",
    "PARAM_ID",
    "PARAM_KIND",
    "PARAM_LEVEL",
    "PARAM_MUNICIPALITY",
    "PARAM_ON_BEHALF_OF",
    "PARAM_REASON",
    "PARAM_SHELTER",
    "district_geocode",
    "parse_cap",
    "to_cap",
]

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
_OLDER_CAP = {
    "http://www.incident.com/cap/1.0": "CAP 1.0",
    "urn:oasis:names:tc:emergency:cap:1.1": "CAP 1.1",
}
_XMLDSIG = "http://www.w3.org/2000/09/xmldsig#"

# --- the Japanese profile: geocode valueNames -----------------------------------
GEOCODE_JISX0401 = "JP-JISX0401"  # 2-digit prefecture code (都道府県コード)
GEOCODE_JISX0402 = "JP-JISX0402"  # 5-digit municipality code (全国地方公共団体コード, no check digit)
GEOCODE_JMA_AREA = "JP-JMA-AREA"  # 7-digit JMA warning area (二次細分区域)
GEOCODE_JMA_TSUNAMI = "JP-JMA-TSUNAMI"  # 津波予報区 code
GEOCODE_DISTRICT = "JP-ALERTD-DISTRICT"  # any other alertd registry code (町丁目, 地区, 学区 …)

# --- the Japanese profile: alertd's own fields as parameters ---------------------
PARAM_ID = "JP-ALERTD-ID"
PARAM_LEVEL = "JP-ALERTD-LEVEL"  # 警戒レベル 1..5
PARAM_ACTION = "JP-ALERTD-ACTION"  # issue | lift (発令 | 解除)
PARAM_REASON = "JP-ALERTD-REASON"  # 洪水, 土砂災害, 高潮, 津波 …
PARAM_KIND = "JP-ALERTD-KIND"  # evacuation | shelter | eew | tsunami …
PARAM_MUNICIPALITY = "JP-ALERTD-MUNICIPALITY"
PARAM_ON_BEHALF_OF = "JP-ALERTD-ON-BEHALF-OF"  # 代行: the municipality a prefecture issued for
PARAM_SHELTER = "JP-ALERTD-SHELTER"  # one per shelter, a JSON object

_ACTIONS = ("issue", "lift")

# --- CAP 1.2 enumerations --------------------------------------------------------
_STATUS = tuple(s.value for s in Status)
_MSG_TYPES = tuple(m.value for m in MsgType)
_SCOPES = ("Public", "Restricted", "Private")
_CATEGORIES = (
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire",
    "Health", "Env", "Transport", "Infra", "CBRNE", "Other",
)  # fmt: skip
_RESPONSE_TYPES = (
    "Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None",
)  # fmt: skip
_URGENCIES = ("Immediate", "Expected", "Future", "Past", "Unknown")
_SEVERITIES = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
_CERTAINTIES = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")

# Element names CAP 1.2 defines at each level, in schema order; to_cap emits in
# this order because the schema is a strict <sequence>.
_ALERT_CHILDREN = (
    "identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction", "addresses",
    "code", "note", "references", "incidents", "info",
)  # fmt: skip
_INFO_CHILDREN = (
    "language", "category", "event", "responseType", "urgency", "severity", "certainty", "audience",
    "eventCode", "effective", "onset", "expires", "senderName", "headline", "description", "instruction",
    "web", "contact", "parameter", "resource", "area",
)  # fmt: skip
_RESOURCE_CHILDREN = ("resourceDesc", "mimeType", "size", "uri", "derefUri", "digest")
_AREA_CHILDREN = ("areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling")
_PAIR_CHILDREN = ("valueName", "value")

_REPEATABLE = frozenset(
    {"code", "info", "category", "responseType", "eventCode", "parameter", "resource", "area", "polygon",
     "circle", "geocode"}
)  # fmt: skip

_CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_LANGUAGE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
# XML 1.0 cannot carry these at all, not even escaped.
_NOT_XML_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# =================================================================================
# District codes → geocodes
# =================================================================================


def district_geocode(code: str) -> tuple[str, str]:
    """The CAP geocode (valueName, value) for one alertd district code.

    The kind of code is told by its shape, which is how Japanese codes are
    built: 2 digits a prefecture, 5 a municipality (6 when it still carries
    its check digit, which CAP peers do not expect and is dropped), 7 a JMA
    warning area. Anything else is an alertd registry code (町丁目, 地区 …)
    and is passed through under its own valueName.
    """
    code = code.strip()
    if code.isascii() and code.isdigit():
        if len(code) == 2:
            return GEOCODE_JISX0401, code
        if len(code) == 5:
            return GEOCODE_JISX0402, code
        if len(code) == 6 and _jis_check_digit(code[:5]) == code[5]:
            return GEOCODE_JISX0402, code[:5]
        if len(code) == 7:
            return GEOCODE_JMA_AREA, code
    return GEOCODE_DISTRICT, code


def _jis_check_digit(five: str) -> str:
    """全国地方公共団体コード check digit (総務省: weights 6..2, modulus 11)."""
    total = sum(int(d) * w for d, w in zip(five, (6, 5, 4, 3, 2), strict=True))
    remainder = total % 11
    return str((11 - remainder) % 10) if remainder else "1"


# =================================================================================
# Parsing
# =================================================================================


def parse_cap(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Alert:
    """Read a CAP 1.2 document into an Alert (``origin="cap"``).

    Raises :class:`~alertd.errors.MalformedInput` (or ``HostileInput``,
    ``TooLarge``) when the XML itself cannot be read safely, and
    :class:`~alertd.errors.InvalidInput` when it is XML but not a valid CAP
    1.2 alert; ``detail`` names the element and the info block or area.
    """
    root = parse_xml(data, max_bytes=max_bytes, what="CAP message")
    _check_root(root)
    _check_counts(root)
    return _read_alert(_Children(root, "the alert"))


def _check_counts(root: etree._Element) -> None:
    """Count infos, areas and shapes in the parsed tree (C speed) before the
    element-by-element reading (Python speed) that thousands of them would cost."""
    ns = {"c": CAP_NAMESPACE}
    infos = list(root.iterfind("c:info", ns))
    areas = [int(i.xpath("count(c:area)", namespaces=ns)) for i in infos]
    shapes = [int(i.xpath("count(c:area/c:polygon) + count(c:area/c:circle)", namespaces=ns)) for i in infos]
    geocodes = [int(i.xpath("count(c:area/c:geocode)", namespaces=ns)) for i in infos]
    check_element_counts(
        infos=len(infos), areas_per_info=max(areas, default=0), shapes_per_info=max(shapes, default=0),
        geocodes_per_info=max(geocodes, default=0),
    )  # fmt: skip


def _check_root(root: etree._Element) -> None:
    qname = etree.QName(root)
    if qname.namespace == CAP_NAMESPACE and qname.localname == "alert":
        return
    if qname.namespace in _OLDER_CAP:
        raise InvalidInput(
            f"This is a {_OLDER_CAP[qname.namespace]} message; alertd reads CAP 1.2 only "
            f"(namespace {CAP_NAMESPACE}). Ask the sender for CAP 1.2.",
            namespace=qname.namespace,
        )
    if qname.localname == "alert":
        found = f"the namespace '{qname.namespace}'" if qname.namespace else "no namespace"
        raise InvalidInput(
            f"The <alert> element has {found}, so it is not CAP 1.2. A CAP 1.2 alert must be "
            f'<alert xmlns="{CAP_NAMESPACE}">.',
            namespace=qname.namespace,
        )
    raise InvalidInput(
        f"This is not a CAP alert: the document starts with <{qname.localname}>, not <alert> in the "
        f"CAP 1.2 namespace ({CAP_NAMESPACE}).",
    )


class _Children:
    """The CAP children of one element, checked against what CAP allows there."""

    def __init__(self, element: etree._Element, where: str, allowed: Sequence[str] = _ALERT_CHILDREN) -> None:
        self.where = where
        self.by_name: dict[str, list[etree._Element]] = {}
        for child in element:
            if not isinstance(child.tag, str):
                continue  # comments and processing instructions
            qname = etree.QName(child)
            if qname.namespace not in (CAP_NAMESPACE, None):
                # Foreign extensions (an XML signature at the end, say) carry
                # nothing the model can hold; the schema allows only xmldsig.
                continue
            if qname.namespace is None or qname.localname not in allowed:
                raise InvalidInput(
                    f"{_cap(where)} contains <{qname.localname}>, which is not a CAP 1.2 element there"
                    + (" (it has no namespace)" if qname.namespace is None else "")
                    + ". Check the spelling and the namespace.",
                    element=qname.localname,
                )
            self.by_name.setdefault(qname.localname, []).append(child)
        for name, found in self.by_name.items():
            if len(found) > 1 and name not in _REPEATABLE:
                raise InvalidInput(
                    f"{_cap(where)} has <{name}> {len(found)} times; CAP 1.2 allows it only once.",
                    element=name,
                )

    def elements(self, name: str) -> list[etree._Element]:
        return self.by_name.get(name, [])

    def text(self, name: str) -> str | None:
        found = self.by_name.get(name)
        if not found:
            return None
        value = _element_text(found[0], self.where)
        return value or None

    def required(self, name: str, hint: str = "") -> str:
        found = self.by_name.get(name)
        if not found:
            raise InvalidInput(
                f"{_cap(self.where)} is missing <{name}>, which CAP 1.2 requires.{hint}",
                element=name,
            )
        return _element_text(found[0], self.where)

    def texts(self, name: str) -> list[str]:
        return [_element_text(e, self.where) for e in self.by_name.get(name, [])]

    def enum(self, name: str, allowed: Sequence[str], *, default: str | None = None) -> str:
        if default is not None and name not in self.by_name:
            return default
        return _enum(self.required(name), name, allowed, self.where)

    def time(self, name: str, *, required: bool = False) -> datetime | None:
        if required:
            return _time(self.required(name), name, self.where)
        value = self.text(name)
        return None if value is None else _time(value, name, self.where)

    def pairs(self, name: str) -> list[tuple[str, str]]:
        out = []
        for element in self.by_name.get(name, []):
            pair = _Children(element, f"<{name}> in {self.where}", _PAIR_CHILDREN)
            out.append((pair.required("valueName"), pair.required("value")))
        return out


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _element_text(element: etree._Element, where: str) -> str:
    name = etree.QName(element).localname
    if any(isinstance(child.tag, str) for child in element):
        raise InvalidInput(
            f"<{name}> in {where} contains other elements; CAP 1.2 expects plain text there.",
            element=name,
        )
    return "".join(element.itertext()).strip()


def _enum(value: str, name: str, allowed: Sequence[str], where: str) -> str:
    for candidate in allowed:
        # CAP values are case-sensitive, but "actual" can only mean one thing.
        if candidate.lower() == value.lower():
            return candidate
    raise InvalidInput(
        f"<{name}> in {where} is '{value}', which CAP 1.2 does not allow; use one of: "
        + ", ".join(allowed)
        + ".",
        element=name,
        value=value,
    )


def _time(value: str, name: str, where: str) -> datetime:
    if not _CAP_TIME.match(value):
        hint = (
            " It has no time-zone offset, so the moment it names is ambiguous."
            if re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$", value)
            else ""
        )
        raise InvalidInput(
            f"<{name}> in {where} is '{value}', which is not a CAP time.{hint} "
            "Write it like 2024-08-30T14:05:00+09:00.",
            element=name,
            value=value,
        )
    try:
        return parse_time(value).replace(microsecond=0)
    except ValueError:
        raise InvalidInput(
            f"<{name}> in {where} is '{value}', which is not a real date and time "
            "(check the month, day and hour).",
            element=name,
            value=value,
        ) from None


def _read_alert(c: _Children) -> Alert:
    identifier = c.required("identifier")
    sender = c.required("sender")
    for name, value in (("identifier", identifier), ("sender", sender)):
        if not value or re.search(r"[\s,<&]", value):
            raise InvalidInput(
                f"<{name}> is '{value}'; CAP 1.2 requires it to be non-empty, with no spaces, commas, "
                "'<' or '&', because other alerts refer to it as 'sender,identifier,sent'.",
                element=name,
            )
    sent = c.time("sent", required=True)
    assert sent is not None
    status = Status(c.enum("status", _STATUS))
    msg_type = MsgType(c.enum("msgType", _MSG_TYPES))
    scope = c.enum("scope", _SCOPES)
    restriction = c.text("restriction")
    addresses = c.text("addresses")
    if scope == "Restricted" and not restriction:
        raise InvalidInput(
            "The alert's <scope> is Restricted but it has no <restriction> saying who may see it.",
            element="restriction",
        )
    if scope == "Private" and not addresses:
        raise InvalidInput(
            "The alert's <scope> is Private but it has no <addresses> saying who it is for.",
            element="addresses",
        )
    references = _references(c.text("references"))
    if msg_type in (MsgType.UPDATE, MsgType.CANCEL, MsgType.ACK, MsgType.ERROR) and not references:
        raise InvalidInput(
            f"This {msg_type.value} message has no <references>, so alertd cannot tell which earlier "
            "alert it is about. Add <references>sender,identifier,sent</references> for that alert.",
            element="references",
        )

    infos = [_read_info(e, n) for n, e in enumerate(c.elements("info"), start=1)]
    alert = Alert(
        identifier=identifier,
        sender=sender,
        sent=sent,
        status=status,
        msg_type=msg_type,
        scope=scope,
        source=c.text("source"),
        restriction=restriction,
        addresses=addresses,
        codes=[code for code in c.texts("code") if code],
        note=c.text("note"),
        references=references,
        incidents=c.text("incidents"),
        infos=infos,
        origin=Origin.CAP,
    )
    _read_profile(alert)
    return alert


def _references(text: str | None) -> list[str]:
    if not text:
        return []
    out = []
    for ref in text.split():
        parts = ref.split(",")
        if len(parts) != 3 or not all(parts):
            raise InvalidInput(
                f"The reference '{ref}' in <references> is not 'sender,identifier,sent'. Separate "
                "several references with spaces, and write each as sender,identifier,sent.",
                element="references",
            )
        _time(parts[2], "references", "the alert")
        out.append(ref)
    return out


def _read_info(element: etree._Element, n: int) -> Info:
    where = f"info block {n}"
    c = _Children(element, where, _INFO_CHILDREN)
    language = c.text("language") or "en-US"  # the CAP 1.2 default, not alertd's
    if not _LANGUAGE.match(language):
        raise InvalidInput(
            f"<language> in {where} is '{language}', which is not a language tag like ja-JP or en-US.",
            element="language",
        )
    where = f"info block {n} ({language})"
    c.where = where
    categories = [_enum(v, "category", _CATEGORIES, where) for v in c.texts("category")]
    if not categories:
        raise InvalidInput(
            f"{_cap(where)} has no <category>; CAP 1.2 requires at least one (for example Safety or Met).",
            element="category",
        )
    info = Info(
        event=c.required("event"),
        urgency=c.enum("urgency", _URGENCIES),
        severity=c.enum("severity", _SEVERITIES),
        certainty=c.enum("certainty", _CERTAINTIES),
        language=language,
        categories=categories,
        response_types=[_enum(v, "responseType", _RESPONSE_TYPES, where) for v in c.texts("responseType")],
        audience=c.text("audience"),
        event_codes=c.pairs("eventCode"),
        effective=c.time("effective"),
        onset=c.time("onset"),
        expires=c.time("expires"),
        sender_name=c.text("senderName"),
        headline=c.text("headline"),
        description=c.text("description"),
        instruction=c.text("instruction"),
        web=c.text("web"),
        contact=c.text("contact"),
        parameters=c.pairs("parameter"),
        resources=[
            _read_resource(e, f"resource {k} of {where}") for k, e in enumerate(c.elements("resource"), 1)
        ],
        areas=[_read_area(e, f"area {k} of {where}") for k, e in enumerate(c.elements("area"), 1)],
    )
    return info


def _read_resource(element: etree._Element, where: str) -> Resource:
    c = _Children(element, where, _RESOURCE_CHILDREN)
    size_text = c.text("size")
    size = None
    if size_text is not None:
        try:
            size = int(size_text)
        except ValueError:
            raise InvalidInput(
                f"<size> in {where} is '{size_text}'; it must be a whole number of bytes.", element="size"
            ) from None
    # <derefUri> (the resource inlined as base64) has no place in the model and is
    # dropped; see docs/cap-profile.md.
    return Resource(
        desc=c.required("resourceDesc"),
        mime_type=c.required("mimeType"),
        size=size,
        uri=c.text("uri"),
        digest=c.text("digest"),
    )


def _read_area(element: etree._Element, where: str) -> Area:
    c = _Children(element, where, _AREA_CHILDREN)
    polygons = [_polygon(p, where) for p in c.texts("polygon")]
    circles = [_circle(p, where) for p in c.texts("circle")]
    altitude = _decimal(c.text("altitude"), "altitude", where)
    ceiling = _decimal(c.text("ceiling"), "ceiling", where)
    if ceiling is not None and altitude is None:
        raise InvalidInput(
            f"{_cap(where)} has a <ceiling> but no <altitude>; CAP 1.2 uses ceiling only with altitude.",
            element="ceiling",
        )
    return Area(
        desc=c.required("areaDesc"),
        polygons=polygons,
        circles=circles,
        geocodes=c.pairs("geocode"),
        altitude=altitude,
        ceiling=ceiling,
    )


def _point(text: str, what: str, where: str) -> tuple[float, float]:
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise InvalidInput(
            f"A {what} in {where} has the point '{text}', which is not 'latitude,longitude' "
            "(for example 36.02,139.99).",
            element=what,
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput(
            f"A {what} in {where} has the point '{text}', which is off the globe: latitude must be "
            "-90..90 and longitude -180..180 (is it written longitude first?).",
            element=what,
        )
    return lat, lon


def polygon(text: str, where: str) -> str:
    """A CAP <polygon> text, checked (closed, on the globe) and normalised."""
    return _polygon(text, where)


def circle(text: str, where: str) -> str:
    """A CAP <circle> text, checked and normalised."""
    return _circle(text, where)


def _polygon(text: str, where: str) -> str:
    points = [_point(p, "polygon", where) for p in text.split()]
    if len(points) < 4 or points[0] != points[-1]:
        raise InvalidInput(
            f"A <polygon> in {where} is not closed: CAP 1.2 needs at least four points with the last "
            "the same as the first.",
            element="polygon",
        )
    return " ".join(text.split())


def _circle(text: str, where: str) -> str:
    parts = text.split()
    if len(parts) != 2:
        raise InvalidInput(
            f"A <circle> in {where} is '{text}'; write it as 'latitude,longitude radius_km', "
            "for example '36.02,139.99 5'.",
            element="circle",
        )
    _point(parts[0], "circle", where)
    try:
        radius = float(parts[1])
    except ValueError:
        radius = -1.0
    if not (radius >= 0 and math.isfinite(radius)):
        raise InvalidInput(
            f"A <circle> in {where} has the radius '{parts[1]}'; it must be a distance in kilometres.",
            element="circle",
        )
    return " ".join(parts)


def _decimal(text: str | None, name: str, where: str) -> float | None:
    if text is None:
        return None
    try:
        value = float(Decimal(text))
    except ArithmeticError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInput(f"<{name}> in {where} is '{text}'; it must be a number (feet).", element=name)
    return value


def _read_profile(alert: Alert) -> None:
    """Lift JP-ALERTD-* parameters back into the Alert's own fields.

    The parameters stay in the info blocks as well, so an alert forwarded
    on unchanged carries exactly what it came with.
    """

    def first(name: str) -> str | None:
        for info in alert.infos:
            value = info.parameter(name)
            if value:
                return value.strip()
        return None

    level = first(PARAM_LEVEL)
    if level is not None:
        if not (level.isascii() and level.isdigit() and 1 <= int(level) <= 5):
            raise InvalidInput(
                f"The {PARAM_LEVEL} parameter is '{level}'; it must be a 警戒レベル from 1 to 5.",
                element="parameter",
            )
        alert.level = int(level)
    action = first(PARAM_ACTION)
    if action is not None:
        if action not in _ACTIONS:
            raise InvalidInput(
                f"The {PARAM_ACTION} parameter is '{action}'; it must be 'issue' (発令) or 'lift' (解除).",
                element="parameter",
            )
        alert.action = action
    alert.reason = first(PARAM_REASON)
    alert.kind = first(PARAM_KIND)
    alert.municipality = first(PARAM_MUNICIPALITY)
    alert.on_behalf_of = first(PARAM_ON_BEHALF_OF)
    # PARAM_ID is deliberately not copied into alert.id: the receiving alertd
    # assigns its own id when it accepts the alert.
    for info in alert.infos:
        values = [v for k, v in info.parameters if k == PARAM_SHELTER]
        if values:
            alert.shelters = [_shelter_from_json(v) for v in values]
            break


_SHELTER_FIELDS = tuple(f.name for f in fields(Shelter))


def _shelter_from_json(text: str) -> Shelter:
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise ValueError("not an object with a name")
        return Shelter(**{k: v for k, v in data.items() if k in _SHELTER_FIELDS})
    except (ValueError, TypeError):
        raise InvalidInput(
            f"A {PARAM_SHELTER} parameter is not a shelter description: expected a JSON object with at "
            f'least a "name", got {text[:80]!r}.',
            element="parameter",
        ) from None


def _shelter_to_json(shelter: Shelter) -> str:
    data = {k: v for k, v in asdict(shelter).items() if v is not None}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


# =================================================================================
# Writing
# =================================================================================


def to_cap(alert: Alert) -> bytes:
    """The alert as a CAP 1.2 document (UTF-8) that validates against the OASIS schema.

    Values the schema would refuse are repaired rather than refused, because
    this runs on the delivery path where an alert must go out: characters
    XML cannot carry are dropped, unknown urgency/severity/certainty become
    ``Unknown``, unknown categories ``Other``, and unknown response types
    are left out. The one thing not guessed is ``scope``: widening an
    unrecognised scope to Public could publish a restricted alert, so that
    raises :class:`~alertd.errors.InvalidInput`.
    """
    root = etree.Element(_q("alert"), nsmap={None: CAP_NAMESPACE})
    _sub(root, "identifier", alert.identifier)
    _sub(root, "sender", alert.sender)
    _sub(root, "sent", _cap_time(alert.sent))
    _sub(root, "status", _coerce(str(getattr(alert.status, "value", alert.status)), _STATUS, "Actual"))
    _sub(root, "msgType", _coerce(str(getattr(alert.msg_type, "value", alert.msg_type)), _MSG_TYPES, "Alert"))
    _opt(root, "source", alert.source)
    scope = _coerce(alert.scope or "Public", _SCOPES, "")
    if not scope:
        raise InvalidInput(
            f"The alert's scope is '{alert.scope}'; it must be Public, Restricted or Private.",
            element="scope",
        )
    _sub(root, "scope", scope)
    _opt(root, "restriction", alert.restriction)
    _opt(root, "addresses", alert.addresses)
    for code in alert.codes:
        _opt(root, "code", code)
    _opt(root, "note", alert.note)
    if alert.references:
        _sub(root, "references", " ".join(alert.references))
    _opt(root, "incidents", alert.incidents)

    profile = _profile_parameters(alert)
    district_area = _district_area(alert.districts) if alert.districts else None
    for info in alert.infos:
        _write_info(root, info, profile, district_area)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _q(name: str) -> str:
    return f"{{{CAP_NAMESPACE}}}{name}"


def _clean(value: object) -> str:
    return _NOT_XML_CHARS.sub("", str(value))


def _sub(parent: etree._Element, name: str, value: object) -> etree._Element:
    element = etree.SubElement(parent, _q(name))
    element.text = _clean(value)
    return element


def _opt(parent: etree._Element, name: str, value: object | None) -> None:
    if value is not None and _clean(value).strip():
        _sub(parent, name, value)


def _coerce(value: str, allowed: Sequence[str], fallback: str) -> str:
    for candidate in allowed:
        if candidate.lower() == value.strip().lower():
            return candidate
    return fallback


def _cap_time(value: datetime) -> str:
    offset = value.utcoffset() if value.tzinfo else None
    # The schema's pattern has no room for second-level offsets (LMT zones).
    if offset is not None and (offset.seconds % 60 or offset.microseconds):
        value = value.astimezone(UTC)
    return format_cap_time(value)


def _language(value: str) -> str:
    tag = (value or "").strip().replace("_", "-")
    return tag if _LANGUAGE.match(tag) else "und"


def _number(value: float) -> str:
    # xs:decimal has no exponent: 1e-05 must be written 0.00001.
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# Reports that ask nobody to evacuate: their alertd level only ranks them for routing and
# colour, and written as JP-ALERTD-LEVEL (4 = 避難指示 in the profile) a 震度速報 read as an
# evacuation order. Their own numbers (JMA_MAX_INTENSITY …) travel as JMA parameters.
NO_EVACUATION_LEVEL_KINDS = frozenset({"earthquake", "tsunami_info", "eew_forecast"})


def _profile_parameters(alert: Alert) -> dict[str, list[str]]:
    profile: dict[str, list[str]] = {}
    if alert.id:
        profile[PARAM_ID] = [alert.id]
    if alert.level is not None and alert.kind not in NO_EVACUATION_LEVEL_KINDS:
        profile[PARAM_LEVEL] = [str(alert.level)]
    for name, value in (
        (PARAM_ACTION, alert.action),
        (PARAM_REASON, alert.reason),
        (PARAM_KIND, alert.kind),
        (PARAM_MUNICIPALITY, alert.municipality),
        (PARAM_ON_BEHALF_OF, alert.on_behalf_of),
    ):
        if value:
            profile[name] = [value]
    if alert.shelters:
        profile[PARAM_SHELTER] = [_shelter_to_json(s) for s in alert.shelters]
    return profile


# Free text in the info's own language: an English block's "Flood" must not
# be overwritten by the Alert's "洪水", so for these the info's value wins.
_FILL_ONLY = frozenset({PARAM_REASON})


def _merge_parameters(own: Sequence[tuple[str, str]], profile: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The info's parameters with the Alert's own fields written in.

    The Alert's value replaces a same-named parameter in place (so a parsed
    document comes back out in the same order, and a lift made by copying an
    issue cannot keep saying "issue"); where the Alert's field is empty the
    info keeps whatever it carried. Language-dependent text (the reason) is
    only filled in where the info has none.
    """
    has = {name for name, _ in own}
    out: list[tuple[str, str]] = []
    done: set[str] = set()
    for name, value in own:
        if name in profile and name not in _FILL_ONLY:
            if name not in done:
                out.extend((name, v) for v in profile[name])
                done.add(name)
            continue
        out.append((name, value))
    for name, values in profile.items():
        if name not in done and not (name in _FILL_ONLY and name in has):
            out.extend((name, v) for v in values)
    return out


def _district_area(districts: Sequence[str]) -> Area:
    # A 6-digit code and its 5-digit form are the same municipality: one geocode.
    geocodes = list(dict.fromkeys(district_geocode(code) for code in districts))
    return Area(desc=", ".join(districts), geocodes=geocodes)


def _write_info(
    root: etree._Element, info: Info, profile: dict[str, list[str]], fallback: Area | None
) -> None:
    el = etree.SubElement(root, _q("info"))
    _sub(el, "language", _language(info.language))
    categories = [_coerce(c, _CATEGORIES, "Other") for c in info.categories] or ["Other"]
    for category in dict.fromkeys(categories):
        _sub(el, "category", category)
    _sub(el, "event", info.event or "")
    for response in info.response_types:
        coerced = _coerce(response, _RESPONSE_TYPES, "")
        if coerced:
            _sub(el, "responseType", coerced)
    _sub(el, "urgency", _coerce(info.urgency or "", _URGENCIES, "Unknown"))
    _sub(el, "severity", _coerce(info.severity or "", _SEVERITIES, "Unknown"))
    _sub(el, "certainty", _coerce(info.certainty or "", _CERTAINTIES, "Unknown"))
    _opt(el, "audience", info.audience)
    _pairs(el, "eventCode", info.event_codes)
    for name in ("effective", "onset", "expires"):
        value: datetime | None = getattr(info, name)
        if value is not None:
            _sub(el, name, _cap_time(value))
    _opt(el, "senderName", info.sender_name)
    _opt(el, "headline", info.headline)
    _opt(el, "description", info.description)
    _opt(el, "instruction", info.instruction)
    _opt(el, "web", _uri(info.web))
    _opt(el, "contact", info.contact)
    _pairs(el, "parameter", _merge_parameters(info.parameters, profile))
    for resource in info.resources:
        _write_resource(el, resource)
    for area in info.areas or ([fallback] if fallback else []):
        _write_area(el, area)


def _uri(value: str | None) -> str | None:
    """A link the schema's xs:anyURI accepts, or None when it cannot be made one.

    Raw spaces, stray '%' and other characters URIs may not hold are
    percent-encoded, which keeps the link working; a value that still is not
    a URI is left out, because one bad link must not stop the alert.
    """
    if value is None:
        return None
    text = _clean(value).strip()
    if not text:
        return None
    text = re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", text)
    head, hash_, fragment = text.partition("#")
    text = head + hash_ + fragment.replace("#", "%23")  # only one '#' may start a fragment
    text = re.sub(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%\u0080-\U0010ffff]", _percent, text)
    if not _is_any_uri(text):
        # Brackets are only legal around an IPv6 host; anywhere else encode them.
        text = text.replace("[", "%5B").replace("]", "%5D")
    return text if _is_any_uri(text) else None


def _percent(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group(0).encode())


_ANY_URI_SCHEMA = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="u" type="xs:anyURI"/></xs:schema>"""
_any_uri_schema: etree.XMLSchema | None = None
_any_uri_lock = threading.Lock()  # lxml validators must not be used by two threads at once


def _is_any_uri(text: str) -> bool:
    # Ask libxml2 itself: its anyURI rules are what the CAP schema check applies.
    global _any_uri_schema
    element = etree.Element("u")
    element.text = text
    with _any_uri_lock:
        if _any_uri_schema is None:
            _any_uri_schema = etree.XMLSchema(etree.fromstring(_ANY_URI_SCHEMA))
        return bool(_any_uri_schema.validate(element))


def _pairs(parent: etree._Element, name: str, pairs: Iterable[tuple[str, str]]) -> None:
    for value_name, value in pairs:
        el = etree.SubElement(parent, _q(name))
        _sub(el, "valueName", value_name)
        _sub(el, "value", value)


def _write_resource(parent: etree._Element, resource: Resource) -> None:
    el = etree.SubElement(parent, _q("resource"))
    _sub(el, "resourceDesc", resource.desc)
    _sub(el, "mimeType", resource.mime_type)
    if resource.size is not None:
        _sub(el, "size", int(resource.size))
    _opt(el, "uri", _uri(resource.uri))
    _opt(el, "digest", resource.digest)


def _write_area(parent: etree._Element, area: Area) -> None:
    el = etree.SubElement(parent, _q("area"))
    _sub(el, "areaDesc", area.desc)
    for polygon in area.polygons:
        _opt(el, "polygon", polygon)
    for circle in area.circles:
        _opt(el, "circle", circle)
    _pairs(el, "geocode", area.geocodes)
    altitude = area.altitude if area.altitude is not None and math.isfinite(area.altitude) else None
    if altitude is not None:
        _sub(el, "altitude", _number(altitude))
        if area.ceiling is not None and math.isfinite(area.ceiling):
            _sub(el, "ceiling", _number(area.ceiling))
