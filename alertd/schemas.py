"""Typed request and answer shapes of the HTTP API: one source for three jobs.

The same pydantic models validate what arrives, shape what leaves, and are
turned into the JSON Schemas of ``/api/openapi.json`` (alertd.openapi), so
the document and the checks cannot disagree. Structure lives here (types,
required fields, enums, bounds); meaning stays where it is decided
(districts resolve in the registry, jurisdiction in alertd.jurisdiction).

pydantic v2 rather than msgspec: both are far below a Redis round trip on
the hot path (README, dependency table), and pydantic's errors say which
field and which rule failed, which is what a refusal sentence needs.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from alertd.errors import InvalidInput
from alertd.limits import DEFAULT_PAGE, MAX_PAGE
from alertd.models import parse_time

ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
SENDER_RE = r"^[A-Za-z0-9][A-Za-z0-9_.@:/-]{0,199}$"
# An http(s) URL, or an mqtt(s) URL naming one topic (no wildcards): what a delivery can reach.
_HOST = r"([^\s/?#@\[\]]+@)?([A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
ENDPOINT_RE = rf"^(https?://{_HOST}([/?#][^\s]*)?|mqtts?://{_HOST}/[^\s#+/]+(/[^\s#+]*)?)$"


# Any address a subscriber kind can take: the kind then says which schemes it accepts
# (Subscriber._endpoint_fits). Apprise alone knows some hundred service schemes.
SUBSCRIBER_ENDPOINT_RE = r"^[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s]+$"
# An e-mail address as SMTP carries it in RCPT TO: no display name, no list separators.
EMAIL_RE = r"^[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9.-]{1,253}$"
SubscriberKind = Literal["broadcaster", "isp", "signage", "radio", "email", "apprise", "cbc"]
EmailAddress = Annotated[str, Field(pattern=EMAIL_RE, max_length=254)]  # RFC 5321 §4.5.3.1.3: a path is 256 with <>
# Recipients of one e-mail subscriber: a list server's address counts as one, so a city with more
# residents registered points alertd at its list server (or registers several subscribers).
MAX_RECIPIENTS = 3000
# Which endpoint each kind takes, as the refusal sentence says it.
_KIND_ENDPOINTS = {
    "email": (("smtp", "smtps"), "an smtp://[user:password@]host:port[?starttls=1] or smtps:// address"),
    "cbc": (("http", "https"), "the http(s):// URL of the cell-broadcast centre's CAP interface"),
}
_DEFAULT_ENDPOINTS = (("http", "https", "mqtt", "mqtts"), "an http(s):// URL or mqtt://host:port/topic")


# A district code as a list item: never empty ("" would name nothing alertd could look up).
Code = Annotated[str, Field(min_length=1, max_length=100)]


def _ci(*words: str) -> str:
    """A pattern matching any of ``words`` in any letter case, as the query parsers take them
    (JSON Schema patterns have no case-insensitive flag)."""
    alts = ("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in w) for w in words)
    return f"^({'|'.join(alts)})$"


def _whole_number(value: Any) -> Any:
    """JSON says 4 and 4.0 are the same number; true and "4" are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("not a number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not a whole number")
    return int(value)


def _query_number(value: Any) -> Any:
    if not (isinstance(value, str) and value.isascii() and value.isdigit()):
        raise ValueError("not a whole number")
    return int(value)


def whole_number(low: int, high: int, *, in_query: bool = False) -> Any:
    """An integer from low to high (the bounds before the parser, so the schema shows them)."""
    return Annotated[int, Field(ge=low, le=high), BeforeValidator(_query_number if in_query else _whole_number)]


class Shape(BaseModel):
    """A body or query alertd reads. ``refusals`` holds, per field, the sentence a desk
    officer reads when that field is missing or not acceptable ({value!r} is what was sent)."""

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)
    refusals: ClassVar[dict[str, str]] = {}
    # Where the API says an unknown field is a 422 (a misspelt field must not be dropped in silence).
    unknown_is_refused: ClassVar[bool] = False


M = TypeVar("M", bound=Shape)


def refusal(model: type[Shape], err: ValidationError, data: Any) -> InvalidInput:
    """The first error, in the order the fields are declared, as one sentence naming the field."""
    order = {name: i for i, name in enumerate(model.model_fields)}
    errors = err.errors(include_url=False)
    unknown = [e["loc"] for e in errors if e["type"] == "extra_forbidden" and e["loc"]]
    if unknown and len(unknown[0]) == 3 and isinstance(unknown[0][1], int):
        # In an item of a list (an area): name the item, as a desk counts, from 1.
        outer, n = str(unknown[0][0]), int(unknown[0][1])
        item = model.model_fields[outer].annotation
        names = sorted(getattr(getattr(item, "__args__", (None,))[0], "model_fields", {}))
        where = f" in {outer.rstrip('s')} {n + 1}"
        return _unknown([str(loc[2]) for loc in unknown if loc[:2] == (outer, n)], names, where)
    extra = sorted(str(loc[0]) for loc in unknown if len(loc) == 1)
    if extra:
        return _unknown(extra, sorted(model.model_fields), "")
    errors.sort(key=lambda e: order.get(str(e["loc"][0]) if e["loc"] else "", len(order)))
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    value = data.get(field) if isinstance(data, dict) else None
    path = ".".join(str(p) for p in first["loc"] if isinstance(p, str))
    sentence = (
        (first["type"] == "missing" and model.refusals.get(f"{field}.missing"))
        or model.refusals.get(path)
        or model.refusals.get(field)
    )
    if sentence is None:
        what = first["msg"].removeprefix("Value error, ").rstrip(".")
        sentence = f"'{field}' is not acceptable ({what})." if field else f"{what}."
    return InvalidInput(sentence.format(value=value), field=field or None)


def _unknown(extra: list[str], known: list[str], where: str) -> InvalidInput:
    """A misspelt field ('levle') must not be dropped in silence: the alert would go out without it."""
    hints = []
    for name in sorted(extra):
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return InvalidInput(
        f"Unknown field{'s' if len(extra) > 1 else ''}{where}: {', '.join(hints)}. Nothing was sent.",
        field=sorted(extra)[0],
    )


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise refusal(model, err, data) from None


# --- admin ------------------------------------------------------------------------
_ID_SENTENCE = "The {what} id {{value!r}} is not usable: use 1–64 letters, digits, '_', '-', '.' or ':'."
_CODES_SENTENCE = "'{name}' must be a non-empty list of district codes such as \"08211\"."


class ApprovalPolicy(Shape):
    """Which of an issuer's orders need a second person (two-person rule): those of one of
    these statuses at this level or higher. Lifts and cancels follow the same rule."""

    model_config = ConfigDict(extra="forbid")
    refusals: ClassVar[dict[str, str]] = {
        "status": "'approval.status' must be a list of Actual, Exercise or Test, e.g. [\"Actual\"].",
        "min_level": "'approval.min_level' must be a whole number from 1 to 5, e.g. 4.",
    }
    status: list[Literal["Actual", "Exercise", "Test"]] = Field(
        min_length=1, max_length=3, examples=[["Actual"]], description="The statuses the rule applies to."
    )
    min_level: whole_number(1, 5) = Field(
        examples=[4], description="Orders of this level or higher need an approver's approval."
    )


