"""URLs of the runs app, included by sua_portal/urls.py (API under /api/, pages at the root)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from sua_portal.runs import layers, pages
from sua_portal.runs.views import RunViewSet

router = SimpleRouter()
router.register("runs", RunViewSet, basename="run")

# The viewer's layers (sua_portal/runs/layers.py): heatmaps and refined masks as tile pyramids, a slide's
# regions in one answer. Tiles have file-like names: the viewer builds their URLs from a template.
_MASK = "runs/<int:pk>/layers/<int:slide>/masks/<int:index>/<str:method>/"
api_urlpatterns: list[URLPattern | URLResolver] = [
    path("heatmaps/<int:pk>/layers/<str:kind>/", layers.HeatmapLayerView.as_view(), name="heatmap-layer"),
    path("heatmaps/<int:pk>/layers/<str:kind>/<int:level>/<int:col>_<int:row>.png", layers.HeatmapTileView.as_view(),
         name="heatmap-layer-tile"),
    path("runs/<int:pk>/layers/<int:slide>/", layers.RegionLayerView.as_view(), name="run-region-layer"),
    path(_MASK, layers.MaskLayerView.as_view(), name="run-mask-layer"),
    path(_MASK + "<int:level>/<int:col>_<int:row>.png", layers.MaskTileView.as_view(), name="run-mask-layer-tile"),
    *router.urls,
]
page_urlpatterns: list[URLPattern | URLResolver] = [
    path("cohorts/<int:pk>/", pages.cohort_page, name="cohort-page"),
    path("runs/", pages.run_list, name="run-list-page"),
    path("runs/new/", pages.new_run, name="run-new"),
    path("runs/compare/", pages.compare_runs, name="run-compare"),
    path("runs/<int:pk>/", pages.run_page, name="run-page"),
    path("runs/<int:pk>/again/", pages.run_again_page, name="run-again-page"),
    path("runs/<int:pk>/review/", pages.review_page_action, name="run-review-page"),
]
