"""Errors a user sees, each carrying the HTTP status and a sentence for a desk operator.

Every stage raises these; the HTTP layer turns them into RFC 9457
``application/problem+json``. ``detail`` is written for the person at the
disaster desk, not for a developer: it says what was wrong and what to do.
"""

from __future__ import annotations

from typing import Any


class AlertdError(Exception):
    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://alertd.example/problems/{self.type_slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extra)
        return body


class InvalidInput(AlertdError):
    """The message is well-formed but says something alertd cannot accept."""

    status = 422
    title = "The message is not valid"
    type_slug = "invalid-input"


class MalformedInput(AlertdError):
    """The body cannot be read at all (broken XML/JSON, wrong encoding)."""

    status = 400
    title = "The message could not be read"
    type_slug = "malformed-input"


class HostileInput(MalformedInput):
    """XML with a DTD, entity declarations or external references."""

    title = "The message contains forbidden XML constructs"
    type_slug = "forbidden-xml"


class UnknownArea(InvalidInput):
    title = "Unknown area"
    type_slug = "unknown-area"


class NoGeometry(InvalidInput):
    title = "No boundary data is loaded"
    type_slug = "no-geometry"


class Unauthorized(AlertdError):
    status = 401
    title = "Not signed in"
    type_slug = "unauthorized"


class OutsideJurisdiction(AlertdError):
    status = 403
    title = "Outside your jurisdiction"
    type_slug = "outside-jurisdiction"


class NationalOnly(AlertdError):
    """A national warning's drill asked for by a town or prefecture: not where (its jurisdiction)
    but what it sends (JMA, J-ALERT, CAP files) is the reason, so the desk is told that instead."""

    status = 403
    title = "Only a national issuer may do this"
    type_slug = "national-only"


class Forbidden(AlertdError):
    status = 403
    title = "Not allowed"
    type_slug = "forbidden"


class NotFound(AlertdError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class Conflict(AlertdError):
    status = 409
    title = "Conflicts with the current state"
    type_slug = "conflict"


class TooLarge(AlertdError):
    status = 413
    title = "The message is too large"
    type_slug = "too-large"


class UnsupportedMediaType(AlertdError):
    status = 415
    title = "Unsupported content type"
    type_slug = "unsupported-media-type"


class ServiceUnavailable(AlertdError):
    """alertd cannot do this right now (its database is unreachable, or it is
    shedding load); the request may be sent again after ``retry_after_s``."""

    status = 503
    title = "alertd cannot take this right now"
    type_slug = "unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = retry_after_s


class DatabaseFull(ServiceUnavailable):
    """Redis answers but refuses writes: its disk is full (MISCONF) or its memory limit is
    reached (OOM). Nothing was written; a person has to free space first."""

    title = "alertd's database cannot write"
    type_slug = "database-full"


class TooManyRequests(ServiceUnavailable):
    status = 429
    title = "Too many requests"
    type_slug = "too-many-requests"


class InternalError(AlertdError):
    status = 500
    title = "Internal error"
    type_slug = "internal-error"
