"""URLs of the ensembles app, included by sua_portal/urls.py: the API under /api/, the admin workspace's pages."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from sua_portal.ensembles import workspace
from sua_portal.ensembles.views import EnsembleViewSet, HeatmapViewSet

router = SimpleRouter()
router.register("ensembles", EnsembleViewSet, basename="ensemble")
router.register("heatmaps", HeatmapViewSet, basename="heatmap")

api_urlpatterns: list[URLPattern | URLResolver] = list(router.urls)
# The admin workspace (sua_portal/ensembles/workspace.py); /projects/<id>/import/ is the bulk cohort import's.
page_urlpatterns: list[URLPattern | URLResolver] = [
    path("manage/", workspace.manage, name="manage"),
    path("projects/<int:pk>/", workspace.project_page, name="project-page"),
    path("projects/<int:pk>/ensembles/", workspace.ensembles_page, name="project-ensembles"),
]
