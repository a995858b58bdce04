"""Server-rendered pages of the slides app: a cohort's slide list and the slide viewer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from shapely.geometry import shape

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


@login_required
def cohort_page(request: HttpRequest, pk: int) -> HttpResponse:
    cohort = _visible_cohort(request, pk)
    slides = list(cohort.slides.annotate(annotation_count=Count("annotations")).order_by("name"))
    counts = {status: sum(1 for s in slides if s.status == status) for status in Slide.Status.values}
    _add_review_state(slides)
    context: dict[str, Any] = {
        "cohort": cohort,
        "slides": slides,
        "counts": counts,
        "tumor_count": sum(1 for s in slides if s.has_tumor),
        "other_cohorts": cohort.project.cohorts.exclude(pk=cohort.pk),
        "can_upload": roles.has_role(request.user, roles.ADMIN),
        "extensions": ",".join(services.SLIDE_EXTENSIONS),
        "extensions_display": " ".join(services.SLIDE_EXTENSIONS),
        "max_upload_bytes": services.max_upload_bytes(),
    }
    return render(request, "slides/cohort.html", context)


def _add_review_state(slides: Sequence[Slide]) -> None:
    """Per slide: how far its heatmaps are, and how many regions are flagged for review."""
    from sua_portal.ensembles.models import SlideHeatmap
    from sua_portal.ensembles.services import flagged_per_slide

    heatmaps: dict[int, list[tuple[str, float]]] = {}
    for slide_id, status, progress in SlideHeatmap.objects.filter(slide__in=slides).values_list(
            "slide", "status", "progress"):
        heatmaps.setdefault(slide_id, []).append((status, progress))
    flagged = flagged_per_slide(slides)
    for slide in slides:
        states = heatmaps.get(slide.pk, [])
        running = [p for s, p in states if s in ("queued", "running")]
        slide.review_flagged = flagged.get(slide.pk, 0)  # type: ignore[attr-defined]
        slide.review_state = (  # type: ignore[attr-defined]
            "none" if not states else f"computing {min(running):.0f} %" if running
            else "failed" if all(s == "failed" for s, _ in states) else "done")


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
    siblings = list(slide.cohort.slides.order_by("name").values_list("pk", flat=True))
    index = siblings.index(slide.pk)
    context = {
        "slide": slide,
        "cohort": slide.cohort,
        "previous_id": siblings[index - 1] if index > 0 else None,
        "next_id": siblings[index + 1] if index + 1 < len(siblings) else None,
        "position": index + 1,
        "total": len(siblings),
        "annotations": [_describe(a, slide.mpp) for a in slide.annotations.select_related("author").order_by("created")],
    }
    return render(request, "slides/viewer.html", context)
