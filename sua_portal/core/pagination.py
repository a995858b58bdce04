"""Bounded limit/offset pagination for every list of the API.

DRF's ``LimitOffsetPagination`` has no ``max_limit`` and quietly ignores a limit or offset
it cannot read; a limit of 2**63 reached PostgreSQL as ``LIMIT`` and came back as a 500.
Here both are checked first: a value that is not a whole number, is negative or lies out
of range is a 400 naming the parameter, and the bounds are published in the schema.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

#: PostgreSQL's largest bigint: no OFFSET beyond it can be sent to the database.
MAX_OFFSET = 2**63 - 1


def max_page_size() -> int:
    """The largest ``limit`` a list answers (setting API_MAX_PAGE_SIZE)."""
    return int(settings.API_MAX_PAGE_SIZE)


def _bounded_int(request: Request, name: str, *, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: [f"{raw[:40]!r} is not a whole number."]}) from None
    if not low <= value <= high:
        raise ValidationError({name: [f"{name} must be between {low} and {high}, not {value}."]})
    return value


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=`` (1 to API_MAX_PAGE_SIZE, default PAGE_SIZE) and ``?offset=`` (0 or more), checked."""

    def get_limit(self, request: Request) -> int | None:
        limit = _bounded_int(request, self.limit_query_param, low=1, high=max_page_size())
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        offset = _bounded_int(request, self.offset_query_param, low=0, high=MAX_OFFSET)
        return 0 if offset is None else offset

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds: dict[str, dict[str, int | None]] = {
            self.limit_query_param: {"minimum": 1, "maximum": max_page_size(), "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"] = {**parameter["schema"], **bounds.get(parameter["name"], {})}
        return parameters