class Issuer(Shape):
    """Who may send: a municipal desk, a prefecture, or a national source.
    Registering an id that exists replaces it (and its token)."""

    refusals: ClassVar[dict[str, str]] = {
        "id": _ID_SENTENCE.format(what="issuer"),
        "name": "'name' is missing: give the issuer's name, e.g. 常総市災害対策本部.",
        "token": "'token' must be a secret of at least 16 characters.",
        "national": "'national' must be true or false.",
        "jurisdiction": _CODES_SENTENCE.format(name="jurisdiction"),
        "senders": "'senders' must be a list of up to 10 CAP sender names.",
        "approval.status": ApprovalPolicy.refusals["status"],
        "approval.min_level": ApprovalPolicy.refusals["min_level"],
        "approval": "'approval' must be an object such as {{\"status\": [\"Actual\"], \"min_level\": 4}}.",
        "cap_certificate": "'cap_certificate' must be a PEM certificate (-----BEGIN CERTIFICATE-----…).",
    }
    model_config = ConfigDict(
        json_schema_extra={
            # Required unless national: said in the schema, so a fuzzer (and a reader) knows.
            "if": {"properties": {"national": {"const": False}}},
            "then": {"required": ["jurisdiction"], "properties": {"jurisdiction": {"minItems": 1}}},
        }
    )

    id: str = Field(pattern=ID_RE, examples=["joso-city"],
                    description="1–64 letters, digits, '_', '-', '.' or ':'; it appears in alert senders "
                    "as '<id>@alertd'.")  # fmt: skip
    name: str = Field(min_length=1, examples=["常総市災害対策本部"])
    token: str = Field(min_length=16, json_schema_extra={"writeOnly": True},
                       description="The issuer's bearer secret (at least 16 characters). alertd keeps only "
                       "its hash and never shows it again. Give each issuer its own token.")  # fmt: skip
    national: bool = Field(False, description="May issue anywhere (JMA, the national government). "
                           "Send true or false.")  # fmt: skip
    jurisdiction: list[Code] = Field(
        default_factory=list, examples=[["08211"], ["08"]],
        description="District codes the issuer may send for; a 2-digit prefecture code covers every "
        "municipality in it (代行). At least one unless national; unknown codes are a 422 (unknown-area).",
    )  # fmt: skip
    senders: list[Annotated[str, Field(pattern=SENDER_RE)]] = Field(
        default_factory=list, max_length=10, examples=[["bousai@city.joso.lg.jp"]],
        description="CAP senders this issuer may use besides its own '<id>@alertd'. A sender belongs to "
        "one issuer only (409 otherwise); CAP posted with any other sender is refused (403).",
    )  # fmt: skip
    approval: ApprovalPolicy | None = Field(
        None, description="Two-person rule: an order matching it (and its lift or cancel) waits as a draft "
        "until another user with the approver role approves it. Absent: nothing waits. National "
        "warnings (EEW, tsunami, missile) and national issuers are never held.",
    )  # fmt: skip

    cap_certificate: str | None = Field(
        None, max_length=20_000, pattern=r"^\s*-----BEGIN CERTIFICATE-----",
        description="PEM certificate. When set, CAP this issuer posts must carry an XML-DSig signature by "
        "its key: unsigned CAP is a 401, a signature that does not verify a 422, and nothing is written.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _jurisdiction_unless_national(self) -> Issuer:
        if not self.national and not self.jurisdiction:
            raise InvalidInput(self.refusals["jurisdiction"], field="jurisdiction")
        if self.cap_certificate is not None:
            from alertd.cap_signature import check_certificate

            check_certificate(self.cap_certificate)
        return self


class IssuerView(Shape):
    """An issuer as alertd shows it: never its token."""

    id: str
    name: str
    jurisdiction: list[str] = Field(description="Empty for a national issuer.")
    national: bool
    senders: list[str] = Field(max_length=11, description="Every sender it may use, its own '<id>@alertd' first.")
    approval: ApprovalPolicy | None = Field(None, description="Its two-person rule, if any.")
    cap_certificate: str | None = Field(None, description="The certificate its CAP must be signed with, if any.")


class Subscriber(Shape):
    """A receiver alertd pushes alerts to: a broadcaster (CAP), an ISP or portal (signed JSON
    webhook), signage or radio; a registered-mail list (email, by SMTP), a social or chat service
    (apprise, by Apprise URL) or a carrier's cell-broadcast centre (cbc, CAP 1.2 by HTTP POST).
    Registering an id that exists replaces it."""

    refusals: ClassVar[dict[str, str]] = {
        "id": _ID_SENTENCE.format(what="subscriber"),
        "adapter": "'adapter' must be one of broadcaster, isp, signage, radio, email, apprise, cbc, "
        "not {value!r}.",
        "endpoint": "'endpoint' must be an http(s):// URL or mqtt://host:port/topic naming one topic "
        "(no wildcards).",
        "districts": _CODES_SENTENCE.format(name="districts"),
        "secret": "'secret' must be at least 16 characters.",
        "min_level": "'min_level' must be a whole number from 1 to 5.",
        "drills": "'drills' must be true or false.",
        "languages": '\'languages\' must be a list such as ["ja", "en"].',
        "timeout_s": "'timeout_s' must be a number from 0.1 to 60.",
        "max_in_flight": "'max_in_flight' must be a number from 1 to 1000.",
        "name": "'name' must be text: what the desk calls this receiver.",
        "recipients": "'recipients' must be a list of e-mail addresses such as \"bousai@example.jp\" "
        "(at most 3,000; for more, give the address of your mailing-list server).",
        "sender": "'sender' must be one e-mail address such as \"bousai@city.joso.ibaraki.jp\".",
    }

    id: str = Field(pattern=ID_RE)
    adapter: SubscriberKind
    endpoint: str = Field(pattern=SUBSCRIBER_ENDPOINT_RE, max_length=2000,
                          examples=["https://portal.example.jp/alertd", "mqtt://broker.example.jp:1883/alerts/joso"],
                          description="broadcaster, isp, signage, radio: an http(s):// URL, or "
                          "mqtt(s)://host:port/topic naming one topic (no wildcards). email: "
                          "smtp://[user:password@]host:port[?starttls=1] (smtps:// for TLS from the start). "
                          "apprise: any Apprise URL (json://host:port/path, tgram://…, line://…). cbc: the "
                          "http(s):// URL of a cell-broadcast centre's CAP interface. Credentials in it are "
                          "never shown back.")  # fmt: skip
    districts: list[Code] = Field(
        min_length=1, examples=[["08"], ["08211", "08220"]],
        description="District codes to receive alerts for; a wider code covers everything in it, and a "
        "whole-municipality order reaches a subscriber of one of its 町域. Unknown codes are a 422 "
        "(unknown-area).",
    )  # fmt: skip
    secret: str | None = Field(
        None, min_length=16, json_schema_extra={"writeOnly": True},
        description="HMAC key for webhook signatures (at least 16 characters). With a secret, every HTTP "
        "delivery carries X-Alertd-Signature: t=<unix ms>,v1=<hex HMAC-SHA256 over "
        "t.Idempotency-Key.alert-id.body> (README, For receivers). Never shown back.",
    )  # fmt: skip
    min_level: whole_number(1, 5) | None = Field(
        None,
        description="Only alerts at this 警戒レベル or above (a lift, cancel or update of an alert it got "
        "still reaches it).",
    )  # fmt: skip
    drills: bool = Field(False, description="A receiver that takes drills (訓練, status Exercise): a drill "
                         "reaches only receivers that say so, whoever sends it (desk, drill run, CAP, JSON, "
                         "JMA).")  # fmt: skip
    languages: list[str] | None = Field(None, examples=[["ja", "en"]])
    timeout_s: float | None = Field(None, ge=0.1, le=60)
    max_in_flight: whole_number(1, 1000) | None = None
    name: str | None = None
    recipients: list[EmailAddress] | None = Field(
        None, max_length=MAX_RECIPIENTS, examples=[["bousai-list@example.jp"]],
        description="email only (required there): who gets each alert. They receive it by Bcc, in "
        "batches, so no recipient sees another's address.",
    )  # fmt: skip
    sender: EmailAddress | None = Field(None, examples=["bousai@city.joso.ibaraki.jp"],
                                        description="email only (required there): the From address.")

    @model_validator(mode="after")
    def _endpoint_reachable(self) -> Subscriber:
        self._endpoint_fits()
        if self.adapter == "email":
            if not self.recipients:
                raise InvalidInput("An email subscriber needs 'recipients': the addresses that get each alert.",
                                   field="recipients")  # fmt: skip
            if not self.sender:
                raise InvalidInput("An email subscriber needs 'sender': the From address of its messages.",
                                   field="sender")  # fmt: skip
        elif self.recipients:
            raise InvalidInput(f"'recipients' is for email subscribers only, not {self.adapter}.", field="recipients")
        return self

    def _endpoint_fits(self) -> None:
        """The pattern is what a reader can check; this is what a delivery of this kind needs."""
        if self.adapter == "apprise":
            from alertd.apprise_urls import apprise_problem

            problem = apprise_problem(self.endpoint)
            if problem is not None:
                raise InvalidInput(problem, field="endpoint")
            return
        schemes, what = _KIND_ENDPOINTS.get(self.adapter, _DEFAULT_ENDPOINTS)
        sentence = self.refusals["endpoint"] if schemes is _DEFAULT_ENDPOINTS[0] else (
            f"A {self.adapter} subscriber's 'endpoint' must be {what}.")  # fmt: skip
        scheme = self.endpoint.partition("://")[0].lower()
        try:
            parts = urlsplit(self.endpoint)
            host, _ = parts.hostname, parts.port  # .port raises on a port that is not a number
        except ValueError:
            host = None
        if scheme not in schemes or not host:
            raise InvalidInput(sentence, field="endpoint")
        if scheme.startswith(("http", "mqtt")) and not re.match(ENDPOINT_RE, self.endpoint):
            raise InvalidInput(sentence, field="endpoint")


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # absent means unchanged; null is not a value it takes


class SubscriberChange(Shape):
    """Some fields of a subscriber; the rest stay. A field sent as null goes back to its
    default ("secret": null removes the secret: deliveries go unsigned); the id cannot change."""

    refusals = Subscriber.refusals
    # What a subscriber cannot be without may be left out, not sent as null.
    id: str = Field(None, pattern=ID_RE, description="If given, the subscriber's own id.",  # type: ignore[assignment]
                    json_schema_extra=_no_default)
    adapter: SubscriberKind = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    endpoint: str = Field(None, pattern=ENDPOINT_RE, max_length=2000, json_schema_extra=_no_default)  # type: ignore[assignment]
    districts: list[Code] = Field(None, min_length=1, json_schema_extra=_no_default)  # type: ignore[assignment]
    secret: str | None = Field(None, min_length=16, json_schema_extra={"writeOnly": True})
    min_level: whole_number(1, 5) | None = None
    drills: bool | None = None
    languages: list[str] | None = None
    timeout_s: float | None = Field(None, ge=0.1, le=60)
    max_in_flight: whole_number(1, 1000) | None = None
    name: str | None = None
    recipients: list[EmailAddress] | None = Field(None, max_length=MAX_RECIPIENTS)
    sender: EmailAddress | None = None


class SubscriberView(BaseModel):
    """A subscriber as alertd shows it: the secret is "***" when set, null when not."""

    id: str
    adapter: SubscriberKind
    endpoint: str
    districts: list[str]
    secret: Literal["***"] | None
    min_level: int | None = None
    languages: list[str]
    timeout_s: float
    max_in_flight: int
    name: str | None = None
    drills: bool = False
    recipients: list[str] = Field(default_factory=list)
    sender: str | None = None


class TestBroadcastRequest(Shape):
    """A transmission test (情報伝達試験): a Test message to every subscriber in scope."""

    __test__ = False  # not a pytest test class, whatever its name
    refusals: ClassVar[dict[str, str]] = {
        "districts": "'districts' must be a list of district codes.",
        "wait_s": "'wait_s' must be between 1 and 3600 seconds.",
        "drills": "'drills' must be true or false.",
    }
    districts: list[Code] | None = Field(
        None, examples=[["08"], ["08211", "08220"]],
        description="District codes in scope; default (absent or empty) all 47 prefectures. Unknown codes "
        "are a 422 (unknown-area).",
    )  # fmt: skip
    wait_s: float = Field(60, ge=1, le=3600,
                          description="How long to wait for receivers to confirm before the result is final.")
    drills: bool = Field(False, description="A drill's own test (a drill's test_broadcast step): it reaches only "
                         "receivers that take drills, never a live one that did not opt in.")


# --- desk -----------------------------------------------------------------------
class DistrictAddition(Shape):
    """A 字 or 地区 the postal data does not list (上三坂), added by the town's own desk."""

    model_config = ConfigDict(extra="forbid")
    refusals: ClassVar[dict[str, str]] = {
        "municipality": "'municipality' is missing: give the 5-digit municipality code, e.g. 08211.",
        "name": "'name' must be the district's name as residents know it, e.g. 上三坂.",
        "kana": "'kana' must be the name's reading in kana.",
        "geometry": "'geometry' must be a GeoJSON Polygon or MultiPolygon.",
    }
    municipality: str = Field(min_length=1, examples=["08211"])
    name: str = Field(min_length=1, max_length=50, pattern=r"^[^:]*\S[^:]*$", examples=["上三坂"])
    kana: str | None = Field(None, examples=["かみみさか"])
    geometry: dict[str, Any] | None = Field(None, description="A GeoJSON Polygon or MultiPolygon.")


class LayerDistrict(Shape):
    """One district of a municipality's own layer: a 自治区, a 学区, a shelter's catchment."""

    model_config = ConfigDict(extra="forbid")
    refusals: ClassVar[dict[str, str]] = {
        "name": "Each district of a layer needs a 'name' as residents know it (no ':'), e.g. 本石下自治区.",
        "kana": "'kana' must be the name's reading in kana.",
        "geometry": "'geometry' must be a GeoJSON Polygon or MultiPolygon.",
    }
    name: str = Field(min_length=1, max_length=50, pattern=r"^[^:]*\S[^:]*$", examples=["本石下自治区"])
    kana: str | None = Field(None, max_length=100)
    geometry: dict[str, Any] | None = Field(None, description="A GeoJSON Polygon or MultiPolygon (WGS 84).")


class LayerUpload(Shape):
    """A municipality's own layer of districts (自治区, 学区, 避難所の圏域), loaded as a whole:
    it replaces the layer of that name. Orders name its districts like 町域 from then on."""

    model_config = ConfigDict(extra="forbid")
    refusals: ClassVar[dict[str, str]] = {
        "districts": "'districts' must be a list of 1–2,000 districts, each {{\"name\": …}} with an optional "
        "\"kana\" and \"geometry\".",
    }
    districts: list[LayerDistrict] = Field(min_length=1, max_length=2000)


class AddedDistrict(BaseModel):
    code: str = Field(examples=["08211:layer:desk:上三坂"])
    name: str
    municipality: str
    full_name: str


class AddedDistrictRow(BaseModel):
    code: str
    name: str
    kana: str | None
    has_geometry: bool


class LayerLoaded(BaseModel):
    municipality: str = Field(examples=["08211"])
    layer: str = Field(examples=["jichiku"])
    districts: list[AddedDistrictRow]


# --- receivers ----------------------------------------------------------------------
class Ack(Shape):
    refusals: ClassVar[dict[str, str]] = {
        "subscriber": 'Send {{"subscriber": "<your id>", "idempotency_key": "<the key you received>"}}.',
        "idempotency_key": "'idempotency_key' must be the key alertd sent with the delivery (32 hex characters).",
    }
    subscriber: str = Field(max_length=64, description="Your subscriber id.")
    idempotency_key: str = Field(
        min_length=1, max_length=128, pattern=r"^[\x00-\x7f]+$",
        description="The Idempotency-Key header of the delivery you received; it proves receipt.",
    )  # fmt: skip


class AckResult(BaseModel):
    alert_id: str
    subscriber: str
    state: Literal["confirmed"]


# --- queries --------------------------------------------------------------------
class AlertListQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {
        "active": "'active' must be true or false.",
        "district": "alertd does not know the district code {value!r}.",
        "limit": "'limit' must be a whole number from 1 to 200; follow the Link header for the next page.",
        "status": "'status' must be Actual, Exercise, Test or all.",
        "before": "'before' must be an alert id from a previous page.",
    }
    active: str = Field("false", pattern=_ci("true", "false", "1", "0", "yes", "no"),
                        description="true (or 1, yes): only alerts in force now.")  # fmt: skip
    district: str | None = Field(
        None, examples=["08211", "08"],
        description="Only alerts covering this district code, or covered by it (08 gives every alert in "
        "Ibaraki; 08211 also gives a prefecture-wide one). An unknown code is a 422 (unknown-area).",
    )  # fmt: skip
    limit: whole_number(1, MAX_PAGE, in_query=True) = Field(DEFAULT_PAGE,
                               description="At most this many (default 100, at most 200). When there may be "
                               "more, the Link header (rel=\"next\") gives the next page.")  # fmt: skip
    status: str | None = Field(None, pattern=_ci("Actual", "Exercise", "Test", "all"),
                               description="Actual, Exercise, Test or all. With active=true the default is "
                               "Actual: a drill never shows among real alerts unless asked for; otherwise "
                               "all.")  # fmt: skip
    before: str | None = Field(None, pattern=r"^[A-Za-z0-9]{0,64}$",
                               description="Page back: only alerts accepted before this alert id (from the "
                               "Link header); empty means the first page.")  # fmt: skip


class InForceQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {
        "municipality": "'municipality' must be a municipality code such as 08211.",
        "status": "'status' must be Actual, Exercise or Test.",
    }
    municipality: str = Field(pattern=r"^[0-9]{5,6}$", examples=["08211"],
                              description="A municipality (or ward) code; an unknown one is a 422 "
                              "(unknown-area).")  # fmt: skip
    status: str = Field("Actual", pattern=_ci("Actual", "Exercise", "Test"))


class FeedQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {
        "prefecture": "'prefecture' must be a 2-digit prefecture code such as 08.",
        "municipality": "'municipality' must be a municipality or district code such as 08211.",
        "status": "'status' must be Actual, Exercise or Test.",
    }
    prefecture: str | None = Field(None, pattern=r"^([0-9]{2})?$",
                                   description="Only alerts in this prefecture (2-digit code, e.g. 08); an "
                                   "unknown one is a 422 (unknown-area).")  # fmt: skip
    municipality: str | None = Field(None, description="Only alerts covering this municipality or district, or "
                                     "inside it; an unknown code is a 422 (unknown-area).")  # fmt: skip
    status: Literal["Actual", "Exercise", "Test", ""] = Field("Actual", description="Empty means Actual.")


class DistrictListQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {
        "municipality": "'municipality' is missing: give the 5-digit municipality code, e.g. 08211.",
    }
    municipality: str = Field(min_length=1, examples=["08211"])


# --- desk messages ------------------------------------------------------------------
def _date_time(value: Any) -> Any:
    """RFC 3339 as a desk writes it; naive times are taken as UTC (alertd.models.parse_time)."""
    if value == "":
        return value  # as good as absent: the default applies
    if not isinstance(value, str):
        raise ValueError("not text")
    text = value[:-1] + "Z" if value.endswith("z") else value
    parse_time(text.replace("t", "T", 1) if "t" in text[10:11] else text)
    return value


DateTime = Annotated[
    str,
    BeforeValidator(_date_time),
    # Empty is taken as absent (a desk form's blank field), so the schema says so too.
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}],
                    "description": "RFC 3339 with an offset, e.g. 2026-11-24T12:00:00+09:00."}),
]
DeskStatus = Literal["Actual", "Exercise", "Test"]
_DESK_STATUS = ("Must always be given: Actual (real), Exercise (a drill) or Test. There is no default, so a "
                "drill can never turn real by omission.")  # fmt: skip
