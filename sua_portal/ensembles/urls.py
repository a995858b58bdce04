"""URLs of the ensembles app, included by sua_portal/urls.py under /api/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver
from rest_framework.routers import SimpleRouter

from sua_portal.ensembles.views import EnsembleViewSet, HeatmapViewSet

router = SimpleRouter()
router.register("ensembles", EnsembleViewSet, basename="ensemble")
router.register("heatmaps", HeatmapViewSet, basename="heatmap")

api_urlpatterns: list[URLPattern | URLResolver] = list(router.urls)
