"""Server-rendered pages of the slides app: the slide viewer, and what the cohort page shows of its slides.

The cohort page itself is served by the runs app (:mod:`sua_portal.runs.pages`), which adds each
slide's review state: the slides app does not know about heatmaps.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from shapely.geometry import shape

from analysis import cohort_import
from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.slides import services
from sua_portal.slides.models import Annotation, Cohort, Slide


def _visible_cohort(request: HttpRequest, pk: int) -> Cohort:
    cohort = Cohort.objects.select_related("project").filter(
        pk=pk, project__in=Project.objects.visible_to(request.user)
    ).first()
    if cohort is None:
        raise Http404("No such cohort.")
    return cohort


def cohort_context(request: HttpRequest, pk: int) -> dict[str, Any]:
    """The cohort page's context (``slides``: the cohort's slides by name); 404 outside the caller's projects."""
    cohort = _visible_cohort(request, pk)
    slides = list(cohort.slides.select_related("cohort").annotate(annotation_count=Count("annotations")).order_by("name"))
    counts = {status: sum(1 for s in slides if s.status == status) for status in Slide.Status.values}
    return {
        "cohort": cohort,
        "slides": slides,
        "counts": counts,
        "tumor_count": sum(1 for s in slides if s.has_tumor),
        "unknown_mpp_count": sum(1 for s in slides if s.effective_mpp is None),
        "other_cohorts": cohort.project.cohorts.active().exclude(pk=cohort.pk),
        "can_upload": roles.has_role(request.user, roles.ADMIN),
        "extensions": ",".join(services.SLIDE_EXTENSIONS),
        "extensions_display": " ".join(services.SLIDE_EXTENSIONS),
        "max_upload_bytes": services.max_upload_bytes(),
    }


def _describe(annotation: Annotation, mpp: float | None) -> Annotation:
    """Count the regions of an annotation and measure them (mm² when the resolution is known)."""
    geometry = shape(annotation.geometry)
    annotation.region_count = len(getattr(geometry, "geoms", [geometry])) if not geometry.is_empty else 0  # type: ignore[attr-defined]
    annotation.area_mm2 = geometry.area * mpp**2 / 1e6 if mpp else None  # type: ignore[attr-defined]
    return annotation


@login_required
def slide_viewer(request: HttpRequest, pk: int) -> HttpResponse:
    slide = (
        Slide.objects.select_related("cohort__project", "uploaded_by")
        .filter(pk=pk, cohort__project__in=Project.objects.visible_to(request.user))
        .first()
    )
    if slide is None:
        raise Http404("No such slide.")
    show_truth = slide.cohort.project.shows_truth_to(request.user)
    annotations = slide.annotations.all()
    if not show_truth:
        annotations = annotations.exclude(source=Annotation.Source.GROUND_TRUTH)
    siblings = list(slide.cohort.slides.order_by("name").values_list("pk", flat=True))
    index = siblings.index(slide.pk)
    context = {
        "slide": slide,
        "cohort": slide.cohort,
        "previous_id": siblings[index - 1] if index > 0 else None,
        "next_id": siblings[index + 1] if index + 1 < len(siblings) else None,
        "position": index + 1,
        "total": len(siblings),
        "annotations": [_describe(a, slide.effective_mpp)
                        for a in annotations.select_related("author").order_by("created")],
        "can_set_mpp": roles.has_role(request.user, roles.ADMIN),
        # Blind review: pathologists see neither the ground truth's outlines nor whether the slide has tumor.
        "show_truth": show_truth,
        "has_truth": show_truth and annotations.filter(source=Annotation.Source.GROUND_TRUTH).exists(),
    }
    return render(request, "slides/viewer.html", context)


@login_required
def import_page(request: HttpRequest, pk: int) -> HttpResponse:
    """Import a cohort from a dropped folder or zip, with its manifest (admins of the project)."""
    project = Project.objects.visible_to(request.user).filter(pk=pk).first()
    if project is None:
        raise Http404("No such project.")
    if not roles.has_role(request.user, roles.ADMIN):
        raise PermissionDenied("Only admins import cohorts.")
    context = {
        "project": project,
        "splits": Cohort.Split.values,
        "slide_extensions": " ".join(cohort_import.SLIDE_EXTENSIONS),
        "manifest_columns": ", ".join(cohort_import.MANIFEST_COLUMNS),
        "max_upload_bytes": services.max_upload_bytes(),
        "cohorts": project.cohorts.order_by("name"),
    }
    return render(request, "slides/import.html", context)
