"""Start pages by role: what ``/`` shows each person, and the pathologist's review worklist.

``/`` renders the page of the user's main role in place (no redirect): an admin gets projects and
cohorts, a researcher their runs, a pathologist the worklist. A person with several roles gets the
first of :data:`START_ORDER` they hold. The pages live here, in the highest app whose rows they show:
the worklist is the review API's (:func:`sua_portal.review.services.worklist`: its order, counts and
resume place), rendered on the server so that it works without scripts.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.core import pages as core_pages
from sua_portal.errors import DomainError
from sua_portal.review import services
from sua_portal.runs import pages as run_pages
from sua_portal.runs.services import review_run

#: Whose start page a person with several roles gets: the first role of theirs in this order.
START_ORDER: tuple[str, ...] = (roles.ADMIN, roles.RESEARCHER, roles.PATHOLOGIST)


def start_role(user: Any) -> str | None:
    """The role whose start page ``user`` lands on (None: no role, the projects page)."""
    held = roles.roles_of(user)
    return next((role for role in START_ORDER if role in held), None)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    role = start_role(request.user)
    if role == roles.PATHOLOGIST:
        return worklist(request)
    if role == roles.RESEARCHER:
        return run_pages.run_list(request)
    return core_pages.projects(request)


def viewer_url(slide: int, run: int, region: int | None = None) -> str:
    """The slide's viewer on the run's regions (at one region: the review panel opens there)."""
    url = f"{reverse('slide-viewer', args=[slide])}?run={run}"
    return f"{url}&region={region}" if region is not None else url


def worklist_projects(user: Any) -> list[dict[str, Any]]:
    """Per project of ``user``: its review run, the run's slides that flag regions in its review range in
    the worklist's order (regions left first, the most uncertain first; then done, then marked complete)
    with the caller's reviewed counts, and where the caller resumes. Slides that flag nothing are
    counted, not listed."""
    out = []
    for project in Project.objects.visible_to(user):
        run = review_run(project)
        entry: dict[str, Any] = {"project": project, "run": run, "slides": [], "quiet": 0, "resume": None}
        if run is not None:
            try:
                found = services.worklist(run, user)
            except DomainError as exc:  # the run has no review range: say so instead of a list
                entry["problem"] = str(exc)
                out.append(entry)
                continue
            entry["range"] = found.run_range
            entry["slides"] = [{"entry": e, "left": e.flagged - e.reviewed,
                                "viewer": viewer_url(e.run_slide.slide_id, run.pk)}
                               for e in found.entries if e.flagged and e.run_slide.slide_id is not None]
            entry["quiet"] = len(found.entries) - len(entry["slides"])
            entry["reviewed"] = sum(e.reviewed for e in found.entries)
            entry["flagged"] = sum(e.flagged for e in found.entries)
            if found.resume is not None and found.resume.slide.run_slide.slide_id is not None:
                entry["resume"] = {"entry": found.resume.slide, "viewer": viewer_url(
                    found.resume.slide.run_slide.slide_id, run.pk, found.resume.region)}
        out.append(entry)
    return out


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    """The slides pathologists review: the review run's flagged slides of each of their projects."""
    return render(request, "review/worklist.html", {"projects": worklist_projects(request.user),
                                                    "may_review": services.may_review(request.user)})
