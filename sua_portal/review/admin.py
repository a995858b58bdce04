from __future__ import annotations

from django.contrib import admin

from sua_portal.review.models import CohortReviewer, Settlement, SlideCompletion, Verdict, VerdictChange


@admin.register(Verdict)
class VerdictAdmin(admin.ModelAdmin[Verdict]):
    list_display = ["region", "run", "reviewer", "slot", "verdict", "updated"]
    list_filter = ["verdict", "slot", "run__project", "run"]
    search_fields = ["reviewer__username", "comment", "region__run_slide__name"]
    raw_id_fields = ["region", "run", "reviewer"]
    readonly_fields = ["created", "updated"]


@admin.register(VerdictChange)
class VerdictChangeAdmin(admin.ModelAdmin[VerdictChange]):
    """The record of every verdict given, changed or undone: read only."""

    list_display = ["at", "reviewer", "region", "before_verdict", "after_verdict", "undone"]
    list_filter = ["after_verdict", "run"]
    search_fields = ["reviewer__username", "run_slide__name"]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False


@admin.register(Settlement)
class SettlementAdmin(admin.ModelAdmin[Settlement]):
    list_display = ["region", "run", "verdict", "settled_by", "settled"]
    list_filter = ["verdict", "run"]
    raw_id_fields = ["region", "run", "settled_by"]


@admin.register(CohortReviewer)
class CohortReviewerAdmin(admin.ModelAdmin[CohortReviewer]):
    list_display = ["cohort", "slot", "reviewer", "added"]
    list_filter = ["slot", "cohort__project"]
    raw_id_fields = ["added_by"]


@admin.register(SlideCompletion)
class SlideCompletionAdmin(admin.ModelAdmin[SlideCompletion]):
    list_display = ["run_slide", "run", "reviewer", "completed"]
    list_filter = ["run"]
    raw_id_fields = ["run", "run_slide", "reviewer"]
