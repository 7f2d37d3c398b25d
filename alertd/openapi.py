"""The OpenAPI 3.1 description of alertd's HTTP API, served at ``/api/openapi.json``.

What the API decides is not written here but generated: the operations, who
signs in for each, and every schema (query, JSON bodies, answers, problems,
the webhook's payload) come from ``alertd.contract`` and the pydantic models
in ``alertd.schemas`` — the same table the router is built from and the same
models the handlers validate with (and tests hold real answers to), so the
document cannot drift from the app. What stays here is prose a desk
integrator reads: summaries and why each status happens. ``paths()`` fails
when prose and contract disagree.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from alertd import schemas as models
from alertd.contract import OPERATIONS, Operation

PROBLEM_TYPE = "application/problem+json"
PROBLEM_REF = "#/components/schemas/Problem"

# One sentence per error status, used where a route has nothing more specific to say.
_GENERIC_WHY: dict[int, str] = {
    400: "The body could not be read at all: it is not valid JSON (or XML), not UTF-8, "
    "or not a JSON object. Nothing was stored or sent.",
    401: "No token, or a token alertd does not know. Send 'Authorization: Bearer <token>'. "
    "Nothing was stored or sent.",
    403: "The token is valid, but the districts are outside the issuer's jurisdiction. Nothing was sent.",
    404: "There is no such record.",
    409: "The request refers to something that is not in the state it needs (for example, an alert "
    "alertd has no record of). Nothing was stored or sent.",
    413: "The body is larger than the limit (ALERTD_MAX_BODY_BYTES, 1 MB by default). Nothing was sent.",
    415: "The Content-Type is not one alertd reads here.",
    422: "The body was read but says something alertd cannot accept; 'detail' says what to change "
    "and 'field' names the field. Nothing was stored or sent.",
}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}},
    }


def _problems(*statuses: int, why: dict[int, str] | None = None) -> dict[str, Any]:
    """Error responses, all RFC 9457 problem+json; ``why`` overrides the generic sentence."""
    why = why or {}
    return {
        str(status): {
            "description": why[status] if status in why else _GENERIC_WHY[status],
            "content": {PROBLEM_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
        }
        for status in statuses
    }


def _id_param(what: str) -> dict[str, Any]:
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": what,
        "schema": {"type": "string", "minLength": 1},
    }


ADMIN = [{"adminToken": []}]
USER = [{"userSession": []}, {"sessionCookie": []}]  # a person's session: bearer, or the console's cookie
ISSUER = [{"issuerToken": []}, *USER]  # the issuer's token, or a session of one of its users
PUBLIC: list[dict[str, list[str]]] = []  # explicitly no sign-in

IDEMPOTENCY_KEY_PARAM: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Used as the message identifier when the body has no 'identifier'. "
    "Sending the same identifier twice gives the same 202 answer and sends nothing the second "
    "time, so a desk can safely resend after a timeout. Up to 200 characters, no commas.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[^,]+$"},
}

SAME_ANSWER = (
    "The same identifier (from 'identifier' or the Idempotency-Key header) sent twice by the "
    "same issuer with the same content gives the same 202 answer, and the message is sent only "
    "once. The same identifier with different content is a 409: a changed message needs an "
    "identifier of its own."
)

WHY_ORDER = {
    403: "At least one district is outside the issuer's jurisdiction (a prefecture may issue on "
    "behalf of (代行) its municipalities), or a signed-in person without the operator role tried to "
    "send. Nothing was sent.",
    409: "action 'lift' (解除), but no evacuation order with the same municipality, districts and "
    "status is in force to lift. Check the municipality, the districts and the status. Nothing was sent.",
    422: "A field is missing or not acceptable: status must be said explicitly (Actual, Exercise or "
    "Test); level must be 3, 4 or 5 (避難勧告 was abolished in 2021); action must be issue or lift; "
    "every district name must exist in the municipality. 'detail' says which, 'field' names it. "
    "Nothing was sent.",
}

WHY_ADMIN_401 = {
    401: "No admin token, or not the deployment's admin token (ALERTD_ADMIN_TOKEN). "
    "A wrong admin token is 401, not 403.",
}

_ACCEPTED_AGAIN = "Accepted and queued (or the answer already given for this identifier)."


def _accepted_or_held(description: str) -> dict[str, Any]:
    either = [{"$ref": "#/components/schemas/Accepted"}, {"$ref": "#/components/schemas/AwaitingApproval"}]
    return {"description": description, "content": {"application/json": {"schema": {"anyOf": either}}}}
_CAP_BODY: dict[str, Any] = {"schema": {"type": "string", "description": "A CAP 1.2 <alert> document."}}

_ISSUERS_PATH = {
    "get": {
        "operationId": "listIssuers",
        "tags": ["admin"],
        "summary": "List issuers",
        "responses": {
            "200": {
                "description": "Every registered issuer (tokens are never shown).",
                "content": {
                    "application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/IssuerView"}}
                    }
                },
            },
            **_problems(401, why=WHY_ADMIN_401),
        },
    },
    "post": {
        "operationId": "putIssuer",
        "tags": ["admin"],
        "summary": "Register or replace an issuer",
        "description": "Registers a desk, prefecture or national source with its bearer token. The same "
        "id again replaces the issuer and its token (the old token stops working).",
        "responses": {
            "201": _json("IssuerView", "Saved."),
            **_problems(
                400,
                401,
                409,
                413,
                422,
                why={
                    **WHY_ADMIN_401,
                    409: "The token or a sender already belongs to another issuer: each names one issuer only. "
                    "Nothing was stored.",
                    422: "The id, name, token (at least 16 characters) or jurisdiction is missing or not "
                    "usable, or a jurisdiction code is unknown. 'field' names which.",
                },
            ),
        },
    },
}

_SUBSCRIBERS_PATH = {
    "get": {
        "operationId": "listSubscribers",
        "tags": ["admin"],
        "summary": "List subscribers",
        "responses": {
            "200": {
                "description": 'Every subscriber; secrets are shown as "***".',
                "content": {
                    "application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/SubscriberView"}}
                    }
                },
            },
            **_problems(401, why=WHY_ADMIN_401),
        },
    },
    "post": {
        "operationId": "putSubscriber",
        "tags": ["admin"],
        "summary": "Register or replace a subscriber",
        "description": "The same id again replaces the subscriber. New alerts route to it at once.",
        "responses": {
            "201": _json("SubscriberView", "Saved."),
            **_problems(
                400,
                401,
                413,
                422,
                why={
                    **WHY_ADMIN_401,
                    422: "The id, adapter, endpoint, districts, min_level, languages or secret is not "
                    "usable, or a district code is unknown. 'field' names which.",
                },
            ),
        },
    },
}


def _one(kind: str, schema: str, op: str) -> dict[str, Any]:
    cap = kind.capitalize()
    return {
        "parameters": [_id_param(f"The {kind} id.")],
        "get": {
            "operationId": f"get{cap}",
            "tags": ["admin"],
            "summary": f"One {kind}",
            "responses": {
                "200": _json(schema, f"The {kind}."),
                **_problems(401, 404, why={**WHY_ADMIN_401, 404: f"There is no {kind} with this id."}),
            },
        },
        "delete": {
            "operationId": f"delete{cap}",
            "tags": ["admin"],
            "summary": f"Remove {op}",
            "responses": {
                "204": {"description": "Removed."},
                **_problems(401, 404, why={**WHY_ADMIN_401, 404: f"There is no {kind} with this id."}),
            },
        },
    }


_DESK_401 = {
    401: "No token, or a token that belongs to no registered issuer. Nothing was sent.",
}

_EVACUATION_PATH = {
    "post": {
        "operationId": "postEvacuationOrder",
        "tags": ["desk"],
        "summary": "Issue or lift an evacuation order (避難情報)",
        "description": "Issues (発令) or lifts (解除) an evacuation order for districts of one municipality "
        "and queues it to every receiver covering them. status must be said explicitly (Actual, "
        "Exercise or Test). level is 3 (高齢者等避難), 4 (避難指示) or 5 (緊急安全確保, flash lane); "
        "避難勧告 was abolished in 2021 and is refused. A lift needs an order in force with the "
        "same municipality, districts and status. " + SAME_ANSWER + " Use /preview first to see "
        "what it would do.",
        "parameters": [IDEMPOTENCY_KEY_PARAM],
        "responses": {
            "202": _accepted_or_held(
                "Accepted: stored and queued to every receiver, or the same "
                "identifier was already accepted and this is its answer. Where the issuer's two-person "
                "rule covers the order (or its lift), it is held as a draft instead: nothing is sent "
                "until another person approves it (POST /api/v1/drafts/{id}/approve)."
            ),
            **_problems(400, 401, 403, 409, 413, 422, why={**WHY_ORDER, **_DESK_401}),
        },
    },
}

_PREVIEW_PATH = {
    "post": {
        "operationId": "previewEvacuationOrder",
        "tags": ["desk"],
        "summary": "Preview an evacuation order without sending it",
        "description": "Runs every check an order goes through and says which districts it covers, "
        "the headline, how many receivers it would reach and which orders a lift would end. "
        "Nothing is stored or sent. The same checks refuse the same mistakes as the real send.",
        "responses": {
            "200": _json("Preview", "What the order would do."),
            **_problems(400, 401, 403, 409, 413, 422, why={**WHY_ORDER, **_DESK_401}),
        },
    },
}

_SHELTERS_PATH = {
    "post": {
        "operationId": "postShelterNotice",
        "tags": ["desk"],
        "summary": "Announce shelters (避難所), or correct (訂正) a shelter notice",
        "description": "Says which shelters are open, closed or full, for one municipality. With "
        "'corrects' it replaces an earlier shelter notice. status must be explicit (Actual, "
        "Exercise or Test). " + SAME_ANSWER,
        "parameters": [IDEMPOTENCY_KEY_PARAM],
        "responses": {
            "202": _json("Accepted", _ACCEPTED_AGAIN),
            **_problems(
                400,
                401,
                403,
                409,
                413,
                422,
                why={
                    **_DESK_401,
                    403: "The municipality is outside the issuer's jurisdiction. Nothing was sent.",
                    409: "'corrects' names an alert alertd has no record of. Nothing was sent.",
                    422: "status, municipality or shelters is missing or not acceptable (each shelter "
                    "needs a name; status is open, closed or full), or 'corrects' names an alert that "
                    "is not a shelter notice. Nothing was sent.",
                },
            ),
        },
    },
}

_ALERTS_PATH = {
    "post": {
        "operationId": "postAlert",
        "tags": ["desk"],
        "summary": "Send an alert as CAP 1.2 XML or as alertd JSON",
        "description": "CAP 1.2 as application/cap+xml (or application/xml, text/xml); the CAP "
        "<identifier> and <sender> identify it. Or alertd's JSON alert as application/json; its "
        "'identifier' or the Idempotency-Key header identifies it. Either way, the same identifier "
        "twice from the same sender gives the same 202 answer and is sent once. XML with a DTD or "
        "entity declarations is refused. status must be explicit (Actual, Exercise or Test).",
        "parameters": [IDEMPOTENCY_KEY_PARAM],
        "requestBody": {
            "required": True,
            "content": {
                "application/cap+xml": {
                    "schema": {"type": "string", "description": "A CAP 1.2 <alert> document."}
                },
                "application/xml": _CAP_BODY,
                "text/xml": _CAP_BODY,
            },
        },
        "responses": {
            "202": _accepted_or_held(_ACCEPTED_AGAIN + " A Cancel or alert the issuer's two-person rule covers is held as a draft."),
            **_problems(
                400,
                401,
                403,
                409,
                413,
                415,
                422,
                why={
                    **_DESK_401,
                    400: "The XML or JSON could not be read (broken, not UTF-8), or the XML has a DTD, "
                    "entity declarations or external references, which alertd never reads. Nothing was sent.",
                    409: "An Update or Cancel references an alert alertd has no record of; "
                    "'unknown_references' lists them. Nothing was sent.",
                    415: "Send CAP as application/cap+xml (or application/xml), or JSON as application/json.",
                    422: "The message is readable but not acceptable: not CAP 1.2, a missing or unknown "
                    "status, no event, no area alertd can resolve, an unknown area code, or an Update/"
                    "Cancel with no reference. Nothing was sent.",
                },
            ),
        },
    },
    "get": {
        "operationId": "listAlerts",
        "tags": ["reading"],
        "summary": "List alerts, newest first",
        "responses": {
            "200": {
                "description": "Alerts, newest first.",
                "content": {
                    "application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}
                    }
                },
            },
            **_problems(422, why={422: "alertd does not know the district code given in 'district'."}),
        },
    },
}

_ETAG: dict[str, Any] = {"schema": {"type": "string"}, "description": "Send it back in If-None-Match."}
_ALERT_ID = _id_param("alertd's id for the alert, as in the 202 answer.")
_NO_ALERT = {404: "There is no alert with this id."}
_NAME = {"name": "name", "in": "path", "required": True, "description": "The file name.",
         "schema": {"type": "string", "minLength": 1}}
_WEB_FILE: dict[str, Any] = {
    "200": {
        "description": "The file, served from alertd's package (cacheable for an hour; ETag).",
        "headers": {"ETag": _ETAG},
        "content": {media: {"schema": {"type": "string"}} for media in
                    ("text/javascript", "text/css", "text/plain", "text/markdown", "image/svg+xml", "image/png")},
    },
    "304": {"description": "Nothing changed since the ETag in If-None-Match.", "headers": {"ETag": _ETAG}},
    **_problems(404, why={404: "alertd has no web file by that name."}),
}

_USER_401 = {401: "No token or session, or one that ended (signed out, expired, or the user was removed)."}
_USERNAME_PARAM = {"name": "username", "in": "path", "required": True, "description": "The username.",
                   "schema": {"type": "string", "minLength": 1}}  # fmt: skip
_DRAFT_ID = _id_param("The draft's id, as in the 202 answer that held the order.")
_DRAFT_WHY = {
    **_USER_401,
    403: "Not a user of an issuer with the approver role, or you drafted this order yourself: the person "
    "who drafted an order cannot approve it.",
    404: "There is no draft with this id for your issuer.",
    409: "The draft was already approved or rejected, or the order is refused now (what it lifts changed).",
    410: "The draft waited longer than alertd keeps an order for approval (ALERTD_DRAFT_TTL_S, 30 minutes); "
    "nothing was sent. Send the order again if it is still needed.",
}


def _people_problems(*statuses: int, why: dict[int, str]) -> dict[str, Any]:
    return {
        str(status): {"description": why.get(status) or _GENERIC_WHY[status],
                      "content": {PROBLEM_TYPE: {"schema": {"$ref": PROBLEM_REF}}}}
        for status in statuses
    }  # fmt: skip


_USERS_WHY = {
    **_USER_401,
    403: "Managing users needs the admin token, or a user with the admin role for users of their own issuer; "
    "an issuer's token is a machine credential and cannot.",
}
PEOPLE_PATHS: dict[str, Any] = {
    "/api/v1/users": {
        "post": {
            "tags": ["people"],
            "summary": "Create a user (a person at the desk)",
            "description": "Roles: operator (sends orders as the issuer's token would), approver (approves "
            "another person's draft), auditor (reads the audit trail), admin (manages the issuer's users). "
            "The answer carries the otpauth:// URI for the user's authenticator app, shown this once only.",
            "responses": {
                "201": _json("CreatedUser", "Created."),
                **_people_problems(400, 401, 403, 409, 413, 422, why={
                    **_USERS_WHY, 409: "There is already a user with this username.",
                    422: "A field is missing or not acceptable, or the issuer is not registered.",
                }),
            },
        },
        "get": {
            "tags": ["people"],
            "summary": "List users (the admin token: all; a user admin: their issuer's)",
            "responses": {
                "200": {"description": "Users.", "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/UserView"}}}}},
                **_people_problems(401, 403, why=_USERS_WHY),
            },
        },
    },
    "/api/v1/users/{username}": {
        "parameters": [_USERNAME_PARAM],
        "get": {
            "tags": ["people"],
            "summary": "One user",
            "responses": {
                "200": _json("UserView", "The user."),
                **_people_problems(401, 403, 404, why={**_USERS_WHY, 404: "There is no such user you may manage."}),
            },
        },
        "delete": {
            "tags": ["people"],
            "summary": "Remove a user; every session of theirs ends at once",
            "responses": {
                "204": {"description": "Removed."},
                **_people_problems(401, 403, 404, why={**_USERS_WHY, 404: "There is no such user you may manage."}),
            },
        },
    },
    "/api/v1/users/{username}/lockout": {
        "parameters": [_USERNAME_PARAM],
        "delete": {
            "tags": ["people"],
            "summary": "Lift a sign-in lock at once (five wrong tries by anyone lock a username)",
            "description": "For the issuer's admin users and the admin token; audited as lockout.lifted. "
            "Answers 204 whether or not the username was locked.",
            "responses": {
                "204": {"description": "Not locked any more; the failures are forgotten."},
                **_people_problems(401, 403, 404, why={**_USERS_WHY, 404: "There is no such user you may manage."}),
            },
        },
    },
    "/api/v1/sessions": {
        "post": {
            "tags": ["people"],
            "summary": "Sign in with password and one-time code",
            "description": "Answers a session token (send it as 'Authorization: Bearer <token>') and sets "
            "the HttpOnly alertd_session cookie for the console. 5 wrong tries in 15 minutes lock the "
            "username for 15 minutes (429), whether it exists or not.",
            "responses": {
                "201": _json("SessionView", "Signed in."),
                **_people_problems(400, 401, 403, 413, 422, 429, why={
                    401: "The username, password or one-time code is wrong.",
                    403: "The account has expired.",
                    422: "username, password or otp is missing or not text.",
                    429: "The username is locked after 5 wrong tries; Retry-After says for how long.",
                }),
            },
        },
    },
    "/api/v1/sessions/current": {
        "get": {
            "tags": ["people"],
            "summary": "Who is signed in: the person, their issuer, roles and jurisdiction",
            "description": "What the console shows after sign-in: the municipalities the issuer may send for "
            "(a prefecture's every town: 代行) and its two-person rule.",
            "responses": {
                "200": {"description": "The signed-in person; with probe=true and no live session, "
                        "{\"signed_in\": false}.",
                        "content": {"application/json": {"schema": {"anyOf": [
                            {"$ref": "#/components/schemas/Me"}, {"$ref": "#/components/schemas/NoSession"}]}}}},
                **_people_problems(401, 403, 422, why={**_USER_401, 403: "The person's issuer is no longer registered.",
                                                       422: "probe is neither true nor false."}),
            },
        },
        "delete": {
            "tags": ["people"],
            "summary": "Sign out (this session ends at once)",
            "responses": {
                "204": {"description": "Signed out; the cookie is cleared."},
                **_people_problems(401, 422, why={**_USER_401,
                                                  422: "Admin and issuer tokens are not sessions."}),
            },
        },
    },
    "/api/v1/audit": {
        "get": {
            "tags": ["people"],
            "summary": "Read the audit trail (hash-chained), oldest first",
            "description": "Who did what: sign-ins, users, issuers, subscribers, sends, lifts, cancels, "
            "drafts, approvals, rejections, transmission tests. Needs the admin token or the auditor role.",
            "responses": {
                "200": {"description": "Entries after 'since'; a Link header (rel=\"next\") gives the next page.",
                        "headers": {"Link": {"description": '<…?since=SEQ&limit=N>; rel="next" when a full page '
                                             "came back.", "schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {
                            "type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}},
                **_people_problems(401, 403, 422, why={**_USER_401, 403: "Needs the auditor role or the admin token.",
                                                       422: "'since' or 'limit' is not a whole number in range."}),
            },
        },
    },
    "/api/v1/drafts": {
        "get": {
            "tags": ["people"],
            "summary": "Orders of your issuer awaiting a second person's approval",
            "description": "Each with its preview: districts and their names, the GeoJSON outline, how many "
            "receivers it reaches, and its texts per language.",
            "responses": {
                "200": {"description": "Drafts awaiting approval, oldest first.",
                        "content": {"application/json": {"schema": {
                            "type": "array", "items": {"$ref": "#/components/schemas/DraftView"}}}}},
                **_people_problems(401, 403, why={**_USER_401, 403: "Drafts are for users of an issuer (and the admin token)."}),
            },
        },
    },
    "/api/v1/drafts/{id}/approve": {
        "parameters": [_DRAFT_ID],
        "post": {
            "tags": ["people"],
            "summary": "Approve a draft: it is sent now",
            "description": "By a user with the approver role of the same issuer, other than the person who "
            "drafted it. Every check runs again, as if the order were sent now, and it fans out.",
            "responses": {
                "202": _json("Accepted", "Sent: stored and queued to every receiver."),
                **_people_problems(401, 403, 404, 409, 410, 422, why=_DRAFT_WHY),
            },
        },
    },
    "/api/v1/drafts/{id}/reject": {
        "parameters": [_DRAFT_ID],
        "post": {
            "tags": ["people"],
            "summary": "Reject a draft: it ends and is never sent",
            "description": "By an approver of the same issuer, or by the person who drafted it.",
            "responses": {
                "200": _json("DraftView", "The draft, rejected."),
                **_people_problems(400, 401, 403, 404, 409, 410, 413, 422, why={
                    **_DRAFT_WHY, 403: "Needs the approver role, or to be the person who drafted it.",
                    422: "'reason' is missing or not text."}),
            },
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/v1/issuers": _ISSUERS_PATH,
    "/api/v1/issuers/{id}": _one("issuer", "IssuerView", "an issuer (its token stops working)"),
    "/api/v1/subscribers": _SUBSCRIBERS_PATH,
    "/api/v1/subscribers/{id}": {
        **_one("subscriber", "SubscriberView", "a subscriber (new alerts no longer route to it)"),
        "patch": {
            "operationId": "patchSubscriber",
            "tags": ["admin"],
            "summary": "Change some fields of a subscriber (rotate its secret, move its endpoint)",
            "description": "Send only the fields to change; \"secret\": null removes the secret. The next "
            "attempt of every delivery uses the new values: an old secret stops at once.",
            "responses": {
                "200": _json("SubscriberView", "The subscriber as it is now."),
                **_problems(400, 401, 404, 422, why={**WHY_ADMIN_401, 404: "There is no subscriber with this id."}),
            },
        },
    },
    "/api/v1/evacuation-orders": _EVACUATION_PATH,
    "/api/v1/evacuation-orders/preview": _PREVIEW_PATH,
    "/api/v1/shelters": _SHELTERS_PATH,
    "/api/v1/alerts": _ALERTS_PATH,
    "/api/v1/test-broadcasts": {
        "post": {
            "operationId": "startTestBroadcast",
            "tags": ["desk"],
            "summary": "Start a transmission test (情報伝達試験)",
            "description": "Sends a status-Test message to every subscriber in the districts and waits "
            "wait_s seconds for receivers to confirm (POST /api/v1/alerts/{id}/ack). Read the result "
            "with GET /api/v1/test-broadcasts/{id}. The admin token may test anywhere (default: all 47 "
            "prefectures); a person with the operator role, or the issuer's token, tests inside the issuer's "
            "jurisdiction (default: all of it). No approval: a test is never an order. Audited as "
            "test-broadcast under the caller's name.",
            "responses": {
                "202": _json("TestBroadcast", "Started."),
                **_problems(
                    400,
                    401,
                    403,
                    413,
                    422,
                    why={
                        401: "No token or session, or one that ended.",
                        403: "A district is outside the caller's jurisdiction, or the person lacks the operator "
                        "role. Nothing was sent.",
                        422: "'districts' is not a list of known district codes, or wait_s is not "
                        "between 1 and 3600 seconds.",
                    },
                ),
            },
        },
    },
    "/api/v1/test-broadcasts/{id}": {
        "parameters": [_id_param("The transmission test's id, from the 202 answer.")],
        "get": {
            "operationId": "getTestBroadcast",
            "tags": ["desk"],
            "summary": "A transmission test's result",
            "responses": {
                "200": _json(
                    "TestBroadcastResult", "Per receiver: confirmed, unconfirmed, failed or pending."
                ),
                **_problems(
                    401,
                    403,
                    404,
                    why={
                        401: "No token or session, or one that ended.",
                        403: "The test covers districts outside the caller's jurisdiction.",
                        404: "There is no transmission test with this id.",
                    },
                ),
            },
        },
    },
    "/api/v1/drills": {
        "get": {
            "operationId": "listDrills",
            "tags": ["desk"],
            "summary": "The shipped drill scenarios, whether the caller may start each, and the one running",
            "responses": {
                "200": _json("DrillList", "The scenarios."),
                **_problems(
                    401,
                    403,
                    why={
                        401: "No token or session, or one that ended.",
                        403: "The caller's issuer is no longer registered.",
                    },
                ),
            },
        },
        "post": {
            "operationId": "startDrill",
            "tags": ["desk"],
            "summary": "Start a shipped drill scenario on this engine (訓練)",
            "description": "The scenario runs as 'alertd drill run' would against this engine: its own simulated "
            "receivers and issuers, every message Exercise (reaching only receivers that take drills), "
            "everything it registered removed at the end. The admin token may start any; a person with the "
            "operator role, or the issuer's token, one inside the issuer's jurisdiction that sends nothing "
            "national. No approval: a drill is never an order. One drill at a time per deployment. Audited "
            "as drill under the caller's name. Follow it with GET /api/v1/drills/{id}: each step's alerts "
            "have their delivery board (GET /api/v1/alerts/{id}/deliveries/events). The 202 comes once the drill "
            "has started (its issuers and receivers registered, under ids of its run: drill-<run>-nhk-mito), "
            "with state 'running' ('starting' if that took longer than 20 s).",
            "responses": {
                "202": _json("DrillRun", "Started."),
                **_problems(
                    400,
                    401,
                    403,
                    404,
                    409,
                    413,
                    422,
                    why={
                        401: "No token or session, or one that ended.",
                        403: "The scenario covers an area outside the caller's jurisdiction (type "
                        "outside-jurisdiction), or sends national warnings (type national-only), or the person "
                        "lacks the operator role (type forbidden). Nothing was started.",
                        404: "There is no shipped scenario of that name.",
                        409: "A drill is already running, the deployment has no admin token for drills to use, or "
                        "the drill could not start (the detail says why, Japanese first). Nothing was sent.",
                        422: "'scenario' or 'speed' is not acceptable.",
                    },
                ),
            },
        },
    },
    "/api/v1/drills/{id}": {
        "parameters": [_id_param("The drill's id, from the 202 answer.")],
        "get": {
            "operationId": "getDrill",
            "tags": ["desk"],
            "summary": "A drill started from the desk: its steps and their alerts so far, then its verdict",
            "responses": {
                "200": _json("DrillRun", "The drill."),
                **_problems(
                    401,
                    403,
                    404,
                    why={
                        401: "No token or session, or one that ended.",
                        403: "The drill covers an area outside the caller's jurisdiction.",
                        404: "There is no drill with this id (one is kept for 7 days after it ends).",
                    },
                ),
            },
        },
    },
    "/api/v1/districts": {
        "post": {
            "operationId": "addDistrict",
            "tags": ["desk"],
            "summary": "Add a district (字, 地区) the postal data does not list",
            "description": "The municipality's own desk adds a named district (e.g. 上三坂), with its reading and "
            "outline if it has them; orders can name it from then on, in every alertd process.",
            "responses": {
                "201": _json("AddedDistrict", "Added."),
                **_problems(400, 401, 403, 409, 422, why={**_DESK_401, 409: "A district of that name exists already."}),
            },
        },
        "get": {
            "operationId": "listDistricts",
            "tags": ["desk"],
            "summary": "The districts a municipality added",
            "responses": {
                "200": {"description": "Added districts.", "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/AddedDistrictRow"}}}}},
                **_problems(401, 403, 422, why=_DESK_401),
            },
        },
    },
    "/api/v1/districts/{code}": {
        "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "string"}}],
        "delete": {
            "operationId": "deleteDistrict",
            "tags": ["desk"],
            "summary": "Remove a district the municipality added",
            "responses": {
                "204": {"description": "Removed."},
                **_problems(401, 403, 404, 409, why={
                    **_DESK_401, 404: "There is no district the desk added with this code.",
                    409: "An order in force names the district ('in_force' lists them): lift it before "
                    "removing the district. Nothing was removed.",
                }),
            },
        },
    },
    "/api/v1/layers/{municipality}/{layer}": {
        "parameters": [
            {"name": "municipality", "in": "path", "required": True, "schema": {"type": "string"},
             "example": "08211"},
            {"name": "layer", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,31}$"}, "example": "jichiku"},
        ],
        "put": {
            "operationId": "putLayer",
            "tags": ["desk"],
            "summary": "Load a layer of the municipality's own districts (自治区, 学区, 避難所の圏域)",
            "description": "Replaces the layer of that name. Orders name its districts like 町域, subscribers "
            "subscribe to their codes (<municipality>:layer:<layer>:<name>), in every alertd process. Outlines "
            "straying a little over the town's boundary are cut to it. `alertd geo layer add` sends a GeoJSON "
            "or CSV file here.",
            "responses": {
                "200": _json("LayerLoaded", "Loaded; the codes its districts have."),
                **_problems(400, 401, 403, 409, 413, 422, why={
                    **_DESK_401,
                    409: "A district of the layer has the name of another district of the town (a 町域): orders "
                    "could not tell them apart. Nothing was loaded.",
                    422: "The layer's name, a district or its outline is not usable. Nothing was loaded.",
                }),
            },
        },
        "delete": {
            "operationId": "deleteLayer",
            "tags": ["desk"],
            "summary": "Remove a layer the municipality loaded",
            "responses": {
                "204": {"description": "Removed."},
                **_problems(401, 403, 404, 409, 422, why={
                    **_DESK_401, 404: "The municipality has no layer of this name.",
                    409: "An order in force names one of its districts: lift it first. Nothing was removed.",
                }),
            },
        },
    },
    "/api/v1/in-force": {
        "get": {
            "operationId": "getInForce",
            "tags": ["reading"],
            "summary": "What is in force in one municipality, district by district",
            "description": "The model every view is drawn from, in the same shape as the retained MQTT state: "
            "in_force (true when anything stands), level (the highest evacuation level standing anywhere in "
            "the town), districts (per district: level and the alerts standing there) and alerts (every alert "
            "in force, with the districts it still covers; 'except': districts a lift took out of it). Actual "
            "unless status= says otherwise.",
            "responses": {
                "200": _json("InForceView", "In force now."),
                **_problems(422, why={422: "'municipality' is not a municipality code, or 'status' is not one of the three."}),
            },
        },
    },
    "/api/v1/alerts/{id}": {
        "parameters": [_ALERT_ID],
        "get": {
            "operationId": "getAlert",
            "tags": ["reading"],
            "summary": "One alert, with its state now",
            "responses": {"200": _json("Alert", "The alert."), **_problems(404, why=_NO_ALERT)},
        },
    },
    "/api/v1/alerts/{id}.cap": {
        "parameters": [_ALERT_ID],
        "get": {
            "operationId": "getAlertCap",
            "tags": ["reading"],
            "summary": "One alert as a CAP 1.2 document",
            "description": "What broadcasters and other CAP peers receive; the Atom feed links here.",
            "responses": {
                "200": {
                    "description": "The CAP 1.2 XML document.",
                    "content": {"application/cap+xml": {"schema": {"type": "string"}}},
                },
                **_problems(404, why=_NO_ALERT),
            },
        },
    },
    "/api/v1/alerts/{id}/deliveries": {
        "parameters": [_ALERT_ID],
        "get": {
            "operationId": "getDeliveries",
            "tags": ["reading"],
            "summary": "Who has received an alert",
            "description": "One row per receiver: queued, sent, delivered (the transport said so), "
            "confirmed (the receiver said so), failed, expired or superseded. For the admin, the issuer "
            "that sent the alert and issuers whose jurisdiction covers it; endpoint credentials in "
            "last_error are masked.",
            "responses": {
                "200": _json("Deliveries", "The deliveries of this alert."),
                **_problems(401, 403, 404, why={**_NO_ALERT, 403: "The alert is outside your jurisdiction."}),
            },
        },
    },
    "/api/v1/alerts/{id}/deliveries/end": {
        "parameters": [_ALERT_ID],
        "post": {
            "operationId": "endDeliveries",
            "tags": ["admin"],
            "summary": "End every delivery of an alert not yet final",
            "description": "Every delivery still queued, sent or waiting for a retry is marked superseded, "
            "with the reason as its last error, and is never sent: what a drill calls when it ends, so a "
            "gateway that was down hears nothing of the drill afterwards. Delivered and confirmed ones stay.",
            "responses": {
                "200": _json("EndedDeliveries", "What was ended, and every delivery as it is now."),
                **_problems(400, 401, 404, 422, why={**WHY_ADMIN_401, **_NO_ALERT,
                                                     422: "'reason' is missing, empty or too long."}),
            },
        },
    },
    "/api/v1/alerts/{id}/deliveries/events": {
        "parameters": [_ALERT_ID],
        "get": {
            "operationId": "streamDeliveries",
            "tags": ["reading"],
            "summary": "Who has received an alert, live (Server-Sent Events)",
            "description": "The same rows as /deliveries, as 'event: deliveries' whenever they change (checked "
            "twice a second), then 'event: end' once every delivery is final (confirmed, failed, expired "
            "or superseded). A stream lasts at most 2 minutes (EventSource reconnects by itself) and ends "
            "when alertd shuts down. Who may read it: as for /deliveries.",
            "responses": {
                "200": {"description": "The event stream; each event's data is a Deliveries document (an "
                        "'end' event's is {}).",
                        "content": {"text/event-stream": {"schema": {
                            "type": "object", "description": "One Server-Sent Event.",
                            "properties": {"event": {"enum": ["deliveries", "end"]}, "data": {"type": "string"},
                                           "retry": {"type": "integer"}, "id": {"type": "string"}}}}}},
                **_problems(401, 403, 404, why={**_NO_ALERT, 403: "The alert is outside your jurisdiction."}),
            },
        },
    },
    "/api/v1/alerts/{id}/ack": {
        "parameters": [_ALERT_ID],
        "post": {
            "operationId": "ackAlert",
            "tags": ["reading"],
            "summary": "A receiver confirms it has the alert",
            "description": "Send your subscriber id and the Idempotency-Key header of the delivery you "
            "received; the key proves receipt, so no token is needed. Confirming twice is harmless: "
            "the first time counts.",
            "responses": {
                "200": _json("AckResult", "Confirmed."),
                **_problems(
                    400,
                    403,
                    404,
                    413,
                    422,
                    why={
                        **_NO_ALERT,
                        403: "The subscriber and key do not match a delivery of this alert.",
                        422: "'subscriber' or 'idempotency_key' is missing or not text.",
                    },
                ),
            },
        },
    },
    "/feeds/alerts.atom": {
        "get": {
            "operationId": "alertsFeed",
            "tags": ["feeds"],
            "summary": "Atom index of alerts in force, each linking its CAP document",
            "description": "For conveyors that poll: send the last ETag in If-None-Match and a 304 "
            "with no body comes back while nothing changed. Fetch only the CAP documents not seen yet.",
            "parameters": [
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "description": "The ETag of the feed you already have.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The feed.",
                    "headers": {"ETag": _ETAG},
                    "content": {"application/atom+xml": {"schema": {"type": "string"}}},
                },
                "304": {
                    "description": "Nothing changed since the ETag in If-None-Match.",
                    "headers": {"ETag": _ETAG},
                },
                **_problems(422, why={422: "The municipality code is not one alertd knows."}),
            },
        },
    },
    "/map/": {
        "get": {
            "operationId": "mapPage",
            "tags": ["maps"],
            "summary": "The public map of the districts under an evacuation order now (HTML)",
            "description": "No sign-in. A page that works without JavaScript and with screen readers: the "
            "districts under an order as a table (municipality, district, level, reason) and a legend of the "
            "警戒レベル colours in ja, en, zh, ko and やさしい日本語; with scripts, a map drawn from alertd's own "
            "boundaries that refreshes itself. Nothing on it comes from another host.",
            "responses": {
                "200": {"description": "The page.", "headers": {"ETag": _ETAG},
                        "content": {"text/html": {"schema": {"type": "string"}}}},
                "304": {"description": "Nothing changed since the ETag in If-None-Match.", "headers": {"ETag": _ETAG}},
                **_problems(422, why={422: "'status' or 'lang' is not one alertd knows."}),
            },
        },
    },
    "/api/v1/map": {
        "get": {
            "operationId": "getOrderMap",
            "tags": ["maps"],
            "summary": "Every district under an evacuation order now, as GeoJSON",
            "description": "What the public map draws, drawn from the same model as /api/v1/in-force: one "
            "feature per district with its level (the highest standing there), official colour, "
            "municipality and reason. A 町域 without a boundary of its own has a null geometry and "
            "has_boundary false. Cached with a strong ETag until any alert changes.",
            "responses": {
                "200": {**_json("OrderMap", "The districts under an order."), "headers": {"ETag": _ETAG}},
                "304": {"description": "Nothing changed since the ETag in If-None-Match.", "headers": {"ETag": _ETAG}},
                **_problems(422, why={422: "'status' must be Actual, Exercise or Test."}),
            },
        },
    },
    "/api/v1/boundaries": {
        "get": {
            "operationId": "getBoundaries",
            "tags": ["maps"],
            "summary": "alertd's own boundaries as GeoJSON: the base map",
            "description": "There is no external base map: a prefecture's municipalities, or a municipality's "
            "outline with the districts its desk drew, simplified for the screen. Geometries are null where no "
            "boundaries were imported (`alertd geo import`).",
            "responses": {
                "200": {**_json("BoundaryCollection", "The boundaries."), "headers": {"ETag": _ETAG}},
                "304": {"description": "Nothing changed since the ETag in If-None-Match.", "headers": {"ETag": _ETAG}},
                **_problems(422, why={422: "'area' is not a prefecture or municipality code alertd knows."}),
            },
        },
    },
    "/console/": {
        "get": {
            "operationId": "consolePage",
            "tags": ["maps"],
            "summary": "The desk console (HTML): sign in, see what stands, issue, approve, lift",
            "description": "A page of alertd's own scripts (no build step, nothing from another host) on the "
            "JSON API: everything it shows needs a sign-in with username, password and one-time code.",
            "responses": {
                "200": {"description": "The page.", "headers": {"ETag": _ETAG},
                        "content": {"text/html": {"schema": {"type": "string"}}}},
                "304": {"description": "Nothing changed since the ETag in If-None-Match.", "headers": {"ETag": _ETAG}},
            },
        },
    },
    "/api/v1/orders": {
        "get": {
            "operationId": "listDeskOrders",
            "tags": ["desk"],
            "summary": "The evacuation orders in force in the caller's jurisdiction, per district and per alert",
            "description": "The desk's own view (also of drills and tests, with status=): the features the public "
            "map draws, limited to the issuer's jurisdiction, and each order with the districts it still "
            "covers, to lift or cancel from.",
            "responses": {
                "200": _json("DeskOrders", "What stands."),
                **_problems(
                    401,
                    403,
                    422,
                    why={
                        401: "No token or session, or one that ended.",
                        403: "The admin token has no jurisdiction; the caller's issuer is no longer registered.",
                        422: "'status' must be Actual, Exercise or Test.",
                    },
                ),
            },
        },
    },
    "/api/v1/history": {
        "get": {
            "operationId": "getHistory",
            "tags": ["desk"],
            "summary": "Past issuances of the caller's jurisdiction, with their delivery outcome",
            "description": "Evacuation orders, lifts, cancels and shelter notices sent between 'since' and "
            "'until' (Japan time, both days included; at most 200, newest first), each with its deliveries "
            "counted by state. format=csv (UTF-8 with a BOM, times in JST; delivered_total counts confirmed "
            "deliveries too), format=geojson (each issuance with its districts' outlines, and the names of "
            "those alertd has no boundary for) and format=cap (a zip of each issuance's CAP 1.2 document, "
            "byte for byte what GET /api/v1/alerts/{id}.cap serves, signed when alertd signs CAP) download "
            "the same rows.",
            "responses": {
                "200": {
                    "description": "The issuances.",
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"$ref": "#/components/schemas/HistoryRow"}}
                        },
                        "text/csv": {"schema": {"type": "string"}},
                        "application/geo+json": {"schema": {"type": "object"}},
                        "application/zip": {
                            "schema": {"type": "string", "contentMediaType": "application/zip"}
                        },
                    },
                },
                **_problems(
                    401,
                    403,
                    422,
                    why={
                        401: "No token or session, or one that ended.",
                        403: "The municipality is outside the caller's jurisdiction, or the admin token was used "
                        "(it has no jurisdiction of its own).",
                        422: "A date is not a date, 'since' is after 'until', or status/format is not one alertd knows.",
                    },
                ),
            },
        },
    },
    "/static/{name}": {
        "parameters": [_NAME],
        "get": {
            "operationId": "getWebFile",
            "tags": ["maps"],
            "summary": "A script or style of alertd's pages",
            "responses": _WEB_FILE,
        },
    },
    "/static/vendor/{name}": {
        "parameters": [_NAME],
        "get": {
            "operationId": "getVendorFile",
            "tags": ["maps"],
            "summary": "A vendored library file (Leaflet), with its licence",
            "responses": _WEB_FILE,
        },
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "tags": ["operations"],
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        },
    },
    "/healthz": {
        "get": {
            "operationId": "healthz",
            "tags": ["operations"],
            "summary": "Liveness and queue depth",
            "responses": {
                "200": _json("Health", "Redis answers; queue depths per lane."),
                "503": _json("Health", "Redis does not answer: alertd cannot accept or deliver alerts."),
            },
        },
    },
    **PEOPLE_PATHS,
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "tags": ["operations"],
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 description of alertd's HTTP API.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        },
    },
}

WEBHOOKS: dict[str, Any] = {
    "alertDelivery": {
        "post": {
            "operationId": "receiveAlert",
            "summary": "What alertd POSTs to an ISP or portal subscriber's endpoint",
            "description": "Answer 2xx once you have the alert (also to a repeat you already have); a 409 "
            "to a retry counts as delivered too. 5xx, 408, 429, timeouts and refused connections are "
            "retried with backoff until the alert expires; any other 4xx, and any 3xx (redirects are not "
            "followed), fails the delivery for good. alertd reads at most 4 KB of the answer. The same "
            "alert to the same subscriber always carries the same Idempotency-Key, across retries and "
            "across alertd processes, so drop duplicates by it. To verify a signed delivery, take "
            "X-Alertd-Signature 't=<ms>,v1=<hex>' and recompute hex HMAC-SHA256(secret, t + '.' + "
            "Idempotency-Key + '.' + X-Alertd-Alert-Id + '.' + raw body); compare in constant time and "
            "refuse a t more than 5 minutes from your clock (the README has a test vector). "
            "Broadcasters receive the CAP 1.2 document instead (application/cap+xml) with the same "
            "Idempotency-Key.",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": True,
                    "description": "The same for every attempt of one alert to one subscriber; send it "
                    "back to POST /api/v1/alerts/{id}/ack to confirm receipt.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-Alertd-Alert-Id",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-Alertd-Subscriber-Id",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-Alertd-Signature",
                    "in": "header",
                    "required": False,
                    "description": "'t=<unix time in ms>,v1=<hex HMAC-SHA256(secret, t.Idempotency-Key."
                    "X-Alertd-Alert-Id.body)>'. Present when the subscriber has a secret; every attempt "
                    "is signed afresh. A later scheme would come as v2= beside v1.",
                    "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookAlert"}}},
            },
            "responses": {
                "200": {"description": "Received (any 2xx)."},
                "default": {"description": "Not received: alertd retries with backoff."},
            },
        },
    },
}

DESCRIPTION = """\
alertd takes evacuation orders (避難情報), shelter notices and alerts from municipal and
prefectural desks and national sources, and delivers them to broadcasters, ISPs and portals,
signage and radio.

