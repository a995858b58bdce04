"""Start pages by role: what ``/`` shows each person, and the pathologist's review worklist.

``/`` renders the page of the user's main role in place (no redirect): an admin gets projects and
cohorts, a researcher their runs, a pathologist the worklist. A person with several roles gets the
first of :data:`START_ORDER` they hold. The pages live here, in the highest app whose rows they show.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.core import pages as core_pages
from sua_portal.runs import pages as run_pages
from sua_portal.runs import services
from sua_portal.runs.models import RunSlide

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


def worklist_projects(user: Any) -> list[dict[str, Any]]:
    """Per project of ``user``: its review run and the run's slides with their flagged regions in the run's
    review range, most flagged first (slides that flag nothing are counted, not listed)."""
    out = []
    for project in Project.objects.visible_to(user):
        run = services.review_run(project)
        entry: dict[str, Any] = {"project": project, "run": run, "slides": [], "quiet": 0}
        if run is not None:
            rows = list(RunSlide.objects.filter(run=run, slide__isnull=False))
            flagged = services.flagged_per_slide(run, [row.slide_id for row in rows if row.slide_id is not None])
            listed = [{"row": row, "flagged": flagged[row.slide_id]} for row in rows
                      if row.slide_id is not None and flagged.get(row.slide_id)]
            entry["slides"] = sorted(listed, key=lambda item: (-item["flagged"], item["row"].name))
            entry["quiet"] = len(rows) - len(listed)
            entry["range"] = services.review_range(run)
        out.append(entry)
    return out


@login_required
def worklist(request: HttpRequest) -> HttpResponse:
    """The slides pathologists review: the review run's flagged slides of each of their projects."""
    return render(request, "runs/worklist.html", {"projects": worklist_projects(request.user)})
