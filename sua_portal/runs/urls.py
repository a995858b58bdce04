"""URLs of the runs app, included by sua_portal/urls.py (API under /api/, pages at the root)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from sua_portal.runs import pages
from sua_portal.runs.views import RunViewSet

router = SimpleRouter()
router.register("runs", RunViewSet, basename="run")

api_urlpatterns: list[URLPattern | URLResolver] = list(router.urls)
page_urlpatterns: list[URLPattern | URLResolver] = [
    path("cohorts/<int:pk>/", pages.cohort_page, name="cohort-page"),
    path("runs/", pages.run_list, name="run-list-page"),
    path("runs/new/", pages.new_run, name="run-new"),
    path("runs/compare/", pages.compare_runs, name="run-compare"),
    path("runs/<int:pk>/", pages.run_page, name="run-page"),
    path("runs/<int:pk>/again/", pages.run_again_page, name="run-again-page"),
    path("runs/<int:pk>/review/", pages.review_page_action, name="run-review-page"),
]
