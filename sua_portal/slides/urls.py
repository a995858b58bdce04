"""URLs of the slides app (API under /api/, pages at the root): filled in by the slides work."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

api_urlpatterns: list[URLPattern | URLResolver] = []
page_urlpatterns: list[URLPattern | URLResolver] = []
