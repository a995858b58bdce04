"""Server-rendered pages of the ensembles app: the cohort page, with each slide's review state."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sua_portal.ensembles.models import SlideHeatmap
from sua_portal.ensembles.services import flagged_per_slide
from sua_portal.slides.models import Slide
from sua_portal.slides.pages import cohort_context


@login_required
def cohort_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A cohort's slides (from the slides app) and, per slide, how far its heatmaps are and what is flagged."""
    context = cohort_context(request, pk)
    _add_review_state(context["slides"])
    return render(request, "slides/cohort.html", context)


def _add_review_state(slides: Sequence[Slide]) -> None:
    """Per slide: how far its heatmaps are, and how many regions are flagged for review."""
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
