from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from sua_portal.accounts.admin import ProjectScopedAdmin
from sua_portal.slides import services
from sua_portal.slides.models import Annotation, Cohort, Slide, SlideUpload


class SlideInline(admin.TabularInline[Slide, Cohort]):
    model = Slide
    extra = 0
    fields = ["name", "status", "width", "height", "mpp", "mpp_override", "has_tumor"]
    readonly_fields = ["name", "status", "width", "height", "mpp", "has_tumor"]
    show_change_link = True
    can_delete = False


@admin.register(Cohort)
class CohortAdmin(ProjectScopedAdmin):
    list_display = ["name", "project", "split", "domain", "mpp_override", "created"]
    list_filter = ["split", "domain", "project"]
    search_fields = ["name", "project__name", "description"]
    inlines = [SlideInline]


class AnnotationInline(admin.TabularInline[Annotation, Slide]):
    model = Annotation
    extra = 0
    fields = ["label", "source", "author", "original_filename", "created"]
    readonly_fields = ["label", "source", "author", "original_filename", "created"]


@admin.register(Slide)
class SlideAdmin(ProjectScopedAdmin):
    project_path = "cohort__project"
    list_display = ["name", "cohort", "status", "width", "height", "mpp", "mpp_override", "has_tumor", "created"]
    list_filter = ["status", "has_tumor", "cohort__project", "cohort"]
    search_fields = ["name", "sha256", "cohort__name"]
    readonly_fields = ["sha256", "size_bytes", "format", "width", "height", "levels", "mpp", "magnification",
                       "tissue_fraction", "check_started", "checked", "created", "uploaded_by", "file"]
    inlines = [AnnotationInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Slides arrive through uploads and imports, which check the file first.
        return False


@admin.register(Annotation)
class AnnotationAdmin(ProjectScopedAdmin):
    project_path = "slide__cohort__project"
    list_display = ["slide", "label", "source", "author", "original_filename", "created"]
    list_filter = ["source", "slide__cohort__project"]
    search_fields = ["slide__name", "label", "original_filename", "author__username"]
    readonly_fields = ["slide", "geometry", "source", "author", "original_filename", "created"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Annotation files are read and checked by the upload (the slide's page or the API).
        return False

    def delete_model(self, request: HttpRequest, obj: Annotation) -> None:
        services.delete_annotation(obj)  # keeps the slide's tumor flag right

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for annotation in queryset:
            services.delete_annotation(annotation)


@admin.register(SlideUpload)
class SlideUploadAdmin(ProjectScopedAdmin):
    project_path = "cohort__project"
    list_display = ["filename", "cohort", "received_bytes", "size_bytes", "created_by", "updated"]
    search_fields = ["filename", "cohort__name"]
    readonly_fields = ["id", "received_bytes", "size_bytes", "sha256", "created", "updated"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
