from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

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
