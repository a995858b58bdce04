"""The admin workspace in the browser: projects and their members, cohorts, and ensembles.

Server-rendered pages for the admin role (403 for anyone else, before anything is looked up; 404 for a
project the admin is not a member of). What they change goes through the API from small scripts
(``frontend/src/admin.js``, ``ensembles.js``), so the browser and scripts meet the same checks and the
same messages. The pages live here, in the highest app whose rows they show (ensembles over cohorts
over projects).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Prefetch, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from sua_portal.accounts import roles
from sua_portal.accounts.models import Project
from sua_portal.ensembles.models import Ensemble, EnsembleMember
from sua_portal.slides.models import Cohort, Slide

#: The settings the training form shows, in its order: (key, label, input type). Their values come from the
#: chosen preset of analysis.training (the paper's recipe by default); the rest of a preset stays as it is.
TRAINING_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("members", "Members (K)", "int"), ("seed", "Seed (member i: seed + i)", "int"),
    ("optimizer", "Optimiser", "choice"), ("learning_rate", "Initial learning rate", "float"),
    ("lr_decay", "Learning rate decay factor", "float"), ("lr_patience", "Decay after epochs without improvement", "int"),
    ("early_stopping_patience", "Stop after epochs without improvement", "int"),
    ("max_epochs", "Most epochs", "int"), ("healthy_per_tumor", "Healthy patches per tumor patch", "float"),
    ("patch_size", "Patch size (px)", "int"), ("level_downsample", "Level downsample", "float"),
    ("batch_size", "Batch size", "int"),
)


def _require_admin(request: HttpRequest) -> None:
    if not roles.has_role(request.user, roles.ADMIN):
        raise PermissionDenied("Only admins manage projects, cohorts and ensembles.")


def _admin_project(request: HttpRequest, pk: int) -> Project:
    """The project ``pk`` for an admin who is its member: 403 for other roles, 404 outside their projects."""
    _require_admin(request)
    project = Project.objects.visible_to(request.user).filter(pk=pk).first()
    if project is None:
        raise Http404("No such project.")
    return project


@login_required
def manage(request: HttpRequest) -> HttpResponse:
    """The admin's workspace: their projects with members, cohorts and ensembles counted, and a new project."""
    _require_admin(request)
    projects = Project.objects.visible_to(request.user).annotate(
        member_count=Count("memberships", distinct=True),
        cohort_count=Count("cohorts", filter=Q(cohorts__archived=False), distinct=True),
        ensemble_count=Count("ensembles", distinct=True),
    )
    return render(request, "workspace/manage.html", {"projects": projects})


@login_required
def project_page(request: HttpRequest, pk: int) -> HttpResponse:
    """One project: its members and their roles, blind review, its cohorts (create, edit, archive, restore)."""
    project = _admin_project(request, pk)
    memberships = list(project.memberships.select_related("user").prefetch_related("user__groups")
                       .order_by("user__username"))
    members = [{"user": m.user, "roles": sorted(roles.roles_of(m.user)), "added": m.added,
                "is_you": m.user.pk == request.user.pk} for m in memberships]
    cohorts = list(Cohort.objects.filter(project=project).annotate(
        slide_count=Count("slides", distinct=True),
        ready_count=Count("slides", filter=Q(slides__status=Slide.Status.READY), distinct=True),
    ).order_by("split", "name"))
    return render(request, "workspace/project.html", {
        "project": project, "members": members, "roles": roles.ROLES,
        "cohorts": [c for c in cohorts if not c.archived], "archived": [c for c in cohorts if c.archived],
        "splits": Cohort.Split.choices, "ensemble_count": project.ensembles.count(),
    })


def _training_presets() -> dict[str, dict[str, Any]]:
    """Each training preset's values of :data:`TRAINING_FIELDS` ("paper" is the paper's recipe, SPEC §8)."""
    # analysis.training imports torch, which a Celery parent must not import before it forks its workers.
    from analysis.training import OPTIMIZERS, TRAINING_PRESETS

    keys = [key for key, _, _ in TRAINING_FIELDS]
    presets = {name: {k: v for k, v in config.to_dict().items() if k in keys}
               for name, config in TRAINING_PRESETS.items()}
    presets["_optimizers"] = {"choices": list(OPTIMIZERS)}
    return presets


@login_required
def ensembles_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A project's ensembles: members' progress with their loss curves, import (dry run first), training,
    and heatmaps computed per cohort with progress and cancel."""
    project = _admin_project(request, pk)
    ensembles = list(Ensemble.objects.filter(project=project).prefetch_related(
        Prefetch("members", queryset=EnsembleMember.objects.order_by("index"))).order_by("-created"))
    cohorts = list(Cohort.objects.active().filter(project=project).annotate(
        slide_count=Count("slides", filter=Q(slides__status=Slide.Status.READY))).order_by("split", "name"))
    presets = _training_presets()
    return render(request, "workspace/ensembles.html", {
        "project": project, "ensembles": ensembles, "cohorts": cohorts,
        "train_cohorts": [c for c in cohorts if c.split == Cohort.Split.TRAIN],
        "validation_cohorts": [c for c in cohorts if c.split == Cohort.Split.VALIDATION],
        "heatmap_cohorts": [c for c in cohorts if c.split != Cohort.Split.TRAIN] or cohorts,
        "presets": presets, "preset_names": [name for name in presets if not name.startswith("_")],
        "default_preset": settings.TRAINING_FORM_PRESET,
        "training_fields": TRAINING_FIELDS,
        "histories": {e.pk: [{"index": m.index, "history": m.history} for m in e.members.all()] for e in ensembles},
        "import_defaults": {"tile_size": settings.INFERENCE_TILE, "level_downsample": 1.0},
        "max_import_bytes": settings.ENSEMBLE_MAX_UPLOAD_BYTES,
    })