_IDENTIFIER = (
    "The same identifier (from 'identifier' or the Idempotency-Key header) sent twice by the same issuer "
    "with the same content gives the same 202 answer, and the message is sent only once. The same "
    "identifier with different content is a 409: a changed message needs an identifier of its own."
)
Identifier = Annotated[str, Field(max_length=200, pattern=r"^[^,]*$", description=_IDENTIFIER)]
_MISSING_STATUS = "'status' is missing: say whether this is Actual, Exercise (a drill) or Test."
_WRONG_STATUS = "'status' must be Actual, Exercise or Test, not {value!r}."


class Shelter(Shape):
    """A shelter (避難所)."""

    name: str = Field(min_length=1, examples=["水海道小学校"])
    status: Literal["open", "closed", "full"] = "open"
    address: str | None = None
    capacity: whole_number(0, 10_000_000) | None = None
    occupancy: whole_number(0, 10_000_000) | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)


_SHELTERS = "'shelters' must be a list of shelters, each with a name, status open, closed or full, and whole numbers."


class EvacuationOrder(Shape):
    """An evacuation order (避難情報) from a municipal desk: issue (発令) or lift (解除)."""

    model_config = ConfigDict(extra="forbid")
    refusals: ClassVar[dict[str, str]] = {
        "municipality": "'municipality' is missing: give the 5-digit municipality code, e.g. 08211.",
        "level": "'level' must be 3 (高齢者等避難), 4 (避難指示) or 5 (緊急安全確保), not {value!r}. "
        "避難勧告 was abolished in 2021.",
        "action": "'action' must be 'issue' (発令) or 'lift' (解除), not {value!r}.",
        "reason": "'reason' must be a short word such as 洪水 or 土砂災害.",
        "districts": '\'districts\' must list district names (e.g. ["三坂町"]) or be ["all"] for the whole municipality.',
        "status": _WRONG_STATUS,
        "status.missing": _MISSING_STATUS,
        "identifier": "'identifier' must be text of up to 200 characters without commas.",
        "shelters": _SHELTERS,
        "expires": "'expires' is not a date and time: {value!r}.",
    }
    municipality: str = Field(min_length=1, examples=["08211"],
                              description="The municipality code; a prefecture may issue on behalf of (代行) its "
                              "municipalities.")  # fmt: skip
    level: Literal[3, 4, 5] = Field(description="警戒レベル: 3 高齢者等避難, 4 避難指示, 5 緊急安全確保. "
                                    "避難勧告 (the old level 4) was abolished in 2021 and is refused.")  # fmt: skip
    action: Literal["issue", "lift"] = Field(description="issue (発令) or lift (解除).")
    reason: str = Field(min_length=1, max_length=50, examples=["洪水", "土砂災害"])
    districts: list[Annotated[str, Field(min_length=1, pattern=r"\S")]] = Field(
        min_length=1, examples=[["三坂町", "新石下"], ["all"]],
        description='District (町域) names inside the municipality, or ["all"] / ["全域"] for the whole '
        "municipality. An unknown name is refused (unknown-area); nothing is guessed.",
    )  # fmt: skip
    status: DeskStatus = Field(description=_DESK_STATUS)
    identifier: Identifier | None = None
    shelters: list[Shelter] | None = None
    expires: DateTime | None = Field(None, description="When the order stops being in force; default 24 hours "
                                     "after sending; at most 31 days away.")  # fmt: skip


