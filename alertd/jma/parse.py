"""Which JMA message is this, and which parser turns it into alerts.

JMA XML itself never says its type code (VPWW54, VXSE43 …): the code is in
the feed entry's file name. The Control/Title, which is in the XML, names
the type just as surely, so dispatch goes on the title and the code from the
file name is only a hint (and the name used for a type alertd does not
parse). This keeps `alertd jma parse some-renamed-file.xml` working.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath

from alertd.errors import InvalidInput
from alertd.hazard_texts import PARAM_VOLCANO
from alertd.jma.flood import parse_vxkoii
from alertd.jma.head import AreaRegistry, Header, Part, Resolver, build_alert, local, read_header
from alertd.jma.megaquake import NANKAI_INCIDENT, TRENCH_INCIDENT, parse_vyse50, parse_vyse60
from alertd.jma.quakes import parse_quake
from alertd.jma.seismic import parse_vtse41, parse_vxse43
from alertd.jma.tsunami_info import parse_vtse51, parse_vtse52
from alertd.jma.volcano import parse_vfvo50, parse_vfvo56, volcano_name
from alertd.jma.warnings import parse_vpno50, parse_vpww, parse_vxww50
from alertd.jma.weather_info import parse_vpft50, parse_vphw, parse_vpoa50
from alertd.models import Alert, MsgType
from alertd.xmlsafe import parse_xml

JMX_NAMESPACE = "http://xml.kishou.go.jp/jmaxml1/"
MAX_BYTES = 5_000_000  # the largest JMA samples (nationwide warnings) are about 1 MB

Parser = Callable[[Header, Resolver], list[Part]]


@dataclass(frozen=True)
class Supported:
    code: str
    kind: str  # the alert kind a cancelled report of this type carries
    parser: Parser
    incident: str | None = None  # the story a 取消 withdraws from, when the EventID does not name it


def _parse_eew_forecast(h: Header, resolver: Resolver) -> list[Part]:
    """緊急地震速報（予報／地震動予報）: read like the warning, but its own kind, which the default policy drops.

    The forecast grade goes out for 震度3 or M3.5 and is revised many times a
    second; it is for machines and specialists, not loudspeakers (docs/jma.md).
    """
    parts = parse_vxse43(h, resolver)
    for part in parts:
        part.kind = "eew_forecast"
        part.event = h.control_title
        part.event_en = "Earthquake early warning (forecast grade)"
        part.level = None
        part.headline = part.headline_en = None
    return parts


# Control/Title → supported type. R06 warnings share one title prefix.
_SUPPORTED_TITLES: dict[str, Supported] = {
    "気象警報・注意報（Ｈ２７）": Supported("VPWW54", "warning", parse_vpww),
    "気象特別警報報知": Supported("VPNO50", "special_warning", parse_vpno50),
    "緊急地震速報（警報）": Supported("VXSE43", "eew", parse_vxse43),
    "津波警報・注意報・予報a": Supported("VTSE41", "tsunami", parse_vtse41),
    "土砂災害警戒情報": Supported("VXWW50", "landslide", parse_vxww50),
    "指定河川洪水予報": Supported("VXKOii", "flood", parse_vxkoii),
    "水位周知河川に関する情報": Supported("VXSUii", "flood", parse_vxkoii),
    "震度速報": Supported("VXSE51", "earthquake", parse_quake),
    "震源に関する情報": Supported("VXSE52", "earthquake", parse_quake),
    "震源・震度に関する情報": Supported("VXSE53", "earthquake", parse_quake),
    "津波情報a": Supported("VTSE51", "tsunami", parse_vtse51),
    "沖合の津波観測に関する情報": Supported("VTSE52", "tsunami_info", parse_vtse52),
    "噴火警報・予報": Supported("VFVO50", "volcano", parse_vfvo50),
    "噴火速報": Supported("VFVO56", "volcano", parse_vfvo56),
    "南海トラフ地震臨時情報": Supported("VYSE50", "megaquake", parse_vyse50, NANKAI_INCIDENT),
    "北海道・三陸沖後発地震注意情報": Supported("VYSE60", "megaquake", parse_vyse60, TRENCH_INCIDENT),
    "記録的短時間大雨情報": Supported("VPOA50", "heavy_rain", parse_vpoa50),
    "竜巻注意情報": Supported("VPHW50", "tornado", parse_vphw),
    "竜巻注意情報（目撃情報付き）": Supported("VPHW51", "tornado", parse_vphw),
    "熱中症警戒アラート": Supported("VPFT50", "heat", parse_vpft50),
    "緊急地震速報（予報）": Supported("VXSE44", "eew_forecast", _parse_eew_forecast),
    "緊急地震速報（地震動予報）": Supported("VXSE45", "eew_forecast", _parse_eew_forecast),
}

# Why a type is not relayed, by code prefix (longest first wins), for `alertd jma parse` and the logs.
_UNSUPPORTED_WHY = {
    "VGSK": "seasonal and special observations (季節観測, 生物季節観測, 特殊気象報): not for public alerting",
    "VGUV": "UV observation data: not for public alerting",
    "VPFG": "weather overview (天気概況): not for public alerting",
    "VPFD": "weather forecast: not for public alerting",
    "VPFW": "weekly forecast and warning outlook: not for public alerting; the warnings themselves are relayed",
    "VPWW50": "pre-2010 warning format, replaced by VPWW54 and the R06 VPWW55–61, which are relayed",
    "VPWW53": "pre-2015 warning format, replaced by VPWW54 and the R06 VPWW55–61, which are relayed",
    "VPWP": "warning time series (時系列): the warnings themselves (VPWW) are relayed",
    "VPT": "typhoon information: the warnings it leads to (VPWW, VPNO50) are relayed",
    "VPC": "regional weather information, outlooks and marine warnings: not for municipal alerting",
    "VPZ": "national weather information, outlooks and marine warnings: not for municipal alerting",
    "VPA": "early weather information (早期天候情報): an outlook, not an alert",
    "VPBS": "府県気象防災速報 in free text: the warnings and 竜巻注意情報 it accompanies are relayed",
    "VPFJ": "府県気象情報 in free text: the warnings it explains are relayed",
    "VPRN": "rain danger notification for specialists: the warnings are relayed",
    "VMCJ": "tide information: the storm-surge warnings (高潮) are relayed",
    "VZS": "weather charts (images): nothing to announce",
    "VZ": "notices about the JMA service itself: nothing to announce",
    "VXSE42": "EEW distribution test: never relayed",
    "VXSE56": "earthquake activity commentary: explanatory, no call to action",
    "VXSE6": "earthquake counts, hypocentre revisions and long-period motion observations: explanatory",
    "VYSE5": "Nankai Trough commentary (解説情報): explanatory; the 臨時情報 (VYSE50) is relayed",
    "VFVO5": "volcano commentary, observations and ash-fall forecasts: the 噴火警報 and 噴火速報 are relayed",
    "VFVO6": "eruption plume direction: for aviation and specialists",
    "VFSV": "volcanic marine warnings: for ships, not municipalities",
}


def unsupported_reason(code: str) -> str:
    """Why alertd does not relay telegrams of type ``code`` (docs/jma.md lists them)."""
    for prefix in sorted(_UNSUPPORTED_WHY, key=len, reverse=True):
        if code.startswith(prefix):
            return _UNSUPPORTED_WHY[prefix]
    return "a type alertd has no parser for: not relayed"
_R06_PREFIX = "気象警報・注意報（Ｒ０６）（"
_R06_CODES = {
    "大雨": "VPWW55",
    "土砂災害": "VPWW56",
    "土砂": "VPWW56",
    "高潮": "VPWW57",
    "暴風": "VPWW58",
    "波浪": "VPWW59",
    "大雪": "VPWW60",
    "その他注意報": "VPWW61",
}

# Titles of types alertd does not turn into alerts, so they can be named by
# code even when the file name does not say it (taken from JMA's sample set;
# where one title covers several codes the first is listed).
KNOWN_TITLES = {
    "火山現象に関する海上警報・海上予報": "VFSVii",
    "噴火警報・予報": "VFVO50",
    "火山の状況に関する解説情報": "VFVO51",
    "噴火に関する火山観測報": "VFVO52",
    "降灰予報（定時）": "VFVO53",
    "降灰予報（速報）": "VFVO54",
    "降灰予報（詳細）": "VFVO55",
    "噴火速報": "VFVO56",
    "推定噴煙流向報": "VFVO60",
    "季節観測": "VGSK50",
    "生物季節観測": "VGSK55",
    "特殊気象報": "VGSK60",
    "紫外線観測データ": "VGUV50",
    "全般潮位情報": "VMCJ50",
    "地方潮位情報": "VMCJ51",
    "府県潮位情報": "VMCJ52",
    "全般気象解説情報（潮位）": "VMCJ53",
    "地方気象解説情報（潮位）": "VMCJ54",
    "府県気象解説情報（潮位）": "VMCJ55",
    "早期天候情報": "VPAW51",
    "府県気象防災速報": "VPBS50",
    "地方天候情報": "VPCI50",
    "地方気象情報": "VPCJ50",
    "地方気象解説情報": "VPCJ51",
    "地方暖・寒候期予報": "VPCK50",
    "地方１か月予報": "VPCK50",
    "地方３か月予報": "VPCK50",
    "地方季節予報（２週間気温予報）": "VPCK70",
    "地方海上警報": "VPCU50",
    "地方海上警報（Ｈ２８）": "VPCU51",
    "地方海上予報": "VPCY50",
    "地方海上予報（Ｈ２８）": "VPCY51",
    "府県天気予報": "VPFD50",
    "府県天気予報（Ｒ１）": "VPFD51",
    "警報級の可能性（明日まで）": "VPFD60",
    "早期注意情報（明後日まで）": "VPFD61",
    "府県天気概況": "VPFG50",
    "府県気象情報": "VPFJ50",
    "府県気象解説情報": "VPFJ51",
    "熱中症警戒アラート": "VPFT50",
    "府県週間天気予報": "VPFW50",
    "警報級の可能性（明後日以降）": "VPFW60",
    "竜巻注意情報": "VPHW50",
    "竜巻注意情報（目撃情報付き）": "VPHW51",
    "記録的短時間大雨情報": "VPOA50",
    "大雨危険度通知": "VPRN50",
    "台風の暴風域に入る確率": "VPTA50",
    "全般台風情報": "VPTI50",
    "全般台風情報（定型）": "VPTI51",
    "全般台風情報（詳細）": "VPTI52",
    "台風解析・予報情報（３日予報）": "VPTW40",
    "台風解析・予報情報（５日予報）": "VPTW50",
    "台風解析・予報情報（５日予報）（Ｈ３０）": "VPTW60",
    "気象警報・注意報時系列情報（Ｒ０６）": "VPWP50",
    "気象警報・注意報": "VPWW50",
    "気象特別警報・警報・注意報": "VPWW53",
    "全般天候情報": "VPZI50",
    "全般気象情報": "VPZJ50",
    "全般気象解説情報": "VPZJ51",
    "全般暖・寒候期予報": "VPZK50",
    "全般１か月予報": "VPZK50",
    "全般３か月予報": "VPZK50",
    "全般季節予報（２週間気温予報）": "VPZK70",
    "全般海上警報（定時）": "VPZU50",
    "全般海上警報（臨時）": "VPZU51",
    "全般海上警報（定時）（Ｈ２９）": "VPZU52",
    "全般海上警報（臨時）（Ｈ２９）": "VPZU53",
    "津波情報a": "VTSE51",
    "沖合の津波観測に関する情報": "VTSE52",
    "緊急地震速報配信テスト": "VXSE42",
    "緊急地震速報（予報）": "VXSE44",
    "緊急地震速報（地震動予報）": "VXSE45",
    "震度速報": "VXSE51",
    "震源に関する情報": "VXSE52",
    "震源・震度に関する情報": "VXSE53",
    "地震の活動状況等に関する情報": "VXSE56",
    "地震回数に関する情報": "VXSE60",
    "顕著な地震の震源要素更新のお知らせ": "VXSE61",
    "長周期地震動に関する観測情報": "VXSE62",
    "水位周知河川に関する情報": "VXSUii",
    "南海トラフ地震臨時情報": "VYSE50",
    "南海トラフ地震関連解説情報": "VYSE51",
    "北海道・三陸沖後発地震注意情報": "VYSE60",
    "地上実況図": "VZSA50",
    "アジア太平洋地上実況図": "VZSA60",
    "地震・津波に関するお知らせ": "VZSE40",
    "地上２４時間予想図": "VZSF50",
    "地上４８時間予想図": "VZSF51",
    "アジア太平洋海上悪天２４時間予想図": "VZSF60",
    "アジア太平洋海上悪天４８時間予想図": "VZSF61",
    "火山に関するお知らせ": "VZVO40",
}

_TYPE_CODE_IN_NAME = re.compile(r"(V[A-Z]{3}(?:\d\d|ii))")


@dataclass
class ParseResult:
    """What one JMA message yielded.

    ``supported`` False means a well-formed JMA message of a type alertd
    does not broadcast; ``type_code`` and ``title`` name it. ``unresolved``
    lists area codes the registry did not know (their towns are missing
    from the alerts' districts).
    """

    type_code: str
    title: str
    supported: bool
    alerts: list[Alert] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    # The message's Control/Head, for the sequencing done after parsing (EEW
    # serials, tsunami state per region) and for dedup by JMA identity.
    header: Header | None = None
    # For an unsupported type: why it is not relayed, in words a desk operator reads.
    reason: str | None = None

    @property
    def identity(self) -> str | None:
        return self.header.identity if self.header is not None else None


class NotJmaXml(InvalidInput):
    title = "Not a JMA disaster-prevention XML message"
    type_slug = "not-jma-xml"


def type_code_hint(name: str | None) -> str | None:
    """The type code in a JMA file name or feed URL (…_0_VXSE43_010000.xml), if any."""
    if not name:
        return None
    m = _TYPE_CODE_IN_NAME.findall(PurePath(name).name)
    return m[-1] if m else None


def identify(control_title: str, hint: str | None = None) -> tuple[str, Supported | None]:
    """(type code, supported parser or None) for a Control/Title."""
    supported = _SUPPORTED_TITLES.get(control_title)
    if supported is not None:
        return supported.code, supported
    if control_title.startswith(_R06_PREFIX):
        phenomenon = control_title[len(_R06_PREFIX) :].rstrip("）")
        code = _R06_CODES.get(phenomenon, hint or "VPWW5x")
        return code, Supported(code, "warning", parse_vpww)
    # The file name is the more precise name where one title covers several codes (VPTW40/41).
    return hint or KNOWN_TITLES.get(control_title) or control_title, None


def parse_message(data: bytes, registry: AreaRegistry, *, name: str | None = None) -> ParseResult:
    """Parse one JMA XML message into alerts.

    Raises MalformedInput / HostileInput / TooLarge (from alertd.xmlsafe)
    for bytes that are not safe, well-formed XML, and NotJmaXml for XML that
    is not a JMA Report. Every other outcome is a ParseResult.
    """
    root = parse_xml(data, max_bytes=MAX_BYTES, what="JMA message")
    if local(root) != "Report" or not (root.tag.startswith("{" + JMX_NAMESPACE)):
        raise NotJmaXml(
            "This XML is not a JMA disaster-prevention message: its root element is not "
            f"<Report> in the {JMX_NAMESPACE} namespace."
        )
    control_title = (root.findtext("{*}Control/{*}Title") or "").strip()
    if not control_title:
        raise NotJmaXml("This XML has no Control/Title, so it is not a JMA disaster-prevention message.")
    hint = type_code_hint(name)
    code, supported = identify(control_title, hint)
    if supported is None:
        return ParseResult(
            type_code=code, title=control_title, supported=False, reason=unsupported_reason(code)
        )

    header = read_header(root, code)
    resolver = Resolver(registry)
    if header.msg_type is MsgType.CANCEL:
        # A 取消 carries no areas: it withdraws the earlier report of the same
        # EventID, which the poller links through CAP references (docs/jma.md).
        parts = [_cancel_part(header, supported)]
    else:
        parts = supported.parser(header, resolver) or [_empty_part(header, supported)]
    alerts = [build_alert(header, part) for part in parts]
    return ParseResult(
        type_code=code,
        title=control_title,
        supported=True,
        alerts=alerts,
        unresolved=resolver.unresolved,
        header=header,
    )


def _cancel_part(h: Header, supported: Supported) -> Part:
    # A volcano's 取消 names its volcano (in Head/Title only): the texts say which report is withdrawn.
    volcano = volcano_name(h) if supported.kind == "volcano" else ""
    english = "Eruption report" if h.type_code == "VFVO56" else "Volcanic warning"
    return Part(
        key="cancel",
        kind=supported.kind,
        event=f"{h.title}（取消）",
        event_en=f"{english}: {volcano}" if volcano else "Cancellation of the previous report",
        level=None,
        action=None,
        reason=None,
        districts=[],
        areas=[],
        jma_status="取消",
        parameters=[(PARAM_VOLCANO, volcano)] if volcano else [],
        description=h.headline or None,
        incident=supported.incident,
    )


def _empty_part(h: Header, supported: Supported) -> Part:
    """A supported message naming no kind alertd recognises: kept, with no districts, for the record."""
    return Part(
        key="empty",
        kind=supported.kind,
        event=h.title or h.control_title,
        event_en=None,
        level=None,
        action=None,
        reason=None,
        districts=[],
        areas=[],
        jma_status=h.info_type,
    )


__all__ = ["NotJmaXml", "ParseResult", "identify", "parse_message", "type_code_hint", "unsupported_reason"]
