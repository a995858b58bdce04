"""Bounded limit/offset pagination for every list of the API.

DRF's ``LimitOffsetPagination`` has no ``max_limit`` and quietly ignores a limit or offset
it cannot read; a limit of 2**63 reached PostgreSQL as ``LIMIT`` and came back as a 500.
Here both are checked first: a value that is not a whole number, is negative or lies out
of range is a 400 naming the parameter, and the bounds are published in the schema. A view
that names its filters (``list_filters``) takes no other query parameter on its lists.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

from sua_portal.core.params import check_query_names, query_int

#: PostgreSQL's largest bigint: no OFFSET beyond it can be sent to the database.
MAX_OFFSET = 2**63 - 1


def max_page_size() -> int:
    """The largest ``limit`` a list answers (setting API_MAX_PAGE_SIZE)."""
    return int(settings.API_MAX_PAGE_SIZE)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=`` (1 to API_MAX_PAGE_SIZE, default PAGE_SIZE) and ``?offset=`` (0 or more), checked."""

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        # A view that lists its filters (``list_filters``) takes no other query parameter: a misspelt
        # filter is a 400 naming it, not a page of everything.
        filters = getattr(view, "list_filters", None)
        if isinstance(filters, dict):  # by action: {"list": ("cohort",), "slides": ()}
            filters = filters.get(getattr(view, "action", None), ())
        if filters is not None:
            check_query_names(request, [*filters, self.limit_query_param, self.offset_query_param])
        return super().paginate_queryset(queryset, request, view)

    def get_limit(self, request: Request) -> int | None:
        return query_int(request, self.limit_query_param, self.default_limit or max_page_size(), low=1,
                         high=max_page_size())

    def get_offset(self, request: Request) -> int:
        return query_int(request, self.offset_query_param, 0, low=0, high=MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        bounds: dict[str, dict[str, int | None]] = {
            self.limit_query_param: {"minimum": 1, "maximum": max_page_size(), "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET, "default": 0},
        }
        for parameter in parameters:
            parameter["schema"] = {**parameter["schema"], **bounds.get(parameter["name"], {})}
        return parameters