class ShelterNotice(Shape):
    """Which shelters are open, closed or full. With 'corrects' it is a 訂正 that replaces an
    earlier shelter notice without announcing a new evacuation."""

    model_config = ConfigDict(extra="forbid")
    refusals: ClassVar[dict[str, str]] = {
        "municipality": EvacuationOrder.refusals["municipality"],
        "shelters": _SHELTERS,
        "status": _WRONG_STATUS,
        "status.missing": _MISSING_STATUS,
        "identifier": EvacuationOrder.refusals["identifier"],
        "expires": EvacuationOrder.refusals["expires"],
        "corrects": "'corrects' must be the alertd id of the shelter notice this replaces.",
    }
    municipality: str = Field(min_length=1, examples=["08211"])
    shelters: list[Shelter] = Field(min_length=1)
    status: DeskStatus = Field(description=_DESK_STATUS)
    identifier: Identifier | None = None
    corrects: str | None = Field(None, description="The alertd id of the notice this replaces.")
    expires: DateTime | None = None


Texts = str | dict[str, str]
_TEXTS = "Text, taken as Japanese, or an object of texts by language (ja, en, zh, ko)."


class JsonArea(Shape):
    model_config = ConfigDict(extra="forbid")
    desc: str = ""
    polygon: str | None = Field(None, description='CAP polygon: "lat,lon lat,lon …", closed.')
    polygons: list[str] = Field(default_factory=list)
    circle: str | None = Field(None, description='CAP circle: "lat,lon radius_km".')
    circles: list[str] = Field(default_factory=list)
    geocodes: list[Annotated[list[str], Field(min_length=2, max_length=2)]] = Field(
        default_factory=list, description="[valueName, value] pairs, as in CAP <geocode>."
    )


