"""Outdoor loudspeakers (同報系防災行政無線) and in-home disaster radios.

A gateway in front of the municipal radio system gets a script it can hand
to a text-to-speech engine or to an announcer: an opening chime, the message
read three times (outdoors, echoes and wind swallow words, and people start
listening only after the chime), the municipality's call sign, a closing
chime. The same script comes as plain text and as SSML 1.1.

Call signs: desk orders carry ``alert.municipality`` and get that
municipality's call sign ("こちらは、防災じょうそうです。"). National J-Alert
warnings (missile, EEW, tsunami) usually have no municipality; they then go
out without a call sign, because the municipal J-Alert receiver adds its own
when it starts the loudspeakers, and guessing one from the subscriber's
districts would make the render differ per subscriber (see
``Adapter.render_key``). If a national alert does name a municipality, its
call sign is used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from lxml import etree

from adapters.base import Adapter, Payload
from alertd import messages
from alertd.models import AdapterKind, Alert, Subscriber

REPEAT = 3
CHIME_UP = "chime-up.wav"
CHIME_DOWN = "chime-down.wav"
CHIME_UP_MARKER = "[chime-up]"
CHIME_DOWN_MARKER = "[chime-down]"

SSML_NS = "http://www.w3.org/2001/10/synthesis"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_SSML_LANG = {"ja": "ja-JP", "ja-easy": "ja-JP", "en": "en-US", "zh": "zh-CN", "ko": "ko-KR"}

# Many towns announce themselves by the reading of their name, or by an old
# name, rather than "防災<official name>"; those are listed here. A
# deployment passes its own table to RadioAdapter(call_signs=...).
DEFAULT_CALL_SIGNS: dict[str, str] = {
    "08211": "こちらは、防災じょうそうです。",
}

# A name that is still a code means the registry did not know it; reading out
# "防災08211" would be worse than the generic form.
GENERIC_CALL_SIGN = "こちらは、防災行政無線です。"

# XML 1.0 cannot carry these at all; an info block from a peer might.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def _code5(code: str) -> str:
    # The 6-digit form only adds a check digit; the override table is keyed by 5 digits.
    return code[:5] if len(code) == 6 and code.isdigit() else code


def call_sign(
    municipality_code: str,
    municipality_name: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """The sentence that ends a broadcast: "こちらは、防災{name}です。", or the override for the code."""
    table = DEFAULT_CALL_SIGNS if overrides is None else overrides
    code = _code5(municipality_code)
    if code in table:
        return table[code]
    name = municipality_name or messages.place_name(municipality_code)
    if not name or name == municipality_code or name.isdigit():
        return GENERIC_CALL_SIGN
    return f"こちらは、防災{name}です。"


def radio_languages(subscriber: Subscriber) -> list[str]:
    """Japanese first (it is what the loudspeakers are for), then the subscriber's other languages."""
    return messages.ordered_languages(("ja",), subscriber.languages)


class RadioAdapter(Adapter):
    """Renders the broadcast script; other languages follow the three Japanese readings once each."""

    kind = AdapterKind.RADIO

    def __init__(self, call_signs: Mapping[str, str] | None = None) -> None:
        self.call_signs: dict[str, str] = {**DEFAULT_CALL_SIGNS, **(call_signs or {})}

    def call_sign_for(self, alert: Alert) -> str | None:
        if not alert.municipality:
            return None
        return call_sign(alert.municipality, overrides=self.call_signs)

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        langs = radio_languages(subscriber)
        scripts = {lang: _xml_safe(messages.spoken(alert, lang)) for lang in langs}
        sign = self.call_sign_for(alert)
        doc: dict[str, Any] = {
            "alert_id": alert.id,
            "identifier": alert.identifier,
            "status": alert.status.value,
            "msg_type": alert.msg_type.value,
            "priority": alert.priority.value,
            "call_sign": sign,
            # 【解除】【取消】【訂正】 for a gateway's display; the script itself says it aloud.
            "marker": messages.marker(alert, "ja") or None,
            "repeat": REPEAT,
            "text": plain_script(scripts, sign),
            "ssml": ssml_script(scripts, sign),
            "languages": langs,
        }
        body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        return Payload(body=body, content_type="application/json")


def plain_script(scripts: Mapping[str, str], sign: str | None) -> str:
    """One line per reading, between chime markers; Japanese ×3, every other language once."""
    lines = [CHIME_UP_MARKER]
    lines += [scripts["ja"]] * REPEAT
    lines += [text for lang, text in scripts.items() if lang != "ja"]
    if sign:
        lines.append(sign)
    lines.append(CHIME_DOWN_MARKER)
    return "\n".join(lines)


def ssml_script(scripts: Mapping[str, str], sign: str | None) -> str:
    """The same script as SSML 1.1, built as a tree so any text is escaped."""
    speak = etree.Element(f"{{{SSML_NS}}}speak", nsmap={None: SSML_NS})
    speak.set("version", "1.1")
    speak.set(_XML_LANG, "ja-JP")

    def add(tag: str, **attrs: str) -> etree._Element:
        return etree.SubElement(speak, f"{{{SSML_NS}}}{tag}", attrs)

    def paragraph(text: str, lang: str | None = None) -> None:
        # Slow: loudspeaker sound echoes between buildings and hills.
        p = add("p")
        if lang is not None:
            p.set(_XML_LANG, lang)
        prosody = etree.SubElement(p, f"{{{SSML_NS}}}prosody", {"rate": "slow"})
        prosody.text = text

    add("audio", src=CHIME_UP)
    add("break", time="1s")
    for i in range(REPEAT):
        paragraph(scripts["ja"])
        if i < REPEAT - 1:
            add("break", time="2s")
    for lang, text in scripts.items():
        if lang == "ja":
            continue
        add("break", time="2s")
        paragraph(text, _SSML_LANG.get(lang, "en-US"))
    if sign:
        add("break", time="1s")
        p = add("p")
        p.text = sign
    add("break", time="1s")
    add("audio", src=CHIME_DOWN)
    return etree.tostring(speak, encoding="unicode")
