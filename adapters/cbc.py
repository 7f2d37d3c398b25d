"""Cell broadcast: CAP 1.2 to a carrier's cell-broadcast centre (CBC), the side of 緊急速報メール,
ETWS and WEA that takes alerts from authorities, by HTTP POST.

A CBC does not lay text out: a handset shows what fits its limits, so the texts are cut here,
and each figure below says where it comes from.

- Short text first, the longer one after. Each <info> carries ``CMAMtext`` (the short
  text) then ``CMAMlongtext`` (the longer one), the parameter names of the IPAWS CAP
  profile, which is what CBC gateways commonly read; <headline> is the short text,
  <description> the longer one.
- English (WEA): 90 characters for the short text, the original WEA limit, and 360 for
  the long one, the limit for 4G LTE and later handsets (47 CFR §10.430, as amended by
  FCC 16-127).
- Japanese (緊急速報メール over ETWS): title 15 and body 200 full-width characters, the
  figures municipal guides quote for the three carriers' 緊急速報メール
  (件名 全角15文字, 本文 全角200文字). They are not taken from a carrier's specification
  here; a carrier with other figures changes ``LIMITS``.
- The area: the districts' polygons from the registry, holes dropped (an alert's area
  may only grow), each polygon simplified, never inward, until it has at most ``MAX_VERTICES`` points:
  100, the polygon limit of WEA's CMAC interface (J-STD-101, which the IPAWS CAP profile
  follows). The geocodes stay beside the polygons, so a CBC that places by code can.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

from adapters.base import Adapter, Payload
from alertd import messages, places
from alertd.cap_signature import CapSigner
from alertd.models import AdapterKind, Alert, Area, Info, Subscriber

# language -> (short, long) in characters; see the module's docstring for each source.
LIMITS = {"ja": (15, 200), "en": (90, 360)}
MAX_VERTICES = 100
MAX_POLYGONS = 10  # the largest parts of a scattered area; tiny islands add vertices, not reach
CAP_LANGUAGES = {"ja": "ja-JP", "en": "en-US"}
PARAM_SHORT = "CMAMtext"
PARAM_LONG = "CMAMlongtext"


def cap_polygons(geometry: Any, max_vertices: int = MAX_VERTICES) -> list[str]:
    """CAP <polygon> texts ("lat,lon lat,lon …", closed) of a shapely geometry, each with at
    most ``max_vertices`` points.

    A polygon with more points is widened by a tolerance and then simplified by the same
    tolerance (Douglas-Peucker moves no edge further than that), growing the tolerance until
    it fits: the result covers the whole district, so nobody at its edge is left out, and
    reaches a little beyond it (常総市: 2,820 points become 99, covering all of the city and
    10 % more area, within about 150 m of its boundary)."""
    import shapely

    if geometry is None or geometry.is_empty:
        return []
    parts = sorted(getattr(geometry, "geoms", [geometry]), key=lambda g: g.area, reverse=True)
    out: list[str] = []
    for part in parts[:MAX_POLYGONS]:
        if part.geom_type != "Polygon":
            continue
        shell = shapely.Polygon(part.exterior)  # no holes: CAP polygons have none
        simple, tolerance = shell, 0.0002  # about 20 m, then 25 % more each round
        while len(simple.exterior.coords) > max_vertices:
            simple = shell.buffer(tolerance, join_style="mitre").simplify(tolerance, preserve_topology=True)
            tolerance *= 1.25
        coords = list(simple.exterior.coords)
        if len(coords) < 4:
            continue
        out.append(" ".join(f"{lat:.5f},{lon:.5f}" for lon, lat in coords))
    return out


# Ways to say a headline in fewer characters, tried in turn until it fits: JMA's 臨時情報 is
# said by its kind (南海トラフ地震臨時情報（巨大地震警戒） → 南海トラフ巨大地震警戒: the kind is
# what matters); the reason in brackets goes (the body says it), then "警戒" of 警戒レベル,
# then the spaces. The level and the action stay, and so does a drill's marker.
_SQUEEZES = (
    (re.compile(r"地震臨時情報[（(]([^）)]*)[）)]"), r"\1"),
    (re.compile(r"[（(][^）)]*[）)]"), ""),
    (re.compile("警戒レベル"), "レベル"),
    (re.compile(r"\s+"), ""),
)


# The markers a headline starts with: 【訓練】【更新】 in Japanese, [DRILL] [UPDATE] in English.
_MARKER = re.compile(r"^\s*(?:【([^】]*)】|\[([^\]]*)\])\s*")
# Markers a short text may drop: an update says the same hazard again. A drill, a cancellation
# or a lift turns the meaning round and is always kept.
_DROPPABLE = frozenset({"更新", "UPDATE", "こうしん"})
_LIFT_MARKERS = frozenset({"解除", "かいじょ"})
_SAYS_ITS_END = ("終了", "解除")


def short_text(headline: str, limit: int) -> str:
    """The headline in ``limit`` characters, the hazard first and the markers after it, short.

    15 characters were eaten by prefixes (「【訓練】【更新】南海トラフ地…」): the phone showed
    that something was a drill and an update, not of what. Now 「南海トラフ巨大地震警(訓練/更新)」,
    and when even that does not fit the update marker goes before the hazard is cut.
    """
    markers: list[str] = []
    text = headline
    while m := _MARKER.match(text):
        markers.append((m.group(1) or m.group(2) or "").strip())
        text = text[m.end() :]
    # 【解除】 of a hazard that says its own end (調査終了, 警報解除) is said twice: it goes
    # before the hazard is cut, so a drill's 「南海トラフ調査終了(訓練)」 keeps 終了.
    ends_itself = any(word in text for word in _SAYS_ITS_END)
    essential = [m for m in markers if m not in _DROPPABLE and not (ends_itself and m in _LIFT_MARKERS)]
    space = " " if text.isascii() else ""  # "Eruption: Ontakesan (DRILL)", 「噴火速報(訓練)」
    for chosen in (markers, essential):
        suffix = f"{space}({'/'.join(chosen)})" if chosen else ""
        core = _squeezed(text, limit - len(suffix))
        if len(core) + len(suffix) <= limit and not core.endswith("…"):
            return core + suffix
    suffix = f"{space}({'/'.join(essential)})" if essential else ""
    return messages.shorten(_squeezed(text, limit - len(suffix)), max(limit - len(suffix), 1)) + suffix


def _squeezed(text: str, limit: int) -> str:
    for pattern, replacement in _SQUEEZES:
        if len(text) <= limit:
            break
        text = pattern.sub(replacement, text).strip()
    return text if len(text) <= limit else messages.shorten(text, max(limit, 1))


# GSM 03.38: the basic alphabet and its extension table (2 septets each). An English CMAM text
# outside it is sent as UCS-2 by many CBCs, which halves what a segment holds, or garbled.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€"
)
_TYPOGRAPHY = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-", "…": "...", "\u3000": " "})
_KANJI_ASIDE = re.compile(r"\s*[(（][^()（）]*[^\x00-\x7f][^()（）]*[)）]")
_NON_GSM = re.compile("[^" + re.escape("".join(sorted(_GSM7))) + "]+")


# The English areas line (alertd/texts/en.yaml: areas_line, more_places, list_sep).
_AREAS = re.compile(r"Areas: (?P<names>[^.]*?)(?:\s*\band (?P<more>\d+) more areas)?\.")


def _areas_in_gsm7(m: re.Match[str]) -> str:
    """The areas line with only the names GSM 7-bit can carry; those it cannot are counted, so a
    list of unromanised names reads "In 38 areas." rather than "Areas: and 36 more areas."."""
    names = [n.strip() for n in m["names"].split(", ") if n.strip()]
    kept = [n for n in names if not _NON_GSM.search(n)]
    more = int(m["more"] or 0) + len(names) - len(kept)
    areas = "area" if more == 1 else "areas"
    if not kept:
        return f"In {more} {areas}." if more else ""
    return f"Areas: {', '.join(kept)}" + (f" and {more} more {areas}." if more else ".")


def gsm7(text: str) -> str:
    """``text`` in the GSM 7-bit alphabet: romanised names keep their romanisation and lose the
    kanji aside ("Ontakesan (御嶽山)" → "Ontakesan"); typographic quotes become plain ones; a name
    with no romanisation is left out, and a list left empty with it."""
    text = _KANJI_ASIDE.sub("", text.translate(_TYPOGRAPHY))
    text = _AREAS.sub(_areas_in_gsm7, text)
    text = _NON_GSM.sub("", text)
    text = re.sub(r",\s*(?=[,.])", "", text)  # "A, , B, ." → "A, B."
    text = re.sub(r":\s*(?:,\s*)+", ": ", text)  # "Areas: , B." → "Areas: B."
    text = re.sub(r"\b[A-Z][a-z]+:\s*\.", "", text)  # "Areas: ." → nothing
    return re.sub(r"\s{2,}", " ", text).strip()


def area_geometry(codes: list[str]) -> Any:
    import shapely

    shapes = [g for g in (places.geometry(c) for c in codes) if g is not None and not g.is_empty]
    return shapely.union_all(shapes) if shapes else None


class CbcAdapter(Adapter):
    kind: ClassVar[AdapterKind] = AdapterKind.CBC
    render_off_loop: ClassVar[bool] = True  # polygon simplification: ~75 ms for 常総市

    def __init__(self, cap_signer: CapSigner | None = None) -> None:
        # Signed like the broadcasters' CAP when the deployment has a signing key: a CBC
        # that checks signatures then knows the alert is the authority's.
        self.cap_signer = cap_signer

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        from alertd.cap import to_cap

        polygons = cap_polygons(area_geometry(alert.districts))
        infos = [self._info(alert, lang, polygons) for lang in LIMITS]
        document = to_cap(dataclasses.replace(alert, infos=infos))
        if self.cap_signer is not None:
            document = self.cap_signer.sign(document)
        return Payload(document, "application/cap+xml; charset=utf-8")

    def render_key(self, alert: Alert, subscriber: Subscriber) -> tuple[object, ...]:
        return (self.kind,)  # Japanese and English for every CBC

    @staticmethod
    def _info(alert: Alert, lang: str, polygons: list[str]) -> Info:
        cap_lang = CAP_LANGUAGES[lang]
        template = next((i for i in alert.infos if i.language.lower().startswith(lang)), None)
        if template is None:
            template = alert.infos[0] if alert.infos else Info(event=messages.headline(alert, lang))
        short_limit, long_limit = LIMITS[lang]
        msg = messages.message(alert, lang, compact=True)
        # English goes out as GSM-7 (WEA handsets; a UCS-2 text holds half as much).
        plain = gsm7 if lang == "en" else (lambda text: text)
        short = short_text(plain(msg.headline), short_limit)
        # The fewest place names that let the whole instruction fit, as signage does.
        body = plain(msg.body)
        for places_shown in (5, 3, 1):
            body = plain(messages.message(alert, lang, max_places=places_shown, compact=True).body)
            if len(body) <= long_limit:
                break
        long = messages.shorten(body, long_limit)
        own = [(k, v) for k, v in template.parameters if k not in (PARAM_SHORT, PARAM_LONG)]
        geocodes = [g for a in template.areas for g in a.geocodes]
        desc = "; ".join(dict.fromkeys(a.desc for a in template.areas)) or ", ".join(alert.districts) or "-"
        drawn = [p for a in template.areas for p in a.polygons]  # a CAP that came with its own shapes
        area_polygons = polygons or [p for poly in drawn for p in _fit_text_polygon(poly)]
        return dataclasses.replace(
            template,
            language=cap_lang,
            headline=short,
            description=long,
            instruction=None,
            parameters=[(PARAM_SHORT, short), (PARAM_LONG, long), *own],
            areas=[Area(desc=desc, polygons=area_polygons, geocodes=geocodes)],
        )


def _fit_text_polygon(text: str) -> list[str]:
    """A CAP polygon text within the vertex limit (as drawn by a sender, maybe with thousands)."""
    import shapely

    points = [tuple(float(x) for x in pair.split(",")) for pair in text.split()]
    if len(points) <= MAX_VERTICES:
        return [text]
    shape = shapely.Polygon([(lon, lat) for lat, lon in points])
    return cap_polygons(shape if shape.is_valid else shape.buffer(0))