class JsonAlert(Shape):
    """alertd's compact JSON alert, for systems that do not speak CAP. Give the area as district
    codes or as CAP-style areas (polygon, circle, geocodes), not both; a Cancel may name none and
    goes where the alerts it cancels went."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # 'event' is required except on a Cancel (alertd names it after what it cancels).
            "if": {"properties": {"msg_type": {"const": "Cancel"}}, "required": ["msg_type"]},
            "else": {"required": ["event"], "properties": {"event": {"minLength": 1}}},
            # Areas beside districts would leave one of them unchecked.
            "not": {"required": ["districts", "areas"],
                    "properties": {"districts": {"minItems": 1}, "areas": {"minItems": 1}}},
        },
    )  # fmt: skip
    refusals: ClassVar[dict[str, str]] = {
        "status": _WRONG_STATUS,
        "msg_type": "'msg_type' must be Alert, Update or Cancel, not {value!r}.",
        "event": "'event' is missing: say what the alert is about, e.g. 大雨警報.",
        "level": "'level' must be a whole number from 1 to 5.",
        "references": "'references' must be a list of alert ids.",
        "districts": "'districts' must be a list of district codes such as \"08211\".",
        "areas": "Each entry of 'areas' must be an object with desc, polygons, circles and geocodes.",
        "areas.geocodes": "'geocodes' must be a list of [valueName, value] pairs.",
        "adapters": '\'adapters\' must be a list such as ["radio", "broadcaster"].',
        "expires": "'expires' is not a date and time such as 2026-11-24T12:00:00+09:00: {value!r}.",
        "sent": "'sent' is not a date and time such as 2026-11-24T12:00:00+09:00: {value!r}.",
        "identifier": EvacuationOrder.refusals["identifier"],
        "headline": "'headline' must be text or an object of texts by language.",
        "description": "'description' must be text or an object of texts by language.",
        "instruction": "'instruction' must be text or an object of texts by language.",
        "kind": "'kind' must be text such as warning, eew, tsunami or special_warning.",
        "urgency": "'urgency' must be a CAP urgency such as Immediate.",
        "severity": "'severity' must be a CAP severity such as Severe.",
        "certainty": "'certainty' must be a CAP certainty such as Likely.",
        "drill_end": "'drill_end' must be true or false.",
    }
    status: DeskStatus = Field(description=_DESK_STATUS)
    msg_type: Literal["Alert", "Update", "Cancel"] = "Alert"
    drill_end: bool = Field(False, description="An Exercise Cancel that ends a drill: its text says the drill is "
                            "over (訓練終了), not that the message was sent in error.")  # fmt: skip
    event: str | None = Field(None, examples=["大雨警報"])
    level: whole_number(1, 5) | None = Field(None, description="警戒レベル; 5 is flash.")
    references: list[str] = Field(
        default_factory=list,
        description="alertd ids of the alerts an Update or Cancel changes. Required for Update and Cancel; "
        "an id alertd does not have is 409.",
    )
    districts: list[Code] = Field(default_factory=list, examples=[["08211", "0820100"]])
    areas: list[JsonArea] = Field(default_factory=list)
    adapters: list[str] | None = Field(None, examples=[["radio", "broadcaster"]])
    expires: DateTime | None = Field(None, description="At most 31 days away.")
    identifier: Identifier | None = None
    sent: DateTime | None = None
    kind: str = Field("warning", examples=["warning", "eew", "tsunami", "missile", "special_warning"],
                      description="eew, tsunami, missile, special_warning and national go in the flash lane.")
    headline: Texts | None = Field(None, description=_TEXTS)
    description: Texts | None = Field(None, description=_TEXTS)
    instruction: Texts | None = Field(None, description=_TEXTS)
    urgency: str = "Immediate"
    severity: str = "Severe"
    certainty: str = "Likely"


# --- people ---------------------------------------------------------------------
USERNAME_RE = r"^[a-z][a-z0-9._-]{2,31}$"
_SIGN_IN = 'Send {{"username": …, "password": …, "otp": "<the 6 digits your app shows>"}}.'


class NewUser(Shape):
    """A person who signs in to the desk: they belong to one issuer and hold roles.
    operator sends (as the issuer's token would); approver approves another person's
    draft; auditor reads the audit trail; admin manages the issuer's users."""

    model_config = ConfigDict(extra="forbid")
    refusals: ClassVar[dict[str, str]] = {
        "username": "'username' must be 3 to 32 characters: lower-case letters a-z, digits, '.', '_' or '-', "
        "starting with a letter (for example tanaka.h).",
        "issuer": "'issuer' must be the id of the issuer (municipality desk) the user works for.",
        "roles": "'roles' must be a list of one or more of operator, approver, auditor, admin.",
        "password": "'password' must be 12 to 256 characters; a short phrase is easier to remember than a "
        "short code and much harder to guess.",
        "expires": "'expires' must be a date such as 2027-03-31 (the account works through that day, Japan "
        "time) or a date and time with its offset, such as 2027-03-31T17:00:00+09:00.",
    }
    username: str = Field(pattern=USERNAME_RE, examples=["tanaka.h"])
    issuer: str = Field(pattern=ID_RE, examples=["joso-city"],
                        description="The issuer (municipality desk) the user works for; an unknown one is a 422.")
    roles: list[Literal["operator", "approver", "auditor", "admin"]] = Field(
        min_length=1, max_length=4, examples=[["operator"], ["approver", "auditor"]]
    )
    password: str = Field(min_length=12, max_length=256, json_schema_extra={"writeOnly": True})
    expires: str | None = Field(
        None, max_length=40, examples=["2027-03-31", "2027-03-31T17:00:00+09:00"],
        description="A date (the account works through that day, Japan time) or a date and time with its "
        "offset; past it the account cannot sign in. A past one is a 422.",
    )  # fmt: skip


class UserView(BaseModel):
    username: str
    issuer: str
    roles: list[str]
    expires: str | None = None
    created: str


class CreatedUser(BaseModel):
    username: str
    issuer: str
    roles: list[str]
    totp_uri: str = Field(description="otpauth:// URI for the authenticator app; shown this once only.")


class SignIn(Shape):
    """Password and the one-time code of the user's authenticator app (TOTP, 30 s, 6 digits)."""

    refusals: ClassVar[dict[str, str]] = {
        "username": _SIGN_IN, "password": _SIGN_IN, "otp.missing": _SIGN_IN,
        "otp": "'otp' must be the 6 digits your authenticator app shows now.",
    }  # fmt: skip
    username: str = Field(max_length=64, examples=["tanaka.h"])
    password: str = Field(max_length=1024, json_schema_extra={"writeOnly": True})
    otp: str = Field(pattern=r"^[0-9]{6}$", examples=["123456"])


class SessionView(BaseModel):
    token: str = Field(description="The session's bearer token; also set as the alertd_session cookie.")
    expires: str = Field(json_schema_extra={"format": "date-time"})


class AuditQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {
        "since": "'since' must be a whole number from 0 to 100000000000.",
        "limit": "'limit' must be a whole number from 1 to 1000.",
    }
    since: whole_number(0, 10**11, in_query=True) = Field(
        0, description="Entries after this seq (the last one you have); 0 for the start.")
    limit: whole_number(1, 1000, in_query=True) = Field(
        100, description="At most this many; a Link header (rel=\"next\") gives the next page.")


class AuditEntry(BaseModel):
    seq: int
    ts: str
    actor: str = Field(examples=["admin", "user:tanaka.h", "issuer:joso-city", "anonymous"])
    action: str
    target: str
    detail: dict[str, Any]
    prev: str
    hash: str


class Rejection(Shape):
    refusals: ClassVar[dict[str, str]] = {
        "reason": "'reason' must say in a sentence why the draft is rejected (1–500 characters).",
    }
    reason: str = Field(min_length=1, max_length=500, examples=["水位が下がり始めたため不要"])


class DraftView(BaseModel):
    """An order held for approval, with what it would do."""

    id: str
    issuer: str
    kind: Literal["evacuation", "shelter", "alert-json", "alert-cap"]
    state: Literal["awaiting_approval", "approved", "rejected"]
    drafted_by: str = Field(examples=["user:tanaka.h", "issuer:joso-city"])
    created: str = Field(json_schema_extra={"format": "date-time"})
    expires: str = Field(json_schema_extra={"format": "date-time"},
                         description="Past this it can no longer be approved (410).")
    preview: DraftPreview = Field(description="As the preview route answers, plus 'texts' per language, "
                                  "level, status, msg_type, action and priority.")  # fmt: skip


class AwaitingApproval(BaseModel):
    """The 202 answer when the issuer's two-person rule holds the order: nothing was sent yet."""

    id: str = Field(description="The draft's id: GET /api/v1/drafts lists it, an approver approves it.")
    state: Literal["awaiting_approval"]
    deliveries: Literal[0]


# --- answers --------------------------------------------------------------------
class LevelChange(BaseModel):
    district: str
    name: str
    level_before: int | None
    level_after: int | None


class Accepted(BaseModel):
    """The 202 answer: the alert is stored and every delivery is queued. Sending the same
    identifier again returns this same answer."""

    id: str = Field(description="alertd's id for the alert; use it in the other URLs.")
    districts: list[str] = Field(description="The district codes the alert was resolved to.")
    deliveries: int = Field(ge=0, description="Pushed deliveries queued.")
    priority: Literal["flash", "routine"]
    status: str
    msg_type: str
    levels: list[LevelChange] | None = Field(
        None, description="Per district, the evacuation level in force before and after this order."
    )


class Delivery(BaseModel):
    """One receiver's delivery of one alert."""

    subscriber: str
    adapter: str | None = Field(examples=["isp", "broadcaster", "feed"])
    state: Literal["queued", "sent", "delivered", "confirmed", "failed", "expired", "superseded"] = Field(
        description="delivered: the transport acknowledged it (HTTP 2xx, MQTT PUBACK). confirmed: the "
        "receiver itself said it has the alert (POST …/ack)."
    )
    attempts: int = Field(ge=0)
    latency_ms: float | None = None
    last_error: str | None = None
    report: str | None = Field(
        None, description="What the channel's library reported on the last attempt: Apprise's word per "
        "service, the SMTP server's refusals of single recipients.",
    )  # fmt: skip
    delivered_at: str | None = Field(None, json_schema_extra={"format": "date-time"})
    confirmed_at: str | None = Field(None, json_schema_extra={"format": "date-time"})


class Deliveries(BaseModel):
    alert_id: str
    deliveries: list[Delivery]


class EndDeliveries(Shape):
    """Why the deliveries still unfinished are ended (shown as their last error)."""

    refusals: ClassVar[dict[str, str]] = {
        "reason": "'reason' must be a short sentence (1 to 200 characters) saying why the deliveries end.",
    }
    reason: str = Field(min_length=1, max_length=200, examples=["ended by the drill (訓練終了)"],
                        description="Shown as the last error of every delivery this ends.")  # fmt: skip


class EndedDeliveries(BaseModel):
    alert_id: str
    ended: list[str] = Field(description="The subscribers whose delivery this ended (superseded).")
    deliveries: list[Delivery] = Field(description="Every delivery of the alert, as it is now.")


class TestBroadcast(BaseModel):
    """A started transmission test."""

    __test__ = False  # not a pytest test class, whatever its name
    id: str = Field(description="The test's id; GET /api/v1/test-broadcasts/{id}.")
    alert_id: str = Field(description="The Test alert sent.")
    districts: list[str]
    scope: list[str] = Field(default_factory=list, description="The district codes the test was asked for "
                             "(every municipality in them is listed in the result).")
    started: float = Field(description="Unix seconds when the test started.")
    wait_s: float
    deliveries: int = Field(ge=0)
    drills: bool = Field(False, description="A drill's own test: it went only to receivers that take drills.")


class TestBroadcastSummary(BaseModel):
    """How many receivers stand where."""

    __test__ = False  # not a pytest test class, whatever its name
    confirmed: int = Field(ge=0)
    unconfirmed: int = Field(ge=0)
    failed: int = Field(ge=0)
    pending: int = Field(ge=0)
    no_receiver: int = Field(0, ge=0, description="Municipalities in scope that no receiver covers.")


class TestBroadcastReceiver(BaseModel):
    """One receiver's part in a transmission test."""

    __test__ = False  # not a pytest test class, whatever its name
    subscriber: str
    adapter: str | None
    result: Literal["confirmed", "unconfirmed", "failed", "pending"] = Field(
        description="confirmed: the receiver said it has it. unconfirmed: delivered, but the receiver did not "
        "confirm. failed: not delivered."
    )
    delivery_latency_ms: float | None = None
    confirm_latency_ms: float | None = None
    attempts: int = Field(ge=0)
    last_error: str | None = None
    cause: str | None = Field(None, description="Why it failed, as published results say it: refused, timeout, "
                              "HTTP <status>, or the error itself.")


class TestBroadcastTownReceiver(BaseModel):
    subscriber: str
    result: Literal["confirmed", "unconfirmed", "failed", "pending"]
    cause: str | None = None


class TestBroadcastTown(BaseModel):
    """One municipality in scope: as good as its worst receiver, or 'no receiver'."""

    municipality: str
    name: str
    result: Literal["confirmed", "unconfirmed", "failed", "pending", "no receiver"]
    receivers: list[TestBroadcastTownReceiver]


class TestBroadcastWide(BaseModel):
    """Receivers that cover more than one town (a prefecture-wide broadcaster, a portal): no town's
    own, so listed apart under what they cover."""

    code: str = Field(description="The district codes they cover, comma-separated: 08.")
    name: str = Field(description="What they cover, by name: 茨城県 (全域).")
    result: Literal["confirmed", "unconfirmed", "failed", "pending"]
    receivers: list[TestBroadcastTownReceiver]


class TestBroadcastResult(TestBroadcast):
    """The result so far; final once wait_s has passed, or as soon as every receiver confirmed. A
    receiver still queued or retrying at the deadline counts as failed."""

    __test__ = False  # not a pytest test class, whatever its name
    final: bool
    summary: TestBroadcastSummary
    subscribers: list[TestBroadcastReceiver]
    municipalities: list[TestBroadcastTown] = Field(
        default_factory=list, description="Every municipality in scope by name, those with no receiver included."
    )
    wide_receivers: list[TestBroadcastWide] = Field(
        default_factory=list, description="Receivers that cover more than one town (prefecture-wide), apart."
    )


# --- answers: what a client or receiver reads -----------------------------------------
def _answer_schema(schema: dict[str, Any]) -> None:
    """An answer's field left out is simply not there: no default to show (a default is what a
    reader of a request may omit; in an answer it would promise a value alertd never fills in)."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


class Answer(BaseModel):
    """What alertd says back (or pushes): the schema of what a receiver reads, and the model
    tests check real answers against (tests/test_openapi.py)."""

    model_config = ConfigDict(json_schema_extra=_answer_schema)


# A CAP dateTime as alertd writes it (alertd.models.format_cap_time).
CapTime = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"}, examples=["2099-11-24T12:00:00+09:00"],
        description="CAP dateTime: seconds precision with an explicit offset; UTC is written -00:00.",
    ),
]  # fmt: skip
Pair = Annotated[
    list[str],
    Field(min_length=2, max_length=2,
          description="A [valueName, value] pair, as in CAP <geocode>, <eventCode> and <parameter>."),
]  # fmt: skip


class Problem(Answer):
    """RFC 9457 problem details. 'detail' is a sentence for the person at the desk: what was wrong
    and what to do. A refused request leaves nothing stored and sends nothing."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_answer_schema)
    type: str = Field(
        json_schema_extra={"format": "uri"}, examples=["https://alertd.example/problems/invalid-input"],
        description="Stable per kind of problem: bad-request, malformed-input, forbidden-xml, invalid-input, "
        "invalid-geometry, unknown-area, no-geometry, unauthorized, otp-used, forbidden, outside-jurisdiction, not-found, "
        "method-not-allowed, conflict, draft-expired, too-large, unsupported-media-type, too-many-requests, "
        "unavailable, internal-error.",
    )  # fmt: skip
    title: str = Field(examples=["The message is not valid"])
    status: int = Field(ge=400, le=599)
    detail: str
    field: str = Field("", description="The body field the problem is about, when one is.")
    districts: list[str] = Field([], description="On 403: the district codes outside the issuer's "
                                 "jurisdiction.")  # fmt: skip
    unknown_districts: list[str] = Field([], description="On 422 unknown-area: the codes alertd does not "
                                         "know.")  # fmt: skip
    unknown_references: list[str] = Field([], description="On 409: the references that name no alert "
                                          "alertd has.")  # fmt: skip
    input: str = Field("", description="The value that could not be resolved.")
    element: str = Field("", description="For CAP: the XML element at fault.")


class DraftText(Answer):
    """A held order's text in one language, as it would go out."""

    headline: str | None
    description: str | None
    instruction: str | None


class PreviewReceiver(Answer):
    """A receiver an order would reach."""

    id: str
    name: str = Field(description="Its name (its id when it has none).")
    adapter: str = Field(description="What kind of receiver: broadcaster, isp, radio, signage, email, apprise, cbc.")
    languages: list[str] = Field(description="The languages it asked for (ja, en, zh, ko, ja-easy).")


class LanguageText(Answer):
    """What a receiver reading one language would get."""

    headline: str
    body: str


class Preview(Answer):
    """What an order would do if sent now (誤発信 guard). Nothing is stored or sent."""

    districts: list[str]
    district_names: list[str]
    needs_approval: bool = Field(False, description="Sent now, it would wait as a draft for another person "
                                 "with the approver role (the issuer's two-person rule).")  # fmt: skip
    headline: dict[str, str | None] = Field(description="By CAP language tag (ja-JP, en-US).")
    deliveries: int = Field(ge=0, description="Receivers it would reach.")
    lifts: list[str] = Field(
        description="Orders a lift would touch: those it ends and those it lifts some districts from."
    )
    ends: list[str] = Field([], description="Orders a lift would end.")
    lifts_from: dict[str, list[str]] = Field(
        {}, description="Orders that keep standing, with the districts the lift would take out of them."
    )
    levels: list[LevelChange] = Field(
        [], description="Per district, the evacuation level in force before and after this order."
    )
    still_in_force: list[dict[str, Any]] = Field(
        [], description="What still stands in the lift's districts afterwards, highest level first."
    )
    geojson: dict[str, Any] | None = Field(description="The area, if boundary data is loaded.")
    texts: dict[str, DraftText] = Field({}, description="By CAP language tag (ja-JP, en-US): what it would say.")
    radio_script: str | None = Field(None, description="The 防災行政無線 script as the loudspeakers would read it "
                                     "(chimes, the message three times, the call sign).")  # fmt: skip
    receivers: list[PreviewReceiver] = Field([], description="The receivers it would reach, by name.")
    texts_by_language: dict[str, LanguageText] = Field(
        {}, description="By alertd language (ja, en, zh, ko, ja-easy): what it would say in every language its "
        "receivers take — ja and en always."
    )




class DraftPreview(Preview):
    """What a held order would do, as the preview route says it, and what it says."""

    levels: list[LevelChange] | None = Field(  # type: ignore[assignment]
        None, description="Per district, the evacuation level in force before and after this order; "
        "null for an alert that is not an evacuation order.",
    )  # fmt: skip
    texts: dict[str, DraftText] = Field(description="By CAP language tag (ja-JP, en-US).")
    level: int | None = Field(ge=1, le=5)
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"]
    msg_type: Literal["Alert", "Update", "Cancel", "Ack", "Error"]
    action: Literal["issue", "lift"] | None
    priority: Literal["flash", "routine"]


class Health(Answer):
    """What /healthz reports."""

    status: Literal["ok", "unhealthy"]
    queue_depth: dict[str, int] = Field(
        {}, description="Per lane (flash, routine): deliveries in the lane, waiting or in flight (parked ones "
        "excluded)."
    )
    pending: dict[str, dict[str, int]] = Field(
        {}, description="Per lane: unfinished deliveries by state — new (in the lane), retry_wait (waiting for "
        "a retry), parked (behind an open circuit). All zero: nothing more is on its way."
    )
    oldest_job_s: dict[str, float] = Field({}, description="Per lane, seconds since its oldest job in the lane "
                                           "entered it (parked ones excluded).")  # fmt: skip
    redis: Literal["ok", "unreachable", "cannot-write"] = Field(
        "ok", description="Whether Redis answers, and writes: 'cannot-write' when it answers but refuses writes "
        "(its disk full, or its memory limit reached). 'causes' says why.")  # fmt: skip
    broker: Literal["ok", "unreachable"] = Field("ok", description="Whether the MQTT broker of the feed "
                                                 "answers, when the feed is on.")  # fmt: skip
    tasks: dict[str, dict[str, Any]] = Field({}, description="Per group of background tasks: how many run, "
                                             "seconds since progress, failures, restarts, last error.")  # fmt: skip
    causes: list[str] = Field([], description="Why it is unhealthy, one sentence each (empty when ok).")
    warnings: list[str] = Field(
        [], description="What an operator must know though alertd can deliver: Redis lost its data and was "
        "seeded again, so what was in force is gone.",
    )  # fmt: skip


class Area(Answer):
    """One CAP <area>: a description plus any mix of geometry and codes."""

    desc: str = ""
    polygons: list[str] = []
    circles: list[str] = []
    geocodes: list[Pair] = []
    altitude: float | None = None
    ceiling: float | None = None


class Info(Answer):
    """One CAP <info> block; usually one per language."""

    event: str = ""
    urgency: str = ""
    severity: str = ""
    certainty: str = ""
    language: str = Field("", examples=["ja-JP"])
    categories: list[str] = []
    response_types: list[str] = []
    audience: str | None = None
    event_codes: list[Pair] = []
    effective: CapTime | None = None
    onset: CapTime | None = None
    expires: CapTime | None = None
    sender_name: str | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    web: str | None = None
    contact: str | None = None
    parameters: list[Pair] = []
    resources: list[dict[str, Any]] = []
    areas: list[Area] = []


class Alert(Answer):
    """An accepted alert: the CAP 1.2 fields, what alertd resolved, and its state now."""

    id: str
    identifier: str
    sender: str = Field(description="'<issuer id>@alertd' for desk and JSON alerts.")
    sent: CapTime
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"]
    msg_type: Literal["Alert", "Update", "Cancel", "Ack", "Error"]
    scope: str = ""
    source: str | None = None
    restriction: str | None = None
    addresses: str | None = None
    codes: list[str] = []
    note: str | None = None
    references: list[str] = Field([], description="CAP 'sender,identifier,sent' references.")
    incidents: str | None = None
    infos: list[Info]
    origin: str = Field("", examples=["desk", "cap", "jma", "json", "drill"])
    priority: Literal["flash", "routine"] = "routine"
    districts: list[str]
    municipality: str | None = None
    on_behalf_of: str | None = Field(None, description="代行: the municipality a prefecture issued for.")
    issuer_id: str | None = None
    level: int | None = Field(None, ge=1, le=5)
    action: Literal["issue", "lift"] | None = None
    reason: str | None = None
    kind: str | None = None
    shelters: list[Shelter] = []
    referenced_ids: list[str] = Field([], description="alertd ids this alert updates, cancels or lifts.")
    adapters: list[str] | None = None
    reach: list[str] = Field([], description="Where it is delivered beyond where it is in force (a tsunami "
                             "warning reaches the whole prefecture); empty: where it is in force.")  # fmt: skip
    accepted_at: CapTime | None = None
    remaining: list[dict[str, Any]] = Field([], description="For a lift or cancel: what still stands in its "
                                            "districts afterwards, by level.")  # fmt: skip
    ended: list[dict[str, Any]] = Field([], description="For a lift: what it ends, by level, highest first.")
    corrections: list[dict[str, Any]] = Field([], description="For a correction (訂正): what it changes "
                                              "(shelter, field, from, to).")  # fmt: skip
    state: Literal["active", "lifted", "updated", "cancelled", "ended"] | None = Field(
        None, description="active: in force. lifted/updated/cancelled: a later message ended it (see "
        "superseded_by). ended: lifts, cancels and tests are never in force themselves.",
    )  # fmt: skip
    superseded_by: str | None = None
    planned_deliveries: int = Field(0, ge=0)
    lifted_districts: list[str] = Field([], description="Districts a lift took out of this alert, which "
                                        "otherwise stands.")  # fmt: skip


class WebhookText(Answer):
    """An alert's text in one language, ready to show."""

    headline: str = ""
    body: str = ""


class WebhookAlert(Answer):
    """What an ISP or portal (adapter 'isp') receives: the alert with ready-made text."""

    id: str
    identifier: str
    sender: str
    sent: CapTime
    status: str
    msg_type: str
    references: list[str] = []
    kind: str | None = None
    event: str = ""
    level: int | None = None
    action: str | None = None
    reason: str | None = None
    priority: Literal["flash", "routine"] = "routine"
    municipality: str | None = None
    on_behalf_of: str | None = None
    districts: list[str]
    expires: CapTime | None = None
    text: dict[str, WebhookText] = Field(description="By language: {headline, body}.")
    shelters: list[Shelter] = []


class DistrictInForce(Answer):
    """One district (the whole town first) and what stands there."""

    district: str = Field(description="The district code; the first row is the whole municipality.")
    name: str
    level: int | None = Field(ge=1, le=5, description="The highest evacuation level standing here.")
    alerts: list[str] = Field(description="alertd ids of the orders standing here.")


class StandingAlert(Answer):
    """An alert in force, with the districts it still covers."""

    alert_id: str
    kind: str | None
    level: int | None
    event: str
    districts: list[str] = Field(description="The districts it still covers.")
    district_names: list[str]
    except_: list[str] = Field(alias="except", description="Districts a lift took out of it.")
    except_names: list[str]
    expires: CapTime | None
    on_behalf_of: str | None


class InForceView(Answer):
    """What is in force in one municipality, in the same shape as the retained MQTT state a
    gateway or portal shows."""

    municipality: str
    name: str
    status: Literal["Actual", "Exercise", "Test"]
    in_force: bool = Field(description="True when anything stands.")
    level: int | None = Field(ge=1, le=5, description="The highest evacuation level standing anywhere in the town.")
    districts: list[DistrictInForce] = Field(description="Per district, when an evacuation order stands.")
    alerts: list[StandingAlert] = Field(description="Every alert in force.")
    updated: CapTime


# --- the maps (the public map and the console's) -----------------------------------
class MapQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {"status": "'status' must be Actual, Exercise or Test."}
    status: Literal["Actual", "Exercise", "Test"] = Field(
        "Actual", description="Which orders: real ones (Actual), a drill's (Exercise) or a test's. They never mix."
    )


class MapPageQuery(MapQuery):
    refusals: ClassVar[dict[str, str]] = {
        **MapQuery.refusals,
        "lang": "'lang' must be ja, en, zh, ko or ja-easy (やさしい日本語).",
    }
    lang: Literal["ja", "en", "zh", "ko", "ja-easy"] = Field("ja", description="The page's language.")


class BoundaryQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {
        "area": "'area' must be a prefecture code such as 08 or a municipality code such as 08211.",
    }
    area: str = Field(pattern=r"^([0-9]{2}|[0-9]{5,6})$", examples=["08", "08211"],
                      description="A prefecture (its municipalities) or a municipality (its outline and the "
                      "districts its desk drew). An unknown code is a 422 (unknown-area).")  # fmt: skip


class GeoFeature(Answer):
    """A GeoJSON Feature (RFC 7946); ``geometry`` is null where alertd knows no boundary."""

    type: Literal["Feature"]
    id: str
    properties: dict[str, Any]
    geometry: dict[str, Any] | None


class BoundaryCollection(Answer):
    """alertd's own boundaries, simplified (about 50 m; 200 m for a prefecture's towns)."""

    type: Literal["FeatureCollection"]
    area: str
    name: str
    has_geometry: bool = Field(description="False when no boundaries were imported (`alertd geo import`): "
                               "every geometry is then null.")  # fmt: skip
    features: list[GeoFeature]


class OrderMap(Answer):
    """Every district under an evacuation order now, one feature each: ``properties`` has the code,
    name, municipality and its name, the level, its official colour, the reason (and the reason in
    ja, en, zh, ko, ja-easy), the alerts standing there and ``has_boundary``."""

    type: Literal["FeatureCollection"]
    status: Literal["Actual", "Exercise", "Test"]
    updated: str
    features: list[GeoFeature]


# --- the desk console ------------------------------------------------------------------
class Place(Answer):
    code: str
    name: str


class SessionQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {"probe": "'probe' must be true or false."}
    probe: bool = Field(False, description="true: with no session (or one that ended), answer 200 "
                        "{\"signed_in\": false} instead of a 401 — the console's first look on loading, "
                        "so an ordinary page load logs no error.")  # fmt: skip


class NoSession(Answer):
    """No one is signed in: the answer to ?probe=true without a live session."""

    signed_in: Literal[False]


class Me(Answer):
    """The signed-in person, as the console shows them."""

    username: str
    issuer: str
    issuer_name: str
    roles: list[str]
    jurisdiction: list[Place] = Field(description="Where the issuer may send: prefectures and municipalities.")
    municipalities: list[Place] = Field(description="Every municipality the issuer may send for (代行 included).")
    approval: dict[str, Any] | None = Field(description="The issuer's two-person rule, if any.")
    expires: str


class AlertInForce(Answer):
    alert_id: str
    municipality: str
    municipality_name: str
    level: int | None
    reason: str | None
    status: Literal["Actual", "Exercise", "Test"]
    districts: list[str] = Field(description="Where it still stands (a lift may have taken some out).")
    district_names: list[str]
    sent: str = Field(description="When the order was issued (ISO 8601).")
    expires: str | None


class DeskOrders(OrderMap):
    """The orders in force in the caller's jurisdiction: per district (as the public map) and per alert."""

    alerts: list[AlertInForce]


class HistoryQuery(Shape):
    model_config = ConfigDict(strict=False)
    refusals: ClassVar[dict[str, str]] = {
        "municipality": "'municipality' must be a municipality code such as 08211.",
        "since": "'since' must be a date such as 2026-12-01.",
        "until": "'until' must be a date such as 2026-12-01.",
        "status": "'status' must be Actual, Exercise, Test, or empty for all.",
        "format": "'format' must be json, csv, geojson or cap.",
    }
    municipality: str | None = Field(None, pattern=r"^([0-9]{5,6})?$", examples=["08211"],
                                     description="One municipality of the desk's jurisdiction; empty: all of it.")  # fmt: skip
    since: str | None = Field(None, pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$", examples=["2026-12-01"],
                              description="From this day (Japan time); default: 7 days before 'until'.")  # fmt: skip
    until: str | None = Field(None, pattern=r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$", examples=["2026-12-01"],
                              description="Through this day (Japan time); default: today.")  # fmt: skip
    status: Literal["Actual", "Exercise", "Test", ""] = Field("", description="Empty: all three.")
    format: Literal["json", "csv", "geojson", "cap"] = Field(
        "json",
        description="csv, geojson and cap download the same rows (cap: a zip of one CAP 1.2 document each).",
    )


class DeliveryCounts(Answer):
    planned: int
    delivered: int
    confirmed: int
    failed: int = Field(description="Failed or expired.")
    other: int = Field(description="Still queued or sending, or superseded.")


class HistoryRow(Answer):
    alert_id: str
    sent: str
    municipality: str
    municipality_name: str
    kind: str
    msg_type: str
    action: str | None
    level: int | None
    reason: str | None
    status: str
    districts: list[str]
    district_names: list[str]
    deliveries: DeliveryCounts


# --- drills started from the desk ----------------------------------------------------------
class DrillStart(Shape):
    """Start a shipped drill scenario (simulations/scenarios) on this engine."""

    model_config = ConfigDict(extra="forbid")
    unknown_is_refused: ClassVar[bool] = True
    refusals: ClassVar[dict[str, str]] = {
        "scenario": "'scenario' must name a shipped drill scenario, such as joso-flood-day.",
        "speed": "'speed' must be a number from 1 to 20 (how many times faster than its timeline).",
    }
    scenario: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$", examples=["joso-flood-day"],
                          description="A shipped scenario's name (GET /api/v1/drills lists them).")  # fmt: skip
    speed: float = Field(
        1.0, ge=1, le=20, description="Run the timeline this many times faster (1: as written)."
    )


