from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from sua_portal.accounts.admin import ProjectScopedAdmin
from sua_portal.ensembles.models import Ensemble, EnsembleMember, SlideHeatmap


class MemberInline(admin.TabularInline[EnsembleMember, Ensemble]):
    model = EnsembleMember
    extra = 0
    fields = ["index", "status", "format", "seed", "checkpoint"]
    readonly_fields = ["index", "status", "format", "seed", "checkpoint"]
    can_delete = False


@admin.register(Ensemble)
class EnsembleAdmin(ProjectScopedAdmin):
    list_display = ["name", "project", "origin", "status", "tile_size", "level_downsample", "created"]
    list_filter = ["status", "origin", "project"]
    search_fields = ["name", "project__name", "failure_reason"]
    readonly_fields = ["origin", "network_config", "training_config", "created", "created_by"]
    inlines = [MemberInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Ensembles are trained or imported (with a dry run of each member) through the API.
        return False


@admin.register(SlideHeatmap)
class SlideHeatmapAdmin(ProjectScopedAdmin):
    project_path = "ensemble__project"
    list_display = ["slide", "ensemble", "status", "progress", "downsample", "started", "finished"]
    list_filter = ["status", "ensemble"]
    search_fields = ["slide__name", "ensemble__name", "failure_reason"]
    readonly_fields = ["slide", "ensemble", "progress", "task_id", "worker", "downsample", "segmentation", "entropy",
                       "mutual_information", "variance", "started", "finished", "created"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