**Signing in.** Admin endpoints take the deployment's admin token; desk endpoints take the
issuer's own token, or a person's session (`POST /api/v1/sessions`, with password and one-time
code) as a bearer token or the console's cookie. Tokens go in `Authorization: Bearer <token>`. Reading endpoints, the feed
and receivers' acknowledgements need no token. The desk and the public endpoints may be served
on different listeners (for example the desk on LGWAN only).

**Nothing half-done.** Every check runs before anything is stored. A refused request stores
nothing and sends nothing, and says why in an RFC 9457 `application/problem+json` body whose
`detail` is written for the person at the desk. An address that does not exist is 404, a
method an address does not take is 405, both as problem+json.

**Status is never assumed.** Every message must say Actual, Exercise (a drill) or Test.

**Resending is safe.** The same identifier (the body's `identifier` or the `Idempotency-Key`
header) sent twice by the same issuer gives the same 202 answer and is delivered once.

**Receivers** get an `Idempotency-Key` header that is the same for every retry of one alert to
them, and, when they have a secret,
`X-Alertd-Signature: t=<ms>,v1=<hex HMAC-SHA256(secret, t.Idempotency-Key.Alert-Id.body)>`
(see the `alertDelivery` webhook).
"""


# Components generated from the models the handlers validate and answer with (alertd.schemas).
MODELS: tuple[type[models.BaseModel], ...] = (
    models.Issuer, models.IssuerView, models.Subscriber, models.SubscriberChange, models.SubscriberView,
    models.TestBroadcastRequest, models.DistrictAddition, models.AddedDistrict, models.AddedDistrictRow,
    models.LayerDistrict, models.LayerUpload, models.LayerLoaded,
    models.Ack, models.AckResult, models.EvacuationOrder, models.ShelterNotice, models.JsonAlert,
    models.Accepted, models.Deliveries, models.EndDeliveries, models.EndedDeliveries, models.TestBroadcast, models.AwaitingApproval, models.NewUser,
    models.UserView, models.CreatedUser, models.SignIn, models.SessionView, models.AuditEntry, models.Rejection,
    models.DraftView, models.Alert, models.Preview, models.Health, models.TestBroadcastResult,
    models.WebhookAlert, models.Problem, models.InForceView, models.OrderMap, models.BoundaryCollection,
    models.Me, models.NoSession, models.DeskOrders, models.HistoryRow, models.DrillStart, models.DrillRun, models.DrillList,
)  # fmt: skip
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "admin": ADMIN, "issuer": ISSUER, "admin-or-issuer": [*ADMIN, *ISSUER], "user": USER,
    "admin-or-user": [*ADMIN, *USER], "none": PUBLIC,
}  # fmt: skip


@cache
def _model_schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")
    return dict(top["$defs"])


def model_schemas() -> dict[str, Any]:
    return copy.deepcopy(_model_schemas())


def _query_parameters(model: type[models.Shape]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title" and not (k == "default" and v is None)}
        # A query value is text or absent, never null: absent is the model's None.
        options = [o for o in prop.pop("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            prop.update(options[0])
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        out.append(param)
    return out


def _operation(operation: Operation) -> dict[str, Any]:
    """The prose of PATHS, with what the contract decides filled in from it: sign-in,
    body and query schemas, and the problem types a well-formed request may still get."""
    doc = copy.deepcopy(PATHS[operation.path][operation.method.lower()])
    doc["operationId"] = operation.operation_id
    doc["security"] = _SECURITY[operation.auth]
    if operation.body is not None:
        # The JSON body is the model's; other media types (CAP XML) keep their prose.
        body = doc.setdefault("requestBody", {"required": True, "content": {}})
        body["content"]["application/json"] = {"schema": {"$ref": f"#/components/schemas/{operation.body.__name__}"}}
    if operation.query is not None:
        others = [p for p in doc.get("parameters", []) if p.get("in") != "query"]
        doc["parameters"] = [*_query_parameters(operation.query), *others]
    _link(doc, operation.operation_id)
    for status, types in operation.valid_refusals.items():
        doc["responses"][str(status)]["x-problem-types"] = list(types)
    _refusals_every_route_may_give(doc, operation)
    return doc


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before asking again.",
                                "schema": {"type": "integer", "minimum": 1}}}  # fmt: skip


def _refusals_every_route_may_give(doc: dict[str, Any], operation: Operation) -> None:
    """What any route may answer, said on every one: 429 from the flood guard (a caller whose
    requests keep being refused, or public reads too fast), 503 when Redis cannot be reached
    (nothing was written) — both with Retry-After."""
    responses = doc["responses"]
    if operation.path in ("/healthz", "/metrics", "/api/openapi.json"):
        return
    if "429" not in responses:
        why = ("You asked faster than alertd answers anyone on its public face." if operation.side == "public"
               else "Too many of your recent requests were refused; alertd hears you again after Retry-After.")
        responses.update(_problems(429, why={429: why}))
    if "503" not in responses:
        responses.update(_problems(503, why={503: "alertd cannot reach its database, or its database cannot "
                                                 "write (disk full or memory limit: type database-full): nothing "
                                                 "was written or sent. Send it again after Retry-After."}))  # fmt: skip
    for status in ("429", "503"):
        responses[status].setdefault("headers", {}).update(_RETRY_AFTER)


# OpenAPI links: where the id an answer gives is used next (clients and fuzzers follow them).
_BY_ID = {"id": "$response.body#/id"}
LINKS: dict[tuple[str, str], dict[str, dict[str, str]]] = {
    ("putIssuer", "201"): {"getIssuer": _BY_ID, "deleteIssuer": _BY_ID},
    ("putSubscriber", "201"): {
        "getSubscriber": _BY_ID,
        "patchSubscriber": _BY_ID,
        "deleteSubscriber": _BY_ID,
    },
    **{
        (sent, "202"): {
            "getAlert": _BY_ID,
            "getAlertCap": _BY_ID,
            "getDeliveries": _BY_ID,
            "ackAlert": _BY_ID,
        }
        for sent in ("postEvacuationOrder", "postShelterNotice", "postAlert")
    },
    ("startTestBroadcast", "202"): {
        "getTestBroadcast": _BY_ID,
        "getAlert": {"id": "$response.body#/alert_id"},
    },
    ("startDrill", "202"): {"getDrill": _BY_ID},
    ("addDistrict", "201"): {"deleteDistrict": {"code": "$response.body#/code"}},
}


def _link(doc: dict[str, Any], operation_id: str) -> None:
    for (source, status), targets in LINKS.items():
        if source == operation_id:
            doc["responses"][status]["links"] = {
                target: {"operationId": target, "parameters": parameters} for target, parameters in targets.items()
            }


def paths() -> dict[str, Any]:
    """The contract's operations, each with its prose: one without the other is a bug, found here."""
    out: dict[str, Any] = {}
    for operation in OPERATIONS:
        item = out.setdefault(operation.path, {})
        if "parameters" in PATHS[operation.path]:
            item["parameters"] = copy.deepcopy(PATHS[operation.path]["parameters"])
        item[operation.method.lower()] = _operation(operation)
    written = {(path, m) for path, item in PATHS.items() for m in item if m != "parameters"}
    declared = {(o.path, o.method.lower()) for o in OPERATIONS}
    if written != declared:
        raise RuntimeError(f"OpenAPI prose and alertd.contract disagree: {sorted(written ^ declared)}")
    return out


def spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route ``alertd.api.make_app`` can register."""
    from alertd import __version__

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "alertd",
            "version": __version__,
            "summary": "Japanese disaster-alert broadcasting engine",
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "admin", "description": "Issuers and subscribers (admin token)."},
            {"name": "desk", "description": "Sending: evacuation orders, shelters, alerts (issuer token)."},
            {"name": "reading", "description": "Alerts, deliveries and receivers' confirmations (no token)."},
            {"name": "feeds", "description": "Pull feeds for conveyors (no token)."},
            {"name": "people", "description": "Users, sign-in, the audit trail, drafts awaiting approval."},
            {"name": "maps", "description": "The public map, alertd's own boundaries and the web files (no token)."},
            {"name": "operations", "description": "Metrics, health, this document."},
        ],
        "paths": paths(),
        "webhooks": copy.deepcopy(WEBHOOKS),
        "components": {
            "schemas": model_schemas(),
            "securitySchemes": {
                "adminToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The deployment's admin token (ALERTD_ADMIN_TOKEN).",
                },
                "issuerToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The issuer's own token, set when the issuer was registered. "
                    "It decides which districts the issuer may send for.",
                },
                "userSession": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A person's session token from POST /api/v1/sessions. On the issuing "
                    "routes a user with the operator role acts as their issuer's token would.",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "alertd_session",
                    "description": "The console's session cookie, set by POST /api/v1/sessions.",
                },
            },
        },
    }
