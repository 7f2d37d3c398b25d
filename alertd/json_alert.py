"""The project's JSON alert: a compact form for systems that do not speak CAP.

{"identifier": "...", "status": "Actual|Exercise|Test", "msg_type": "Alert|Update|Cancel",
 "references": ["<alertd id>", ...], "kind": "warning", "event": "大雨警報", "level": 4,
 "districts": ["08211", "0820100", ...] | "areas": [{"desc", "polygon", "circle", "geocodes"}],
 "headline": {"ja": "...", "en": "..."}, "description": {...}, "instruction": {...},
 "expires": "2026-11-24T12:00:00+09:00"}
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Any

from alertd import schemas
from alertd.cap import circle as cap_circle
from alertd.cap import polygon as cap_polygon
from alertd.errors import InvalidInput
from alertd.limits import check_expiry
from alertd.models import DRILL_END_NOTE, Alert, Area, Info, MsgType, Origin, Status, parse_time, utcnow

LANG_TAGS = {"ja": "ja-JP", "en": "en-US", "zh": "zh-CN", "ko": "ko-KR"}


def _texts(body: dict[str, Any], name: str) -> dict[str, str]:
    value = body.get(name)
    if value is None:
        return {}
    if isinstance(value, str):
        return {"ja": value}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return value
    raise InvalidInput(f"'{name}' must be text or an object of texts by language.", field=name)


def _time(body: dict[str, Any], name: str) -> datetime | None:
    if not body.get(name):
        return None
    try:
        return parse_time(str(body[name]))
    except ValueError as exc:
        raise InvalidInput(
            f"'{name}' is not a date and time such as 2026-11-24T12:00:00+09:00: {body[name]!r}.", field=name
        ) from exc


def _geocodes(raw: Any) -> list[tuple[str, str]]:
    if not isinstance(raw, list) or not all(
        isinstance(g, list | tuple) and len(g) == 2 and all(isinstance(x, str) for x in g) for g in raw
    ):
        raise InvalidInput("'geocodes' must be a list of [valueName, value] pairs.", field="areas")
    return [(g[0], g[1]) for g in raw]


def unknown_fields(body: dict[str, Any], known: frozenset[str], where: str = "") -> None:
    """A misspelt field ('levle') must not be dropped in silence: the alert would go out without it."""
    extra = sorted(set(body) - known)
    if extra:
        hints = []
        for name in extra:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise InvalidInput(
            f"Unknown field{'s' if len(extra) > 1 else ''}{where}: {', '.join(hints)}. Nothing was sent.",
            field=extra[0],
        )


def parse_json_alert(body: dict[str, Any], sender: str) -> Alert:
    # The shape is the model's (the one the OpenAPI document shows); what follows reads it.
    body = schemas.parse(schemas.JsonAlert, body).model_dump(exclude_unset=True)
    status_raw, type_raw = body.get("status"), body.get("msg_type", "Alert")
    if status_raw not in ("Actual", "Exercise", "Test"):
        raise InvalidInput(f"'status' must be Actual, Exercise or Test, not {status_raw!r}.", field="status")
    if type_raw not in ("Alert", "Update", "Cancel"):
        raise InvalidInput(f"'msg_type' must be Alert, Update or Cancel, not {type_raw!r}.", field="msg_type")
    status, msg_type = Status(status_raw), MsgType(type_raw)
    if body.get("drill_end") and (msg_type is not MsgType.CANCEL or status is not Status.EXERCISE):
        raise InvalidInput("'drill_end' is only for a Cancel with status Exercise: it says a drill is over.",
                           field="drill_end")  # fmt: skip
    event = body.get("event")
    if msg_type is MsgType.CANCEL and not event:
        event = "取消"  # a Cancel is about what it references; alertd names that (intake)
    if not isinstance(event, str) or not event:
        raise InvalidInput("'event' is missing: say what the alert is about, e.g. 大雨警報.", field="event")
    level = body.get("level")
    if level is not None and (not isinstance(level, int) or not 1 <= level <= 5):
        raise InvalidInput("'level' must be a whole number from 1 to 5.", field="level")
    refs = body.get("references") or []
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise InvalidInput("'references' must be a list of alert ids.", field="references")
    districts = body.get("districts") or []
    areas_raw = body.get("areas") or []
    if not isinstance(districts, list) or not isinstance(areas_raw, list):
        raise InvalidInput("'districts' and 'areas' must be lists.")
    if districts and areas_raw:
        # The CAP would carry the areas while routing and the jurisdiction check used
        # the districts: one of them would be unchecked.
        raise InvalidInput("Give either 'districts' or 'areas', not both.", field="areas")
    areas = []
    for n, a in enumerate(areas_raw, start=1):
        if not isinstance(a, dict):
            raise InvalidInput("Each entry of 'areas' must be an object.", field="areas")
        polygons = [a["polygon"]] if a.get("polygon") else a.get("polygons", [])
        circles = [a["circle"]] if a.get("circle") else a.get("circles", [])
        if not isinstance(polygons, list) or not isinstance(circles, list) or not all(
            isinstance(x, str) for x in [*polygons, *circles]
        ):
            raise InvalidInput(f"Area {n}: polygons and circles must be CAP texts.", field="areas")
        where = f"area {n}"
        areas.append(
            Area(
                desc=str(a.get("desc", "")),
                polygons=[cap_polygon(p, where) for p in polygons],
                circles=[cap_circle(c, where) for c in circles],
                geocodes=_geocodes(a.get("geocodes", [])),
            )
        )
    adapters = body.get("adapters")
    if adapters is not None and (
        not isinstance(adapters, list) or not all(isinstance(a, str) for a in adapters)
    ):
        raise InvalidInput('\'adapters\' must be a list such as ["radio", "broadcaster"].', field="adapters")
    expires = _time(body, "expires")
    check_expiry(expires)
    headlines, descriptions, instructions = (
        _texts(body, n) for n in ("headline", "description", "instruction")
    )
    # Japanese and English always (alertd words what the sender did not), then any others given.
    langs = list(dict.fromkeys(["ja", "en", *headlines, *descriptions]))
    infos = [
        Info(
            language=LANG_TAGS.get(lang, lang),
            event=event,
            urgency=str(body.get("urgency", "Immediate")),
            severity=str(body.get("severity", "Severe")),
            certainty=str(body.get("certainty", "Likely")),
            expires=expires,
            headline=headlines.get(lang),
            description=descriptions.get(lang),
            instruction=instructions.get(lang),
            areas=areas if i == 0 else [],
        )
        for i, lang in enumerate(langs)
    ]
    return Alert(
        identifier=str(body.get("identifier") or ""),
        sender=sender,
        sent=_time(body, "sent") or utcnow(),
        status=status,
        msg_type=msg_type,
        referenced_ids=list(refs),
        origin=Origin.JSON,
        kind=str(body.get("kind") or "warning"),
        level=level,
        districts=[str(d) for d in districts],
        adapters=adapters,
        infos=infos,
        note=DRILL_END_NOTE if body.get("drill_end") else None,
    )
