"""HTTP at the edge: domain errors become API answers, and conditional GETs are answered in one place."""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import get_conditional_response
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from sua_portal.errors import Conflict, DomainError, Forbidden, Gone, TooLarge, Unreadable

# The first class an error is an instance of decides its status; anything else is a 400.
_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (Conflict, status.HTTP_409_CONFLICT),
    (Forbidden, status.HTTP_403_FORBIDDEN),
    (Unreadable, status.HTTP_409_CONFLICT),
    (TooLarge, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE),
    (Gone, status.HTTP_410_GONE),
)


def status_of(error: DomainError) -> int:
    return next((code for kind, code in _STATUS if isinstance(error, kind)), status.HTTP_400_BAD_REQUEST)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus domain errors: ``{"detail": message, **details}`` with the status of their kind.

    A view whose action validates one request field names it in ``domain_error_fields``
    (``{action: field}``): its errors then come back as that field's validation error, as
    DRF's serializers report them.
    """
    if isinstance(exc, DomainError):
        view = context.get("view")
        field = getattr(view, "domain_error_fields", {}).get(getattr(view, "action", None))
        if field is not None and status_of(exc) == status.HTTP_400_BAD_REQUEST:
            exc = ValidationError({field: [str(exc)]})
        else:
            return Response({"detail": str(exc), **exc.details}, status=status_of(exc))
    return drf_exception_handler(exc, context)


def not_modified(request: HttpRequest | Request, etag: str) -> HttpResponseBase | None:
    """The 304 (or 412) answer when the request's conditions say the client's copy ``etag`` is current.

    Django's own comparison: If-None-Match may list several tags, weak ones (``W/"..."``) or ``*``.
    None means "send the body".
    """
    return get_conditional_response(cast(HttpRequest, request), etag=etag)
