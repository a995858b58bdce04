"""The OpenAPI schema as the API really answers: error responses included.

drf-spectacular documents the success answer of each operation only. A client (or the
fuzzer in tests/platform/test_api_fuzz.py, which fails on any undocumented status) also
meets the errors every view shares, so they are added here once instead of on every view:

* 403 wherever a permission is needed: an anonymous caller gets 403 rather than 401,
  because session authentication (the browser's) comes first and asks for no challenge;
* 404 for operations on one object (a path parameter), which is also the answer for
  another project's objects;
* 400 for operations that read a body or query parameters.

Views document what only they answer (409, 413, a 404 for an object named in the body)
with ``@extend_schema``; those entries are kept.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny

#: ``{"detail": "..."}``, the body of every error but a validation error (some add fields, such as ``offset``).
ErrorSerializer = inline_serializer("Error", {"detail": serializers.CharField()})

#: What DRF answers for a 400: field names (or ``detail``) to lists of sentences.
VALIDATION_ERROR: dict[str, Any] = {
    "type": "object",
    "description": "Each field in error (or `detail`) with what is wrong with it.",
    "additionalProperties": {},
}


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's schema, plus the error answers that every view of this kind gives."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        errors: dict[str, Any] = {}
        if self._reads_input():
            errors["400"] = self._error(VALIDATION_ERROR, "The request is invalid (the body says why).")
        if not all(issubclass(p, AllowAny) for p in getattr(self.view, "permission_classes", [])):
            errors["403"] = self._error(ErrorSerializer, "Not signed in, or the role does not allow this.")
        if "{" in self.path:
            errors["404"] = self._error(ErrorSerializer, "No such object among the caller's projects.")
        for code, error in errors.items():
            responses.setdefault(code, error)
        for code, response in responses.items():
            # A view's own 4xx (409, 413, ...) keeps its description and gets the error body it is sent with.
            if code.startswith("4") and "content" not in response:
                body = VALIDATION_ERROR if code == "400" else ErrorSerializer
                responses[code] = {**self._error(body, ""), "description": response.get("description", "")}
        return responses

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "response" and schema.get("properties"):
            # A serializer writes every one of its fields into every answer: all are required there.
            schema["required"] = sorted(schema["properties"])
        return schema

    def _reads_input(self) -> bool:
        has_query = any(p.get("in") == "query" for p in self._get_parameters())
        return has_query or self.method in ("POST", "PUT", "PATCH")

    def _error(self, body: Any, description: str) -> dict[str, Any]:
        response: dict[str, Any] = self._get_response_for_code(body, "400", ["application/json"])
        response["description"] = description
        return response

    def _get_paginator(self) -> Any:
        # Only GET lists are paginated; a POST that answers with a list (queued heatmaps,
        # calibrated ranges) answers with the plain list.
        return super()._get_paginator() if self.method == "GET" else None
