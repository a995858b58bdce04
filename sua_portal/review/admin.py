"""The review's rows in the Django admin, for rare fixes: each admin sees those of their projects only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from sua_portal.accounts.admin import ProjectScopedAdmin
from sua_portal.review.models import CohortReviewer, Settlement, SlideCompletion, Verdict, VerdictChange


@admin.register(Verdict)
class VerdictAdmin(ProjectScopedAdmin):
    project_path = "run__project"
    list_display = ["region", "run", "reviewer", "slot", "verdict", "updated"]
    list_filter = ["verdict", "slot", "run__project"]
    search_fields = ["reviewer__username", "comment", "region__run_slide__name"]
    raw_id_fields = ["region", "run", "reviewer"]
    readonly_fields = ["created", "updated"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Verdicts are given through the API, which checks the region, the reviewer and the slide.
        return False


@admin.register(VerdictChange)
class VerdictChangeAdmin(ProjectScopedAdmin):
    """The record of every verdict given, changed or undone: read only."""

    project_path = "run__project"
    list_display = ["at", "reviewer", "region", "before_verdict", "after_verdict", "undone"]
    list_filter = ["after_verdict", "run__project"]
    search_fields = ["reviewer__username", "run_slide__name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Settlement)
class SettlementAdmin(ProjectScopedAdmin):
    project_path = "run__project"
    list_display = ["region", "run", "verdict", "settled_by", "settled"]
    list_filter = ["verdict", "run__project"]
    raw_id_fields = ["region", "run", "settled_by"]


@admin.register(CohortReviewer)
class CohortReviewerAdmin(ProjectScopedAdmin):
    project_path = "cohort__project"
    list_display = ["cohort", "slot", "reviewer", "added"]
    list_filter = ["slot", "cohort__project"]
    raw_id_fields = ["added_by"]


@admin.register(SlideCompletion)
class SlideCompletionAdmin(ProjectScopedAdmin):
    project_path = "run__project"
    list_display = ["run_slide", "run", "reviewer", "completed"]
    list_filter = ["run__project"]
    raw_id_fields = ["run", "run_slide", "reviewer"]
