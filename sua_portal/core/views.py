from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

from sua_portal.core.health import check_broker, check_database


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the broker answer; 503 naming the part that does not."""
    problems = {name: err for name, err in (("database", check_database()), ("broker", check_broker())) if err}
    body = {
        "status": "ok" if not problems else "unavailable",
        "database": problems.get("database", "ok"),
        "broker": problems.get("broker", "ok"),
    }
    return JsonResponse(body, status=200 if not problems else 503)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for a URL that matches nothing: JSON under /api/ (as the API's own 404s), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "No such API endpoint or object."}, status=404)
    return defaults.page_not_found(request, exception)


#: The API reference pages load everything from this portal: images, fonts and requests from elsewhere
#: are refused by the browser before they are made (ReDoc's footer would fetch its logo from a CDN).
DOCS_CONTENT_SECURITY_POLICY = "img-src 'self' data:; font-src 'self' data:; connect-src 'self'"


class OfflineDocsMixin:
    """Sends :data:`DOCS_CONTENT_SECURITY_POLICY` with a documentation page."""

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response


class SwaggerView(OfflineDocsMixin, SpectacularSwaggerView):
    """Swagger UI from drf-spectacular-sidecar's static files (``SWAGGER_UI_DIST = "SIDECAR"``)."""


class RedocView(OfflineDocsMixin, SpectacularRedocView):
    """ReDoc from drf-spectacular-sidecar's static files (``REDOC_DIST = "SIDECAR"``), without web fonts."""
