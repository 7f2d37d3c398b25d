"""Every HTTP operation alertd serves, declared once.

``alertd.api.make_app`` builds its router from this table and
``alertd.openapi.spec`` builds the document's paths from it: an operation
cannot be served without being documented, or documented without being
served. The body and query models here are the ones the handlers validate
with (``alertd.api.body_of`` / ``query_of`` look them up by the matched
operation), so the document's schemas are the checks themselves.

No handlers here, only their operation ids: this module imports nothing of
the app, so both sides can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from alertd import schemas
from alertd.schemas import Shape

# admin: the admin token. issuer: an issuer's token, or the session of a user of that issuer
# (bearer or the console's cookie). user: a person's session only. admin-or-user: the admin
# token or a session (the handler checks the role: admin for users, auditor for the trail).
Auth = Literal["admin", "issuer", "admin-or-issuer", "user", "admin-or-user", "none"]
Side = Literal["desk", "public", "always"]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    side: Side  # which listener serves it: desk (LGWAN), public (internet) or both
    auth: Auth
    body: type[Shape] | None = None  # the JSON body, validated by this model
    query: type[Shape] | None = None  # the query string, validated by this model
    # Problem types ("type" or "type:field") that may refuse a request the schema allows, by
    # status: what only alertd's data or clock can tell, declared in the document.
    valid_refusals: Mapping[int, tuple[str, ...]] = field(default_factory=dict)


# A well-formed district code alertd has no record of: only its data can tell.
UNKNOWN_AREA: Mapping[int, tuple[str, ...]] = {422: ("unknown-area",)}
# Which endpoint a subscriber takes, and whether it needs recipients and a sender, depends on
# its adapter (and for apprise, on what Apprise knows): a check across fields the schema cannot state.
SUBSCRIBER_REFUSALS: Mapping[int, tuple[str, ...]] = {
    422: ("unknown-area", "invalid-input:endpoint", "invalid-input:recipients", "invalid-input:sender")
}
# A desk message may also name a code that is no municipality (08 is a prefecture), or an
# expiry outside the window it may have (not past, at most 31 days away): "type:field".
DESK_MESSAGE: Mapping[int, tuple[str, ...]] = {
    422: ("unknown-area", "invalid-input:municipality", "invalid-input:expires"),
}

OPERATIONS: tuple[Operation, ...] = (
    # A certificate can be shaped like PEM and still not be one: only reading it can tell.
    Operation("POST", "/api/v1/issuers", "putIssuer", "desk", "admin", body=schemas.Issuer,
              valid_refusals={**UNKNOWN_AREA, 422: ("unknown-area", "invalid-input:cap_certificate")}),
    Operation("GET", "/api/v1/issuers", "listIssuers", "desk", "admin"),
    Operation("GET", "/api/v1/issuers/{id}", "getIssuer", "desk", "admin"),
    Operation("DELETE", "/api/v1/issuers/{id}", "deleteIssuer", "desk", "admin"),
    Operation("POST", "/api/v1/subscribers", "putSubscriber", "desk", "admin", body=schemas.Subscriber,
              valid_refusals=SUBSCRIBER_REFUSALS),
    Operation("GET", "/api/v1/subscribers", "listSubscribers", "desk", "admin"),
    Operation("GET", "/api/v1/subscribers/{id}", "getSubscriber", "desk", "admin"),
    # An id in the body must be the subscriber's own: whether it is, only the path can tell.
    Operation("PATCH", "/api/v1/subscribers/{id}", "patchSubscriber", "desk", "admin",
              body=schemas.SubscriberChange,
              valid_refusals={422: (*SUBSCRIBER_REFUSALS[422], "invalid-input:id")}),
    Operation("DELETE", "/api/v1/subscribers/{id}", "deleteSubscriber", "desk", "admin"),
    Operation("POST", "/api/v1/evacuation-orders", "postEvacuationOrder", "desk", "issuer",
              body=schemas.EvacuationOrder, valid_refusals=DESK_MESSAGE),
    Operation("POST", "/api/v1/evacuation-orders/preview", "previewEvacuationOrder", "desk", "issuer",
              body=schemas.EvacuationOrder, valid_refusals=DESK_MESSAGE),
    Operation("POST", "/api/v1/shelters", "postShelterNotice", "desk", "issuer",
              body=schemas.ShelterNotice, valid_refusals=DESK_MESSAGE),
    Operation("POST", "/api/v1/districts", "addDistrict", "desk", "issuer", body=schemas.DistrictAddition,
              valid_refusals={422: ("unknown-area", "invalid-geometry")}),
    Operation("GET", "/api/v1/districts", "listDistricts", "desk", "issuer", query=schemas.DistrictListQuery,
              valid_refusals=UNKNOWN_AREA),
    Operation("DELETE", "/api/v1/districts/{code}", "deleteDistrict", "desk", "issuer"),
    Operation("PUT", "/api/v1/layers/{municipality}/{layer}", "putLayer", "desk", "issuer", body=schemas.LayerUpload,
              valid_refusals={422: ("unknown-area", "invalid-geometry", "invalid-input:layer"),
                              409: ("conflict",)}),
    Operation("DELETE", "/api/v1/layers/{municipality}/{layer}", "deleteLayer", "desk", "issuer"),
    Operation("POST", "/api/v1/alerts", "postAlert", "desk", "issuer",
              body=schemas.JsonAlert,
              valid_refusals={422: ("unknown-area", "invalid-input:expires", "invalid-input:drill_end")}),
    # Who got what, and their errors, is for the desk, not the public segment.
    Operation("GET", "/api/v1/alerts/{id}/deliveries", "getDeliveries", "desk", "admin-or-issuer"),
    Operation("GET", "/api/v1/alerts/{id}/deliveries/events", "streamDeliveries", "desk", "admin-or-issuer"),
    # A drill ends what it sent: nothing it queued may reach a receiver after it said it cleaned up.
    Operation("POST", "/api/v1/alerts/{id}/deliveries/end", "endDeliveries", "desk", "admin",
              body=schemas.EndDeliveries),
    # The transmission test and drills: the admin token anywhere; an operator (or the issuer's
    # token) inside its jurisdiction (alertd/drills_api.py says why).
    Operation("POST", "/api/v1/test-broadcasts", "startTestBroadcast", "desk", "admin-or-issuer",
              body=schemas.TestBroadcastRequest,
              valid_refusals={**UNKNOWN_AREA, 403: ("forbidden", "outside-jurisdiction")}),
    Operation("GET", "/api/v1/test-broadcasts/{id}", "getTestBroadcast", "desk", "admin-or-issuer"),
    Operation("GET", "/api/v1/drills", "listDrills", "desk", "admin-or-issuer"),
    # A well-formed name may name no shipped scenario, and one drill runs at a time.
    Operation("POST", "/api/v1/drills", "startDrill", "desk", "admin-or-issuer", body=schemas.DrillStart,
              valid_refusals={403: ("forbidden", "outside-jurisdiction", "national-only"), 404: ("not-found",),
                              409: ("conflict",)}),
    Operation("GET", "/api/v1/drills/{id}", "getDrill", "desk", "admin-or-issuer"),
    # People: users (admin token, or a user with the admin role for their own issuer), sign-in,
    # the audit trail (admin token or the auditor role), and drafts awaiting a second person.
    Operation("POST", "/api/v1/users", "createUser", "desk", "admin-or-user", body=schemas.NewUser,
              valid_refusals={409: ("conflict",), 422: ("invalid-input:issuer", "invalid-input:expires")}),
    Operation("GET", "/api/v1/users", "listUsers", "desk", "admin-or-user"),
    Operation("GET", "/api/v1/users/{username}", "getUser", "desk", "admin-or-user"),
    Operation("DELETE", "/api/v1/users/{username}", "deleteUser", "desk", "admin-or-user"),
    Operation("DELETE", "/api/v1/users/{username}/lockout", "unlockUser", "desk", "admin-or-user"),
    Operation("POST", "/api/v1/sessions", "signIn", "desk", "none", body=schemas.SignIn,
              valid_refusals={401: ("unauthorized",), 403: ("forbidden",), 429: ("too-many-requests",)}),
    Operation("DELETE", "/api/v1/sessions/current", "signOut", "desk", "user"),
    Operation("GET", "/api/v1/audit", "readAudit", "desk", "admin-or-user", query=schemas.AuditQuery),
    Operation("GET", "/api/v1/drafts", "listDrafts", "desk", "admin-or-user"),
    Operation("POST", "/api/v1/drafts/{id}/approve", "approveDraft", "desk", "user", valid_refusals=DESK_MESSAGE),
    Operation("POST", "/api/v1/drafts/{id}/reject", "rejectDraft", "desk", "user", body=schemas.Rejection),
    Operation("GET", "/api/v1/alerts", "listAlerts", "public", "none", query=schemas.AlertListQuery, valid_refusals=UNKNOWN_AREA),
    Operation("GET", "/api/v1/alerts/{id}.cap", "getAlertCap", "public", "none"),
    Operation("GET", "/api/v1/alerts/{id}", "getAlert", "public", "none"),
    Operation("GET", "/api/v1/in-force", "getInForce", "public", "none", query=schemas.InForceQuery, valid_refusals=UNKNOWN_AREA),
    Operation("POST", "/api/v1/alerts/{id}/ack", "ackAlert", "public", "none", body=schemas.Ack),
    Operation("GET", "/feeds/alerts.atom", "alertsFeed", "public", "none", query=schemas.FeedQuery, valid_refusals=UNKNOWN_AREA),
    # The maps: the public map page and what it draws (public side), alertd's own boundaries as
    # the base map and the web files pages need (both sides: the console draws the same map).
    Operation("GET", "/map/", "mapPage", "public", "none", query=schemas.MapPageQuery),
    Operation("GET", "/api/v1/map", "getOrderMap", "public", "none", query=schemas.MapQuery),
    Operation("GET", "/api/v1/boundaries", "getBoundaries", "always", "none", query=schemas.BoundaryQuery,
              valid_refusals=UNKNOWN_AREA),
    # The desk console: its page, who signed in, and the orders in force in the desk's jurisdiction.
    Operation("GET", "/console/", "consolePage", "desk", "none"),
    Operation("GET", "/api/v1/sessions/current", "getCurrentSession", "desk", "user", query=schemas.SessionQuery),
    Operation("GET", "/api/v1/orders", "listDeskOrders", "desk", "issuer", query=schemas.MapQuery),
    Operation("GET", "/api/v1/history", "getHistory", "desk", "issuer", query=schemas.HistoryQuery,
              valid_refusals={403: ("forbidden",), 422: ("invalid-input:since", "invalid-input:until")}),
    Operation("GET", "/static/{name}", "getWebFile", "always", "none"),
    Operation("GET", "/static/vendor/{name}", "getVendorFile", "always", "none"),
    Operation("GET", "/metrics", "metrics", "always", "none"),
    Operation("GET", "/healthz", "healthz", "always", "none"),
    Operation("GET", "/api/openapi.json", "openapi", "always", "none"),
)


# The operation a request matched, set on the request by alertd.api.make_app.
OPERATION: web.RequestKey[Operation] = web.RequestKey("operation", Operation)


def query_of(request: web.Request) -> Any:
    """The query string, checked against the model the contract declares for this operation."""
    operation = request[OPERATION]
    assert operation.query is not None, operation.operation_id
    return schemas.parse(operation.query, dict(request.query))
