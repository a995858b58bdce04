"""URLs of the review app, included by sua_portal/urls.py under /api/."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver
from rest_framework.routers import SimpleRouter

from sua_portal.review.views import CohortReviewerViewSet, ReviewRunViewSet, VerdictViewSet

router = SimpleRouter()
router.register("review/verdicts", VerdictViewSet, basename="verdict")
router.register("review/runs", ReviewRunViewSet, basename="review-run")
router.register("review/reviewers", CohortReviewerViewSet, basename="cohort-reviewer")

api_urlpatterns: list[URLPattern | URLResolver] = list(router.urls)
