"""URLs of the slides app: the API (included under /api/) and the pages (at the root)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from sua_portal.slides import import_views, pages, views

router = SimpleRouter()
router.register("cohorts", views.CohortViewSet, basename="cohort")
router.register("slides", views.SlideViewSet, basename="slide")
router.register("uploads", views.SlideUploadViewSet, basename="upload")
router.register("imports", import_views.CohortImportViewSet, basename="import")

api_urlpatterns: list[URLPattern | URLResolver] = [
    # Image endpoints have file-like names (no trailing slash): OpenSeadragon builds the tile URLs itself.
    path("slides/<int:pk>/dzi.dzi", views.DeepZoomDescriptorView.as_view(), name="slide-dzi"),
    path(
        "slides/<int:pk>/dzi_files/<int:level>/<int:col>_<int:row>.<str:fmt>",
        views.DeepZoomTileView.as_view(),
        name="slide-tile",
    ),
    path("slides/<int:pk>/thumbnail.<str:fmt>", views.ThumbnailView.as_view(), name="slide-thumbnail"),
    path("slides/<int:pk>/region.<str:fmt>", views.RegionView.as_view(), name="slide-region"),
    # Cohort imports start from a project (docs/cohort-import.md); the project's own routes are the accounts app's.
    path("projects/<int:project_pk>/imports/preview/",
         import_views.ProjectImportViewSet.as_view({"post": "preview"}), name="project-import-preview"),
    path("projects/<int:project_pk>/imports/", import_views.ProjectImportViewSet.as_view({"post": "create"}),
         name="project-imports"),
    *router.urls,
]
# The cohort page ("cohort-page", cohorts/<pk>/) is served by the ensembles app: it shows review states.
page_urlpatterns: list[URLPattern | URLResolver] = [
    path("slides/<int:pk>/", pages.slide_viewer, name="slide-viewer"),
    path("projects/<int:pk>/import/", pages.import_page, name="cohort-import"),
]