class DrillStep(Answer):
    name: str
    at: float = Field(description="Seconds from the start, in the scenario's time.")
    kind: str
    alert_ids: list[str] = Field(description="The alerts this step sent: each has its delivery board.")
    error: str | None


class DrillRun(Answer):
    """A drill started from the desk: its steps so far, then its verdict."""

    id: str
    scenario: str
    title: str
    description: str = Field(description="What the scenario is, in Japanese (descriptions has every language).")
    descriptions: dict[str, str] | None = Field(
        None, description="What the scenario is, per console language: {ja, en}.", examples=[{"ja": "…", "en": "…"}]
    )
    speed: float
    started_by: str = Field(description="Who started it, as the audit trail names them (user:tanaka).")
    started: str
    ended: str | None = None
    state: Literal["starting", "running", "passed", "failed", "error"] = Field(
        description="running: it has started (its issuers and receivers registered); starting: not yet; "
        "passed or failed: its verdict; error: it could not run (error says why, Japanese first)."
    )
    status: Literal["Exercise"] = Field(description="Every message of a drill is an Exercise (訓練).")
    steps: list[DrillStep]
    total_steps: int | None = None
    verdict: dict[str, Any] | None = Field(
        description="Once ended: {passed, result, reasons}, as the drill's report."
    )
    error: str | None = Field(
        description="Why the drill could not run (it cleaned up what it had registered)."
    )
    cleanup: dict[str, int] | None = None
    engine_ids: dict[str, dict[str, str]] | None = Field(
        None, description="The ids its issuers and receivers have on the engine (the delivery boards name them "
        "so), by the scenario's names: {issuers: {joso-desk: drill-…-joso-desk}, receivers: {…}}."
    )


class DrillScenario(Answer):
    id: str = Field(description="What POST /api/v1/drills takes as 'scenario'.")
    title: str
    description: str = Field(description="What the scenario is, in Japanese (descriptions has every language).")
    descriptions: dict[str, str] = Field(
        description="What the scenario is, per console language: {ja, en}.", examples=[{"ja": "…", "en": "…"}]
    )
    steps: int
    duration_s: float = Field(description="The timeline's length at speed 1 (plus settling).")
    national: bool = Field(description="Sends national warnings: a national issuer or the admin token only.")
    scope: list[Place] = Field(description="Every area its issuers speak for.")
    allowed: bool = Field(description="Whether the caller may start it (its jurisdiction covers the scope).")
    why_not: str | None


class DrillList(Answer):
    scenarios: list[DrillScenario]
    running: DrillRun | None = Field(description="The drill running now on this deployment (one at a time).")
    test_broadcast_scope: list[Place] = Field(
        description="What a transmission test started by the caller covers when it names no districts: its "
        "issuer's jurisdiction (empty for the admin token and national issuers: all 47 prefectures)."
    )
