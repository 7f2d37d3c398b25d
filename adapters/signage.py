"""Digital signage: a small JSON document a display controller can lay out as is.

Screens in stations and shops show a line or two in big type, so texts are
cut to display length here (at sentence ends where possible) rather than
left to each controller, and colour and pictogram come with the text so no
controller has to know the 警戒レベル colour table.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.base import Adapter, Payload
from alertd import messages
from alertd.models import AdapterKind, Alert, MsgType, Subscriber, format_cap_time

# Roughly what fits in two lines of a station display; wide (CJK) characters
# take twice the room of Latin ones.
HEADLINE_LIMITS = {"ja": 40, "zh": 40, "ko": 50, "ja-easy": 50}
BODY_LIMITS = {"ja": 120, "zh": 120, "ko": 160, "ja-easy": 160}
LATIN_HEADLINE_LIMIT = 80
LATIN_BODY_LIMIT = 280
PLACE_STEPS = (5, 3, 1)  # place names shown before "ほかN地区", tried in turn until the body fits

# Always shown: Japanese for residents, English for visitors, whatever the subscription says.
ALWAYS = ("ja", "en")


def display_languages(subscriber: Subscriber) -> list[str]:
    """ja and en first, then the subscriber's other languages in its order, without repeats."""
    return messages.ordered_languages(ALWAYS, subscriber.languages)


class SignageAdapter(Adapter):
    kind = AdapterKind.SIGNAGE

    def render(self, alert: Alert, subscriber: Subscriber) -> Payload:
        style = messages.alert_style(alert)
        lines: dict[str, dict[str, str]] = {}
        for lang in display_languages(subscriber):
            limit = BODY_LIMITS.get(lang, LATIN_BODY_LIMIT)
            # Fewer place names before any trimming: trimming cuts from the
            # end, and the end is where the instruction is.
            for places in PLACE_STEPS:
                msg = messages.message(alert, lang, max_places=places, compact=True)
                if len(msg.body) <= limit:
                    break
            lines[lang] = {
                "headline": messages.shorten(msg.headline, HEADLINE_LIMITS.get(lang, LATIN_HEADLINE_LIMIT)),
                "body": messages.shorten(msg.body, limit),
            }
        level = messages.effective_level(alert)
        expires = alert.expires
        doc: dict[str, Any] = {
            "alert_id": alert.id,
            "identifier": alert.identifier,
            "status": alert.status.value,
            "msg_type": alert.msg_type.value,
            "kind": alert.kind,
            "action": alert.action,
            "level": alert.level,
            "colour": style.colour_hex,
            "colour_name": style.colour_name,
            "pictogram": style.pictogram_key,
            "lines": lines,
            "districts": [
                {"code": code, "name": messages.place_name(code, full=alert.municipality is None)}
                for code in alert.districts
            ],
            "expires": format_cap_time(expires) if expires is not None else None,
            # Scrolling draws the eye; a lift or a cancellation must not, or
            # the all-clear looks like a new danger.
            "scroll": bool(
                level is not None
                and level >= 4
                and alert.action != "lift"
                and alert.msg_type != MsgType.CANCEL
            ),
        }
        body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        # RFC 8259: JSON is always UTF-8, so no charset parameter.
        return Payload(body=body, content_type="application/json")
