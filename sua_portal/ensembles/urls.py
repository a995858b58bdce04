"""URLs of the ensembles app (API under /api/, pages at the root): filled in by the ensembles work."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

api_urlpatterns: list[URLPattern | URLResolver] = []
page_urlpatterns: list[URLPattern | URLResolver] = []
