from __future__ import annotations

from django.contrib import admin

from sua_portal.slides.models import Annotation, Cohort, Slide, SlideUpload


class SlideInline(admin.TabularInline[Slide, Cohort]):
    model = Slide
    extra = 0
    fields = ["name", "status", "width", "height", "mpp", "has_tumor"]
    readonly_fields = ["name", "status", "width", "height", "mpp", "has_tumor"]
    show_change_link = True
    can_delete = False


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin[Cohort]):
    list_display = ["name", "project", "split", "domain", "created"]
    list_filter = ["split", "domain", "project"]
    search_fields = ["name", "project__name"]
    inlines = [SlideInline]


class AnnotationInline(admin.TabularInline[Annotation, Slide]):
    model = Annotation
    extra = 0
    fields = ["label", "source", "author", "original_filename", "created"]
    readonly_fields = ["label", "source", "author", "original_filename", "created"]


@admin.register(Slide)
class SlideAdmin(admin.ModelAdmin[Slide]):
    list_display = ["name", "cohort", "status", "width", "height", "mpp", "has_tumor", "created"]
    list_filter = ["status", "has_tumor", "cohort__project", "cohort"]
    search_fields = ["name", "sha256"]
    readonly_fields = ["sha256", "size_bytes", "format", "width", "height", "levels", "mpp", "magnification",
                       "tissue_fraction", "check_started", "checked", "created", "uploaded_by"]
    inlines = [AnnotationInline]


@admin.register(SlideUpload)
class SlideUploadAdmin(admin.ModelAdmin[SlideUpload]):
    list_display = ["filename", "cohort", "received_bytes", "size_bytes", "created_by", "updated"]
    readonly_fields = ["id", "received_bytes", "size_bytes", "sha256", "created", "updated"]
